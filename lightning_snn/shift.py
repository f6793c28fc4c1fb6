"""The shift of an IF neuron's charge: its kinds, its size, and their checks (Deng & Gu 2021).

The IF neuron's spike count after T steps floors its charge to multiples of ``V_th``; the
paper's shift adds half a step, ``V_th/(2T)`` per step (eq. 15), so that the count rounds:

* ``"bias"``: ``+V_th/(2T)`` to every bias (Algorithm 1): a constant current tied to one T;
* ``"membrane"``: an initial membrane ``V_th/2``, the same total charge at every T at once, so
  one simulation to ``T_max`` gives every T;
* ``"constant"``: ``+fraction x V_th`` at every step, whatever T (the paper's Tables 2-3 use
  ``V_th/1600``, appendix A.2): also one simulation for every T, but half a step only at
  ``T = 1 / (2 fraction)`` (800 for 1/1600);
* ``"none"``: no shift (threshold balancing alone).

``shift_scale`` multiplies the membrane or bias shift (the paper's Fig. 3B-D sweep it: 0 = no
shift, 1 = the paper's). Plain PyTorch; :func:`lightning_snn.conversion.convert` applies it.
"""

from __future__ import annotations

import math

import torch

SHIFT_MODES = ("membrane", "bias", "none", "constant")
#: The constant per-step shift of the paper's Tables 2-3 (appendix A.2): ``V_th / 1600`` at every step.
PAPER_CONSTANT_SHIFT = 1 / 1600


def shift_terms(
    v_threshold: torch.Tensor, shift: str, timesteps: int | None, scale: float = 1.0, fraction: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(initial membrane, bias current) of one neuron under a shift mode, ``scale`` times the paper's
    size (membrane, bias); ``fraction * V_th`` per step for the constant shift."""
    zero = torch.zeros_like(v_threshold)
    if shift == "membrane":
        return v_threshold / 2.0 * scale, zero  # x 1.0 is exact: scale 1 is the unscaled shift bit for bit
    if shift == "bias":
        return zero, v_threshold / (2.0 * timesteps) * scale
    if shift == "constant":
        return zero, v_threshold * (PAPER_CONSTANT_SHIFT if fraction is None else fraction)
    return zero, zero


def check_shift(shift: str, shift_scale: float = 1.0, shift_fraction: float | None = None) -> None:
    """Refuse, by name and before any work, a shift setting that cannot be applied as asked.

    ``shift_scale`` (>= 0) multiplies the membrane shift ``V_th/2`` or the bias shift
    ``V_th/(2T)``; ``shift_fraction`` in ``[0, 1)`` is the constant shift's size per step in units
    of ``V_th`` (default :data:`PAPER_CONSTANT_SHIFT`). Each belongs to its own modes only, so
    that no setting is silently ignored.
    """
    if shift not in SHIFT_MODES:
        raise ValueError(f"unknown shift mode {shift!r}; choose one of {list(SHIFT_MODES)}.")
    if isinstance(shift_scale, bool) or not isinstance(shift_scale, (int, float)):
        raise TypeError(f"shift_scale must be a number >= 0 (1 = the paper's shift), got {shift_scale!r}.")
    if not (math.isfinite(shift_scale) and shift_scale >= 0):
        raise ValueError(
            f"shift_scale must be a finite number >= 0 (0 = no shift, 1 = the paper's V_th/(2T)), got {shift_scale}."
        )
    if shift_scale != 1 and shift not in ("membrane", "bias"):
        raise ValueError(
            f"shift_scale={shift_scale} scales the membrane (V_th/2) or bias (V_th/(2T)) shift; shift {shift!r} "
            + (
                "has none to scale (use shift membrane with shift_scale 0 for a scaled-to-zero shift)."
                if shift == "none"
                else "takes its size from shift_fraction (in units of V_th per step); leave shift_scale at 1."
            )
        )
    if shift_fraction is not None:
        if shift != "constant":
            raise ValueError(
                f"shift_fraction={shift_fraction} sets the constant shift's size: it needs shift: constant "
                f"(got shift {shift!r}); remove it, or set shift: constant."
            )
        if isinstance(shift_fraction, bool) or not isinstance(shift_fraction, (int, float)):
            raise TypeError(
                f"shift_fraction must be a number in [0, 1), e.g. 6.25e-4 = 1/1600, got {shift_fraction!r}."
            )
        if not 0 <= shift_fraction < 1:
            raise ValueError(
                f"shift_fraction must be in [0, 1) (V_th per step; the paper's A.2: 1/1600 = 6.25e-4); a shift of V_th "
                f"or more fires every neuron at every step; got {shift_fraction}."
            )


__all__ = ["PAPER_CONSTANT_SHIFT", "SHIFT_MODES", "check_shift", "shift_terms"]
