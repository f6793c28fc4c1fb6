"""Diagnostics that no SNN can produce, or that were not measured, fail loudly instead of
reaching ``snn_results.json``.

An IF neuron fires at most once per step, so its firing rate lies in ``[0, 1]`` spikes per
neuron per step (a signed neuron's events too: one spike, positive or negative, per step);
synaptic operations, MACs and energies are counts and sums of counts, finite and ``>= 0``; a
layer's errors are means of absolute values, finite and ``>= 0``. A network that diverged in
training (e.g. a learning rate of 1e12) can still be finite and simulate: its spike counts,
recovered from the membrane's charge in float32, used to come out as -2856 and 1.8e30 spikes per
neuron per step. :func:`lightning_snn.diagnostics.spike_counts` now clamps them to ``[0, T]`` (so
no rate is impossible) and counts the ones its float error made unrecoverable; those, and what
is non-finite or out of range here, are refused, naming the value and where it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Slack for float64 rounding of a rate computed as spikes / (images x T x neurons).
RATE_SLACK = 1e-9


class ImpossibleDiagnosticsError(ValueError):
    """A diagnostic value no SNN can produce: non-finite, negative, or a rate above 1."""


def check_physical(
    data: Mapping[str, Mapping[Any, Any]], lost: Mapping[tuple[str, int], int] | None = None, images: int = 0
) -> None:
    """Refuse diagnostics that are not physically possible, or not measured.

    Args:
        data: ``{"firing_rates", "synaptic_ops", "energy", "layer_errors"}``, each ``{T: ...}`` as
            :class:`lightning_snn.diagnostics.Diagnostics` computes them (floats, not yet rounded).
        lost: ``{(layer, T): neurons}`` whose spike count could not be recovered from the membrane
            (:func:`lightning_snn.diagnostics.spike_counts`); their rates were clamped, not measured.
        images: the images simulated, for the message.

    Raises:
        ImpossibleDiagnosticsError: naming every such value (the first few) and what to do.
    """
    bad = [
        f"the spike counts of {n} neuron(s) of {layer!r} at T={t} over {images} images (float32 cannot hold "
        "their membrane's charge to V_th / 2)"
        for (layer, t), n in (lost or {}).items()
    ]

    def need(value: Any, where: str, upper: float = math.inf, nan_ok: bool = False) -> None:
        if nan_ok and isinstance(value, float) and math.isnan(value):
            return
        if not isinstance(value, (int, float)) or not (0 <= value <= upper):
            bound = f"[0, {upper:g}]" if math.isfinite(upper) else ">= 0 and finite"
            bad.append(f"{where} = {value!r} (must be {bound})")

    for t, rates in data.get("firing_rates", {}).items():
        need(rates["network"], f"firing rate of the network at T={t}", 1 + RATE_SLACK)
        for layer, rate in rates["layers"].items():
            need(rate, f"firing rate of {layer!r} at T={t}", 1 + RATE_SLACK)
    for t, sops in data.get("synaptic_ops", {}).items():
        for key in ("per_image", "input_macs", "ann_macs"):
            need(sops[key], f"synaptic_ops {key} at T={t}")
        for layer, value in sops["layers"].items():
            need(value, f"synaptic ops of {layer!r} at T={t}")
    for t, energy in data.get("energy", {}).items():
        for key in ("snn_uj", "sop_uj", "input_mac_uj", "ann_uj"):
            need(energy[key], f"energy {key} at T={t}")
        need(energy["snn_over_ann"], f"energy snn_over_ann at T={t}", nan_ok=energy["ann_uj"] == 0)
    for t, layers in data.get("layer_errors", {}).items():
        for layer, e in layers.items():
            for key in ("mae", "predicted_mae", "clip_mae", "mean_activation"):
                if key == "predicted_mae" and e[key] is None:
                    continue  # not predicted (a neuron model without a quantisation error), said so by name
                need(e[key], f"layer error {key} of {layer!r} at T={t}")
            need(e["relative"], f"layer error relative of {layer!r} at T={t}", nan_ok=e["mean_activation"] == 0)
    if bad:
        shown = "; ".join(bad[:6]) + (f"; ... ({len(bad)} in all)" if len(bad) > 6 else "")
        raise ImpossibleDiagnosticsError(
            f"the SNN diagnostics are not physically possible or not measurable: {shown}. The network's currents "
            "are not finite or far above its thresholds: did its training diverge (a learning rate too high)? Check "
            "the thresholds and the ANN's accuracy, retrain with a lower learning rate, or set snn.diagnostics: false "
            "to convert without them."
        )
