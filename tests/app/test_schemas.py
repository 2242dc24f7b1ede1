"""/predict's answer is built without pydantic (``PredictResponse.render``): the same JSON as the validated model."""

import json

import numpy as np
import pytest

from app.schemas import AbstentionInfo, ModelInfo, PredictResponse
from models import CIFAR10_CLASSES


def _rows(scores: list[float]) -> np.ndarray:
    rng = np.random.default_rng(0)
    dtype = np.dtype([("probabilities", np.float32, (10,)), ("score", np.float32)])
    rows = np.empty(len(scores), dtype=dtype)
    rows["probabilities"] = rng.dirichlet(np.ones(10), len(scores)).astype(np.float32)
    rows["probabilities"][0] = [0.05, 0.05, 0.3, 0.05, 0.05, 0.05, 0.05, 0.3, 0.05, 0.05]  # a tie: lower index first
    rows["score"] = scores
    return rows


def _model(rule: bool) -> ModelInfo:
    abstention = AbstentionInfo(score="energy", threshold=-3.5, target="at most 5% flagged") if rule else None
    return ModelInfo(name="alexnet", checkpoint="a.safetensors", weights_sha256="ab" * 32,
                     classes=list(CIFAR10_CLASSES), input_size=224, temperature=1.3, calibrated=True,
                     abstention=abstention)  # fmt: skip


@pytest.mark.parametrize("rule", [True, False])
@pytest.mark.parametrize("threshold", [None, -1.0])
def test_render_is_the_validated_models_json(rule, threshold):
    if threshold is not None and not rule:
        pytest.skip("a threshold needs a rule (the route refuses it)")
    model, rows = _model(rule), _rows([-2.0, -4.0, float("-inf")])
    names = ["a.png", "", 'ünïcode "quoted".jpg']
    rendered = PredictResponse.render(names, rows, model, model.model_dump_json().encode(), 3, threshold)
    built = PredictResponse.build(names, rows, model, 3, threshold)
    assert json.loads(rendered) == json.loads(built.model_dump_json())
    answer = PredictResponse.model_validate_json(rendered)  # the documented shape, exactly
    first, second, third = answer.predictions
    assert [c.index for c in first.top_k][:2] == [2, 7]
    if rule:
        # scores -2 and -4: the model's threshold -3.5 passes the first only, the request's -1.0 neither
        assert (first.confident, second.confident) == ((True, False) if threshold is None else (False, False))
        assert third.ood_score is None and third.confident is False  # JSON has no -inf: null, as pydantic sends it
    else:
        assert first.confident is None and first.ood_score is None
    for prediction, probabilities in zip(answer.predictions, rows["probabilities"], strict=True):
        assert prediction.probability == prediction.top_k[0].probability == round(float(probabilities.max()), 6)
