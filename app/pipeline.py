"""One request through the model, whatever protocol it came by: /predict's uploads and OIP's tensors alike.

    read (the body, within the body deadline) -> prepare (parse and decode: the images) -> the batcher's queue
    -> a forward pass shared with other requests -> this request's rows

A protocol supplies the two steps that differ, ``read`` and ``prepare``; this module does what they share:
the batcher told that a request is on its way (so a pass being formed may wait for it, and admission counts
it), the body's deadline (408), the request's deadline starting once the body is in (504), and the queue
(429). The door (app/door.py) has already refused a request the model could not answer in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
from starlette.requests import ClientDisconnect

from app.deps import ServiceState
from app.errors import BadRequest, BodyTimeout
from app.predictor import Predictor

Body = TypeVar("Body")
Parsed = TypeVar("Parsed")


async def run(
    state: ServiceState,
    predictor: Predictor,
    read: Callable[[], Awaitable[Body]],
    prepare: Callable[[Body], Awaitable[tuple[Parsed, np.ndarray]]],
    timeout_s: float | None = None,
) -> tuple[Parsed, np.ndarray]:
    """(what ``prepare`` parsed, the request's rows (n,) from ``predictor``'s passes); a ServiceError on the way.

    ``predictor``: the model serving when the request started; it answers the whole request, even if another is
    loaded meanwhile (app/model_loader.py). ``timeout_s``: the request's deadline when shorter than the service's
    (a gRPC client's own deadline)."""
    settings, batcher = state.settings, state.batcher
    assert batcher is not None  # set with the predictor, before any request is let through
    with batcher.arriving():
        body = await within_body_deadline(read(), settings.body_timeout_s)
        timeout_s = settings.request_timeout_s if timeout_s is None else timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s  # the model's deadline
        with batcher.decoding():
            parsed, images = await prepare(body)
    return parsed, await batcher.submit(images, deadline, predictor.outputs)


async def within_body_deadline(reading: Awaitable[Body], timeout_s: float) -> Body:
    """The whole body within ``timeout_s``, else 408: a client that stalls has its connection closed and what it
    sent freed, instead of held for as long as it likes. A client gone before the end: 400 (nobody to answer,
    and no server error worth a traceback)."""
    try:
        async with asyncio.timeout(timeout_s):  # no task of its own, as wait_for makes: read in this one
            return await reading
    except TimeoutError:
        raise BodyTimeout(timeout_s) from None
    except ClientDisconnect:
        raise BadRequest("the client disconnected before sending the whole body") from None
