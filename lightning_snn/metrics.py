"""torchmetrics for SNN evaluation, so the numbers are right under DDP."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class AccuracyOverTime(Metric):
    """Top-1 accuracy at each of several simulation lengths, from ``[len(T), B, C]`` outputs."""

    full_state_update = False

    def __init__(self, num_timesteps: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", default=torch.zeros(num_timesteps, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, outputs: torch.Tensor, target: torch.Tensor) -> None:
        self.correct += (outputs.argmax(-1) == target.unsqueeze(0)).sum(-1)
        self.total += target.numel()

    def compute(self) -> torch.Tensor:
        return self.correct.double() / self.total.clamp(min=1)
