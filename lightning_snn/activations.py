"""Activations of the source ANN, as modules so the converter can find and replace them.

The paper trains with plain ReLU for a warm-up, then with the threshold ReLU
``clamp(x, 0, y_th)``. Whether the clip is on is a persistent buffer, so a checkpoint
restores exactly the activation it was trained with; the LightningModule sets it from
``current_epoch`` during fit, so a resumed run is right too.

Beyond the paper, :class:`QCFS` is the quantization-clip-floor-shift activation of Bu et
al. (ICLR 2022), with the same warm-up switch.

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


class _QuantizedClip(torch.autograd.Function):
    """``lambda * clip(floor(s) / L, 0, 1)``, ``s = x L / lambda + 1/2``, with QCFS's straight-through gradient.

    The backward is the gradient of ``lambda * clip(s / L, 0, 1)`` (the floor taken as the
    identity) with the outer value kept: ``d/dx = m`` and ``d/dlambda = h / lambda - m x / lambda``,
    where ``m = [0 <= s < L]``. Written out rather than left to ``torch.clamp``'s autograd, whose
    gradient at the clip's ends has changed between PyTorch versions. Only ``x`` and ``lambda``
    are saved; ``s`` is recomputed (one activation-sized tensor less in memory per layer).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: torch.Tensor, levels: int) -> torch.Tensor:
        ctx.save_for_backward(x, lam)
        ctx.levels = levels
        # one new tensor, then in place: this runs once per layer per step
        return _scaled_input(x, lam, levels).floor_().clamp_(0, levels).mul_(lam / levels)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, lam = ctx.saved_tensors
        levels = ctx.levels
        s = _scaled_input(x, lam, levels)
        inside = (s >= 0) & (s < levels)
        grad_x = grad * inside if ctx.needs_input_grad[0] else None
        grad_lam = None
        if ctx.needs_input_grad[1]:
            level = s.floor_().clamp_(0, levels).div_(levels)  # h / lambda
            grad_lam = (grad * (level - inside * (x / lam))).sum().reshape(lam.shape).to(lam.dtype)
        return grad_x, grad_lam, None


def _scaled_input(x: torch.Tensor, lam: torch.Tensor, levels: int) -> torch.Tensor:
    """``s = x L / lambda + 1/2``, a new tensor."""
    return (x * (levels / lam)).add_(0.5)


