"""Reading py-spy's raw stacks into per-thread and per-function shares."""

from verification.profile_service import parse_raw, profile_markdown, summarize_stacks

RAW = """\
process 7:"uvicorn";thread (11): MainThread;run (asyncio/base.py:1);parse (multipart/multipart.py:10) 30
process 7:"uvicorn";thread (11): MainThread;run (asyncio/base.py:2);encode (app/schemas.py:5) 10
thread (12): alexnet-decode_0;worker (concurrent/futures/thread.py:80);forward (torch/nn/modules/module.py:1) 60
malformed line
"""


def test_raw_stacks_sum_per_thread_and_function():
    stacks = parse_raw(RAW)
    assert sum(stacks.values()) == 100
    summary = summarize_stacks(stacks)
    assert summary["threads"] == [("alexnet-decode", 60, 60.0), ("MainThread", 40, 40.0)]
    assert ("run (asyncio/base.py)", 40, 40.0) in summary["inclusive"]
    assert summary["leaf"][0] == ("forward (torch/nn/modules/module.py)", 60, 60.0)
    text = profile_markdown(summary, "1 images/s", "### header")
    assert "| `parse (multipart/multipart.py)` | 30 | 30.0% |" in text
