"""Activations of the source ANN, as modules so the converter can find and replace them.

The paper trains with plain ReLU for a warm-up, then with the threshold ReLU
``clamp(x, 0, y_th)``. Whether the clip is on is a persistent buffer, so a checkpoint
restores exactly the activation it was trained with; the LightningModule sets it from
``current_epoch`` during fit, so a resumed run is right too.
"""

from __future__ import annotations

import torch
from torch import nn


def _sync_enabled(module: ThresholdReLU, _incompatible_keys) -> None:
    module._enabled = bool(module.threshold_enabled)


class ThresholdReLU(nn.Module):
    """``clamp(x, 0, y_th)`` when the threshold is enabled, ``relu(x)`` otherwise.

    Args:
        y_th: the clipping threshold (> 0).
        enabled: start with the threshold on (``False`` = plain ReLU until switched).
        shift: subtract this from the input before the (clipped) ReLU, i.e. the
            activation's turning point moves right by ``shift`` (the paper's "S" source
            ANN). 0 = no shift.
    """

    def __init__(self, y_th: float = 1.0, enabled: bool = True, shift: float = 0.0) -> None:
        super().__init__()
        if not y_th > 0:
            raise ValueError(f"y_th must be > 0, got {y_th}: it is the clipping level of the threshold ReLU.")
        if shift < 0:
            raise ValueError(f"shift must be >= 0, got {shift}.")
        self.y_th = float(y_th)
        self.shift = float(shift)
        self.register_buffer("threshold_enabled", torch.tensor(bool(enabled)))
        # A Python mirror of the buffer: reading a CUDA buffer in forward would sync the GPU
        # once per activation per step. The buffer stays the truth saved in checkpoints.
        self._enabled = bool(enabled)
        self.register_load_state_dict_post_hook(_sync_enabled)

    def set_threshold_enabled(self, enabled: bool) -> None:
        self.threshold_enabled.fill_(bool(enabled))
        self._enabled = bool(enabled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift:
            x = x - self.shift
        if self._enabled:
            return torch.clamp(x, 0.0, self.y_th)
        return torch.relu(x)

    def extra_repr(self) -> str:
        return f"y_th={self.y_th}, shift={self.shift}, threshold_enabled={self._enabled}"


#: Activation modules the converter turns into IF neurons.
CONVERTIBLE_ACTIVATIONS: tuple[type[nn.Module], ...] = (ThresholdReLU, nn.ReLU)

ACTIVATIONS = ("threshold_relu", "relu")


def make_activation(name: str, y_th: float = 1.0, shift: float = 0.0) -> nn.Module:
    """Build a convertible activation by name.

    ``threshold_relu`` starts as plain ReLU (the LightningModule switches the clip on after
    the warm-up); ``relu`` is a ThresholdReLU whose clip is never switched on, so both
    variants of the paper share one module type and one state-dict layout.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {list(ACTIVATIONS)}.")
    return ThresholdReLU(y_th=y_th, enabled=False, shift=shift)


def set_threshold_enabled(model: nn.Module, enabled: bool) -> int:
    """Switch the clip of every ThresholdReLU in ``model``; returns how many were set."""
    n = 0
    for m in model.modules():
        if isinstance(m, ThresholdReLU):
            m.set_threshold_enabled(enabled)
            n += 1
    return n
