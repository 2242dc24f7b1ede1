"""An exponential moving average of the weights: the average is what gets evaluated and shipped."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """``average = d * average + (1 - d) * weights`` after each step, d ramping up as (1+t)/(10+t) to ``decay``.

    The ramp lets the average follow the fast-changing weights of the first steps instead of dragging
    the random initialisation along (a short run would otherwise ship mostly-initial weights).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        averaged = [t for t in self.module.state_dict().values() if t.is_floating_point()]
        current = [t for t in model.state_dict().values() if t.is_floating_point()]
        torch._foreach_lerp_(averaged, current, 1 - d)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
