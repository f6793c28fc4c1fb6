"""Activations of the source ANN, as modules so the converter can find and replace them.

The paper trains with plain ReLU for a warm-up, then with the threshold ReLU
``clamp(x, 0, y_th)``. Whether the clip is on is a persistent buffer, so a checkpoint
restores exactly the activation it was trained with; the LightningModule sets it from
``current_epoch`` during fit, so a resumed run is right too.

Models receive their activation as a layer factory (timm's ``act_layer``): a zero-argument
callable that returns a fresh module per call site. :func:`make_activation` is the one place
that builds such a factory from a name and its options.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

#: A zero-argument factory of activation modules: one call per call site of the model.
ActLayer = Callable[[], nn.Module]


def _sync_enabled(module: _WarmupSwitch, _incompatible_keys) -> None:
    module._enabled = bool(module.threshold_enabled)


class _WarmupSwitch(nn.Module):
    """The ReLU warm-up switch: a persistent ``threshold_enabled`` buffer and its Python mirror."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.register_buffer("threshold_enabled", torch.tensor(bool(enabled)))
        # A Python mirror of the buffer: reading a CUDA buffer in forward would sync the GPU
        # once per activation per step. The buffer stays the truth saved in checkpoints.
        self._enabled = bool(enabled)
        self.register_load_state_dict_post_hook(_sync_enabled)

    def set_threshold_enabled(self, enabled: bool) -> None:
        self.threshold_enabled.fill_(bool(enabled))
        self._enabled = bool(enabled)


class ThresholdReLU(_WarmupSwitch):
    """``clamp(x, 0, y_th)`` when the threshold is enabled, ``relu(x)`` otherwise.

    Args:
        y_th: the clipping threshold (> 0).
        enabled: start with the threshold on (``False`` = plain ReLU until switched).
        shift: subtract this from the input before the (clipped) ReLU, i.e. the
            activation's turning point moves right by ``shift`` (the paper's "S" source
            ANN). 0 = no shift.
    """

    def __init__(self, y_th: float = 1.0, enabled: bool = True, shift: float = 0.0) -> None:
        if not y_th > 0:
            raise ValueError(f"y_th must be > 0, got {y_th}: it is the clipping level of the threshold ReLU.")
        if shift < 0:
            raise ValueError(f"shift must be >= 0, got {shift}.")
        super().__init__(enabled)
        self.y_th = float(y_th)
        self.shift = float(shift)

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

#: Activation names :func:`make_activation` builds.
ACTIVATIONS = ("threshold_relu", "relu")

#: Names whose clip is switched on after the ReLU warm-up (``relu`` never is).
WARMUP_ACTIVATIONS = ("threshold_relu",)


def make_activation(name: str = "threshold_relu", y_th: float = 1.0, shift: float = 0.0) -> ActLayer:
    """The one place that builds activation layers: a zero-argument factory (timm's ``act_layer``).

    Every module it returns starts as plain ReLU; the LightningModule (or
    :func:`set_threshold_enabled`) switches the clip on after the warm-up. ``relu`` is a
    ThresholdReLU whose clip is never switched on, so both variants of the paper share one
    module type and one state-dict layout. The options are checked here, once.

    Args:
        name: ``"threshold_relu"`` or ``"relu"``.
        y_th: clip level.
        shift: the source ANN's ReLU shift.

    Returns:
        A callable that builds one new activation module per call.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {list(ACTIVATIONS)}.")
    factory = functools.partial(ThresholdReLU, y_th=y_th, enabled=False, shift=shift)
    factory()  # check the options now, not at the first layer deep inside a model
    return factory


def resolve_act_layer(
    act_layer: ActLayer | None, activation: str = "threshold_relu", y_th: float = 1.0, shift: float = 0.0
) -> ActLayer:
    """A model's activation factory: ``act_layer`` if given, else one built by name.

    The registered models take either an injected ``act_layer`` or the named settings
    (``activation``, ``y_th``, ``activation_shift``), never both.
    """
    if act_layer is None:
        return make_activation(activation, y_th=y_th, shift=shift)
    if not callable(act_layer):
        raise TypeError(f"act_layer must be a zero-argument callable returning a module, got {act_layer!r}.")
    if (activation, y_th, shift) != ("threshold_relu", 1.0, 0.0):
        raise TypeError(
            "give the activation either as act_layer or as activation / y_th / activation_shift, not both "
            f"(got act_layer and activation={activation!r}, y_th={y_th}, activation_shift={shift})."
        )
    return act_layer


def set_threshold_enabled(model: nn.Module, enabled: bool) -> int:
    """Switch the clip of every ThresholdReLU in ``model``; returns how many were set."""
    n = 0
    for m in model.modules():
        if isinstance(m, _WarmupSwitch):
            m.set_threshold_enabled(enabled)
            n += 1
    return n