class QCFS(_WarmupSwitch):
    """Quantization-clip-floor-shift activation (Bu et al., ICLR 2022).

    ``lambda * clip(floor(x * L / lambda + 1/2) / L, 0, 1)`` when enabled, ``relu(x)``
    otherwise (the same warm-up switch as :class:`ThresholdReLU`). Its output has ``L + 1``
    levels ``k * lambda / L``; an input exactly on a rounding boundary (``x * L / lambda + 1/2``
    an integer) goes to the upper level, as an IF neuron whose membrane reaches exactly
    ``V_th`` fires. With ``V_th = lambda`` and the initial membrane ``V_th / 2``, an IF neuron
    run for ``T = L`` steps on a constant input ``x`` fires exactly ``L * QCFS(x) / lambda``
    spikes.

    Gradients (Bu et al. 2022, eq. for ``dh/dx`` and ``dh/dlambda``): the floor is taken as the
    identity (straight-through), the clip keeps its gradient. With ``s = x L / lambda + 1/2``:
    ``d/dx = 1`` for ``-lambda/(2L) <= x < lambda - lambda/(2L)`` (``0 <= s < L``: the clip's
    ``(0, lambda)`` region moved left by the half step), else 0; ``d/dlambda = (h - x) / lambda``
    there, 1 above it (the output is ``lambda``) and 0 below (the output is 0). The authors'
    code leaves it to autograd, which applies the clip's mask to the *rounded* value: its
    region is then one level wider or narrower depending on how the PyTorch version treats
    ``clamp`` at its ends, so the rule is written out here (:class:`_QuantizedClip`).

    Args:
        y_th: the clip level ``lambda`` (> 0), or its initial value if trainable.
        levels: the number of quantization steps ``L`` (an int >= 1).
        trainable: ``lambda`` is a parameter of this layer (learned per layer) instead of a
            fixed buffer.
        enabled: start quantized (``False`` = plain ReLU until switched on).
    """

    def __init__(self, y_th: float = 1.0, levels: int = 4, trainable: bool = False, enabled: bool = True) -> None:
        if not y_th > 0:
            raise ValueError(f"y_th must be > 0, got {y_th}: it is QCFS's clip level lambda.")
        if isinstance(levels, bool) or not isinstance(levels, int):
            raise TypeError(f"levels must be an int (the number of quantization steps L), got {levels!r}.")
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}: QCFS quantizes to levels + 1 values.")
        super().__init__(enabled)
        self.levels = levels
        self.trainable = bool(trainable)
        lam = torch.tensor(float(y_th))
        if self.trainable:
            self.lam = nn.Parameter(lam)
        else:
            self.register_buffer("lam", lam)

    @property
    def y_th(self) -> float:
        """The current clip level ``lambda`` as a float (what the converter uses as ``V_th``)."""
        return float(self.lam.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._enabled:
            out = torch.relu(x)
            if self.trainable:
                # keep lambda in the graph (zero gradient), or DDP stops on an unused parameter
                out = out + 0.0 * self.lam
            return out
        return _QuantizedClip.apply(x, self.lam, self.levels)

    def extra_repr(self) -> str:
        lam = "meta" if self.lam.is_meta else f"{self.y_th:.4g}"
        return f"levels={self.levels}, lambda={lam}, trainable={self.trainable}, threshold_enabled={self._enabled}"


#: Activation modules the converter turns into IF neurons.
CONVERTIBLE_ACTIVATIONS: tuple[type[nn.Module], ...] = (ThresholdReLU, QCFS, nn.ReLU)

#: Activation names :func:`make_activation` builds.
ACTIVATIONS = ("threshold_relu", "relu", "qcfs")

#: Names whose clip is switched on after the ReLU warm-up (``relu`` never is).
WARMUP_ACTIVATIONS = ("threshold_relu", "qcfs")


def make_activation(
    name: str = "threshold_relu",
    y_th: float = 1.0,
    shift: float = 0.0,
    *,
    levels: int | None = None,
    trainable: bool | None = None,
) -> ActLayer:
    """The one place that builds activation layers: a zero-argument factory (timm's ``act_layer``).

    Every module it returns starts as plain ReLU; the LightningModule (or
    :func:`set_threshold_enabled`) switches the clip on after the warm-up. ``relu`` is a
    ThresholdReLU whose clip is never switched on, so both variants of the paper share one
    module type and one state-dict layout. The options are checked here, once.

    Args:
        name: ``"threshold_relu"``, ``"relu"`` or ``"qcfs"``.
        y_th: clip level (QCFS: the initial ``lambda``).
        shift: the source ANN's ReLU shift (threshold_relu / relu only; QCFS has its
            half-step shift built in).
        levels: QCFS's number of quantization steps ``L`` (default 4); QCFS only.
        trainable: QCFS's ``lambda`` learned per layer (default False); QCFS only.

    Returns:
        A callable that builds one new activation module per call.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {list(ACTIVATIONS)}.")
    if name == "qcfs":
        if shift:
            raise ValueError(
                f"activation_shift={shift} does not apply to qcfs: its +1/2 level is the shift; set it to 0."
            )
        factory = functools.partial(
            QCFS, y_th=y_th, levels=4 if levels is None else levels, trainable=bool(trainable), enabled=False
        )
    else:
        if levels is not None or trainable is not None:
            raise ValueError(
                f"levels / trainable (trainable_threshold in a config) only apply to activation 'qcfs', "
                f"not {name!r}: remove them or choose qcfs."
            )
        factory = functools.partial(ThresholdReLU, y_th=y_th, enabled=False, shift=shift)
    factory()  # check the options now, not at the first layer deep inside a model
    return factory


def resolve_act_layer(act_layer: ActLayer | None, default: str = "threshold_relu") -> ActLayer:
    """A model's activation factory: ``act_layer``, or ``make_activation(default)`` when it is None.

    Every registered model takes its activation as this one argument (timm's ``act_layer``);
    the named settings of a config (``activation``, ``y_th``, ``model_kwargs.activation_shift``)
    become a factory in one place, :class:`lightning_snn.module.ConversionModule`, through
    :func:`make_activation`.
    """
    if act_layer is None:
        return make_activation(default)
    if not callable(act_layer):
        raise TypeError(
            "act_layer must be a zero-argument callable returning a module, e.g. "
            f"make_activation('relu', y_th=2.0) from lightning_snn.activations; got {act_layer!r}."
        )
    return act_layer


def set_threshold_enabled(model: nn.Module, enabled: bool) -> int:
    """Switch the clip of every ThresholdReLU and QCFS in ``model``; returns how many were set."""
    n = 0
    for m in model.modules():
        if isinstance(m, _WarmupSwitch):
            m.set_threshold_enabled(enabled)
            n += 1
    return n
