"""Surrogate gradients: the spike's Heaviside step forward, a smooth derivative backward.

For training spiking networks directly with backpropagation through time (the baseline of the
paper's appendix A.4). The forward pass is the exact spike, ``x >= 0`` (``x = v - V_th``), the
same condition as :class:`~lightning_snn.neurons.IFNeuron`; only the backward pass differs:

* ``"fast_sigmoid"`` (SuperSpike, Zenke & Ganguli 2018): ``d/dx = 1 / (1 + alpha |x|)^2``.
* ``"arctan"`` (Fang et al. 2021, SpikingJelly's ``ATan``): the derivative of
  ``arctan(pi/2 alpha x) / pi + 1/2``, i.e. ``alpha / 2 / (1 + (pi/2 alpha x)^2)``.

Both peak at ``x = 0``; ``alpha`` sets their sharpness (defaults: 10 for the fast sigmoid on a
threshold of 1, 2 for arctan, SpikingJelly's default).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

#: Surrogate names and their default sharpness ``alpha``.
SURROGATES = {"fast_sigmoid": 10.0, "arctan": 2.0}


def _fast_sigmoid_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return 1.0 / (1.0 + alpha * x.abs()).square()


def _arctan_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x).square())


_GRADS = {"fast_sigmoid": _fast_sigmoid_grad, "arctan": _arctan_grad}


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, name: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha = name, alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * _GRADS[ctx.name](x, ctx.alpha), None, None


def check_surrogate(name: str, alpha: float | None = None) -> float:
    """Refuse an unknown surrogate or a non-positive ``alpha``; returns ``alpha`` (its default if None)."""
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; choose one of {list(SURROGATES)}.")
    alpha = SURROGATES[name] if alpha is None else alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < math.inf:
        raise ValueError(f"the surrogate's alpha must be a number > 0, got {alpha!r}.")
    return float(alpha)


def spike(x: torch.Tensor, surrogate: str = "fast_sigmoid", alpha: float | None = None) -> torch.Tensor:
    """``(x >= 0)`` as a float tensor, with the ``surrogate``'s gradient in the backward pass."""
    return _Spike.apply(x, surrogate, check_surrogate(surrogate, alpha))


def spike_function(
    surrogate: str = "fast_sigmoid", alpha: float | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """:func:`spike` with its settings checked once, for use inside a time loop."""
    alpha = check_surrogate(surrogate, alpha)
    return lambda x: _Spike.apply(x, surrogate, alpha)
