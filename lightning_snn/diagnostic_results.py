"""The numbers the diagnostics accumulate, and how they are read: per-T views, JSON, the console table.

:class:`Diagnostics` holds sums over images (and ranks) of what one or more simulations measured
(:class:`~lightning_snn.diagnostics.DiagnosticsProbe` records them during the simulation);
``firing_rates``, ``synaptic_ops``, ``energy_per_image`` and ``layer_errors`` turn them into the
per-T numbers of ``snn_results.json``; :func:`summary_table` prints them. :class:`EnergyModel` is
the energy per operation those numbers use. Recording lives in :mod:`lightning_snn.diagnostics`,
fan-out counting in :mod:`lightning_snn.fanout`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from lightning_snn.layer_statistics import LayerStatistic, statistic_name
from lightning_snn.physical import check_physical

#: Energy per accumulate and per multiply-accumulate in pJ (32-bit float, 45 nm; Horowitz 2014).
E_AC_PJ = 0.9
E_MAC_PJ = 4.6


# ---- settings ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation (pJ) and how the first layer's MACs on the analog input count.

    Args:
        ac_pj: energy of one accumulate (a spike through one synapse).
        mac_pj: energy of one multiply-accumulate.
        input_macs_per_step: count the first layer's MACs on the analog input at every step (the
            literature's convention) rather than once per image.
    """

    ac_pj: float = E_AC_PJ
    mac_pj: float = E_MAC_PJ
    input_macs_per_step: bool = True

    def __post_init__(self) -> None:
        for name in ("ac_pj", "mac_pj"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"energy {name} must be a finite number of picojoules >= 0, got {value!r}.")
        if not isinstance(self.input_macs_per_step, bool):
            raise TypeError(f"input_macs_per_step must be true or false, got {self.input_macs_per_step!r}.")


# ---- the accumulated numbers ------------------------------------------------------------------
#: columns of Diagnostics.per_t
_SPIKES, _SOPS, _ABS_ERROR, _LOST = range(4)
#: the built-in columns of per_t; a layer statistic's column follows them
_N_COLUMNS = 4
#: columns of Diagnostics.per_layer (sums over images)
_ACT, _CLIP, _QUANT, _ELEMENTS = range(4)


@dataclass
class Diagnostics:
    """Sums over images (and ranks) of what one or more simulations measured, and the per-T views.

    Attributes:
        timesteps: the simulation lengths T, sorted.
        layers: the IF layers in execution order (a spiking readout's neuron last, ``<output>``).
        per_t: ``[layers, T, 4 + len(statistics)]`` float64 sums: spikes, SOPs driven by the layer's
            spikes, ``sum |rate x V_th - min(a, V_th)|`` over neurons, the neurons whose spike count
            could not be recovered (:func:`spike_counts`; any makes :meth:`to_json` fail), then one
            column per layer statistic.
        per_layer: ``[layers, 4]`` float64 sums: ``min(a, V_th)``, ``relu(a - V_th)``, ``V_th``
            over neurons with ``0 < a < V_th``, and the number of neurons with an ANN activation.
        structure: ``[layers + 2]`` float64, per image: neurons per layer, input MACs, ANN MACs.
        images: images simulated (a float64 tensor).
        energy: the energy constants of the report.
        quant_factor: ``[layers, T]``: the quantisation model's mean error in steps of
            ``V_th / T`` (1/4 with the paper's shift, 1/2 without; :func:`quantisation_factor`), a
            property of the SNN (not summed by :meth:`merge`), NaN for a layer whose neuron model has
            none; ``None``: no prediction at all. Not predicted: ``predicted_mae`` is None.
        statistics: the layer statistics measured besides (:mod:`lightning_snn.layer_statistics`),
            reported under ``"statistics"``.
    """

    timesteps: list[int]
    layers: list[str]
    per_t: torch.Tensor
    per_layer: torch.Tensor
    structure: torch.Tensor
    images: torch.Tensor
    energy: EnergyModel = field(default_factory=EnergyModel)
    quant_factor: torch.Tensor | None = None
    statistics: tuple[type[LayerStatistic], ...] = ()

    @classmethod
    def empty(
        cls,
        timesteps: Sequence[int],
        layers: Sequence[str],
        device=None,
        energy: EnergyModel | None = None,
        quant_factor: torch.Tensor | None = None,
        statistics: Sequence[type[LayerStatistic]] = (),
    ) -> Diagnostics:
        """All zeros: a rank with no batches joins the all-reduce with this."""
        n, nt = len(layers), len(timesteps)
        zeros = lambda *shape: torch.zeros(shape, dtype=torch.float64, device=device)  # noqa: E731
        return cls(
            list(timesteps),
            list(layers),
            zeros(n, nt, _N_COLUMNS + len(statistics)),
            zeros(n, 4),
            zeros(n + 2),
            zeros(),
            energy or EnergyModel(),
            quant_factor,
            tuple(statistics),
        )

    # -- accumulation ---------------------------------------------------------------------------
    def merge(self, other: Diagnostics) -> Diagnostics:
        """Add another batch's sums (in place); returns ``self``."""
        if other.layers != self.layers or other.timesteps != self.timesteps:
            raise ValueError("cannot merge diagnostics of different layers or T lists: they come from other SNNs.")
        if other.statistics != self.statistics:
            raise ValueError("cannot merge diagnostics that measured different layer statistics.")
        self.per_t += other.per_t.to(self.per_t.device)
        self.per_layer += other.per_layer.to(self.per_layer.device)
        self.structure = torch.maximum(self.structure, other.structure.to(self.structure.device))
        self.images = self.images + other.images.to(self.images.device)
        return self

    def all_reduce(self) -> Diagnostics:
        """Sum over ``torch.distributed`` ranks (in place; a no-op without a process group).

        Every rank must call it, one with no images too (:meth:`empty`). The per-image structure
        (neuron and MAC counts) is the same on every rank that simulated something: reduced by MAX.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return self
        flat = torch.cat([self.per_t.flatten(), self.per_layer.flatten(), self.images.view(1)])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        dist.all_reduce(self.structure, op=dist.ReduceOp.MAX)
        a, b = self.per_t.numel(), self.per_layer.numel()
        self.per_t = flat[:a].view_as(self.per_t)
        self.per_layer = flat[a : a + b].view_as(self.per_layer)
        self.images = flat[-1]
        return self

    # -- the numbers -----------------------------------------------------------------------------
    @property
    def num_images(self) -> int:
        return int(self.images.item())

    @property
    def neurons(self) -> dict[str, int]:
        """Neurons per image of each IF layer."""
        return {n: int(v) for n, v in zip(self.layers, self.structure[:-2].tolist(), strict=True)}

    @property
    def input_macs(self) -> float:
        """MACs per image of the first layer(s) on the analog input (once; see :class:`EnergyModel`)."""
        return float(self.structure[-2])

    @property
    def ann_macs(self) -> float:
        """MACs per image of the ANN."""
        return float(self.structure[-1])

    def _per_image(self) -> tuple[list[list[list[float]]], float]:
        images = max(self.num_images, 1)
        return self.per_t.tolist(), images

    def firing_rates(self) -> dict[int, dict[str, Any]]:
        """``{T: {"network": rate, "layers": {layer: rate}}}``, spikes per neuron per step."""
        per_t, images = self._per_image()
        neurons = self.neurons
        total_neurons = max(sum(neurons.values()), 1)
        out = {}
        for i, t in enumerate(self.timesteps):
            layers = {n: per_t[j][i][_SPIKES] / (images * t * max(neurons[n], 1)) for j, n in enumerate(self.layers)}
            network = sum(per_t[j][i][_SPIKES] for j in range(len(self.layers))) / (images * t * total_neurons)
            out[t] = {"network": network, "layers": layers}
        return out

    def synaptic_ops(self) -> dict[int, dict[str, Any]]:
        """``{T: {"per_image", "layers": {layer: SOPs per image}, "input_macs", "ann_macs"}}``:
        SOPs (accumulates) driven by each layer's spikes in T steps; the first layer's MACs on the
        analog input once per image (times T in the energy when counted per step)."""
        per_t, images = self._per_image()
        out = {}
        for i, t in enumerate(self.timesteps):
            layers = {n: per_t[j][i][_SOPS] / images for j, n in enumerate(self.layers)}
            out[t] = {
                "per_image": sum(layers.values()),
                "layers": layers,
                "input_macs": self.input_macs,
                "ann_macs": self.ann_macs,
            }
        return out

    def energy_per_image(self) -> dict[int, dict[str, float]]:
        """``{T: {"snn_uj", "sop_uj", "input_mac_uj", "ann_uj", "snn_over_ann"}}`` in microjoules."""
        e, out = self.energy, {}
        ann_pj = e.mac_pj * self.ann_macs
        for t, sops in self.synaptic_ops().items():
            sop_pj = e.ac_pj * sops["per_image"]
            input_pj = e.mac_pj * self.input_macs * (t if e.input_macs_per_step else 1)
            out[t] = {
                "snn_uj": (sop_pj + input_pj) * 1e-6,
                "sop_uj": sop_pj * 1e-6,
                "input_mac_uj": input_pj * 1e-6,
                "ann_uj": ann_pj * 1e-6,
                "snn_over_ann": (sop_pj + input_pj) / ann_pj if ann_pj > 0 else float("nan"),
            }
        return out

    def layer_errors(self) -> dict[int, dict[str, dict[str, float]]]:
        """``{T: {layer: {"mae", "relative", "predicted_mae", "clip_mae"}}}`` (see the module docstring);
        layers without an ANN activation (a spiking readout's neuron) are left out."""
        per_t, _ = self._per_image()
        per_layer = self.per_layer.tolist()
        factor = self.quant_factor.tolist() if self.quant_factor is not None else None
        out: dict[int, dict[str, dict[str, float]]] = {}
        for i, t in enumerate(self.timesteps):
            row = {}
            for j, name in enumerate(self.layers):
                act, clip, quant, elements = per_layer[j]
                if elements == 0:
                    continue
                mae = per_t[j][i][_ABS_ERROR] / elements
                mean_act = act / elements
                row[name] = {
                    "mae": mae,
                    "relative": mae / mean_act if mean_act > 0 else float("nan"),
                    # None: no prediction (a neuron model without a quantisation error; NaN in the factor)
                    "predicted_mae": None
                    if factor is None or math.isnan(factor[j][i])
                    else factor[j][i] * quant / (t * elements),
                    "clip_mae": clip / elements,
                    "mean_activation": mean_act,
                }
            out[t] = row
        return out

    def to_json(self) -> dict[str, Any]:
        """The four keys of ``snn_results.json`` (T as strings), plus the energy constants."""

        def keyed(d: dict[int, Any]) -> dict[str, Any]:
            return {str(t): _rounded(v) for t, v in d.items()}

        data = {
            "firing_rates": self.firing_rates(),
            "synaptic_ops": self.synaptic_ops(),
            "energy": self.energy_per_image(),
            "layer_errors": self.layer_errors(),
        }
        per_t = self.per_t[:, :, _LOST].tolist()
        lost = {(name, t): int(per_t[j][i]) for j, name in enumerate(self.layers) for i, t in enumerate(self.timesteps)}
        lost = {key: n for key, n in lost.items() if n}
        check_physical(data, lost, self.num_images)  # a non-finite or impossible value fails here, loudly
        extra = {"statistics": keyed_by_name(self.layer_statistics())} if self.statistics else {}
        return {
            **{key: keyed(value) for key, value in data.items()},
            **extra,
            "energy_model": {
                "ac_pj": self.energy.ac_pj,
                "mac_pj": self.energy.mac_pj,
                "input_macs_per_step": self.energy.input_macs_per_step,
                "source": "Horowitz 2014, 45 nm, 32-bit float",
            },
        }

    def layer_statistics(self) -> dict[str, dict[int, dict[str, float]]]:
        """``{statistic: {T: {layer: value}}}`` of the layer statistics measured (:meth:`LayerStatistic.finish`
        of each sum over images)."""
        per_t, images = self._per_image()
        neurons = self.neurons
        out = {}
        for k, cls in enumerate(self.statistics):
            stat, col = cls(), _N_COLUMNS + k
            values = {
                t: {n: stat.finish(per_t[j][i][col], int(images), neurons[n], t) for j, n in enumerate(self.layers)}
                for i, t in enumerate(self.timesteps)
            }
            bad = [(t, n, v) for t, row in values.items() for n, v in row.items() if not math.isfinite(float(v))]
            if bad:
                raise ValueError(
                    f"layer statistic {statistic_name(cls)!r} gave non-finite values (T, layer, value): {bad[:3]}."
                )
            out[statistic_name(cls)] = values
        return out

    def table(self) -> str:
        """A short console summary, one line per T."""
        return summary_table(self.to_json())


def keyed_by_name(stats: dict[str, dict[int, Any]]) -> dict[str, dict[str, Any]]:
    """T as strings, values rounded as the other keys of ``snn_results.json``."""
    return {name: {str(t): _rounded(v) for t, v in per_t.items()} for name, per_t in stats.items()}


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _num(value: float | None, spec: str) -> str:
    """A number in a fixed-width column; ``n/a`` for a missing one (a NaN in the JSON)."""
    return format(value, spec) if value is not None else format("n/a", f">{spec.split('.')[0]}")


def summary_table(results: Mapping[str, Any]) -> str:
    """The console summary of a results dict (``Diagnostics.to_json()`` or a whole ``snn_results.json``)."""
    model = results.get("energy_model", {})
    per_step = "every step" if model.get("input_macs_per_step", True) else "once"
    lines = [
        f"  per image (E_AC {model.get('ac_pj', E_AC_PJ)} pJ, E_MAC {model.get('mac_pj', E_MAC_PJ)} pJ; the first "
        f"layer's MACs on the analog input counted {per_step}):",
        f"  {'T':>5}  {'rate':>6}  {'SOPs':>9}  {'energy uJ':>10}  {'vs ANN':>7}  "
        "largest layer error |rate*V_th - a| / mean a (quantisation alone)",
    ]
    for key, rates in results["firing_rates"].items():
        sops, energy = results["synaptic_ops"][key], results["energy"][key]
        errors = results["layer_errors"].get(key, {})
        worst = max(errors.items(), key=lambda kv: kv[1]["relative"] or 0.0, default=None)
        where = ""
        if worst is not None and worst[1]["relative"] is not None:
            name, e = worst
            predicted = e["predicted_mae"]  # None: not predicted (a neuron model without a quantisation error)
            predicted = "n/a" if predicted is None else f"{predicted / e['mean_activation']:.3f}"
            where = f"{name} {e['relative']:.3f} ({predicted})"
        lines.append(
            f"  {int(key):5d}  {_num(rates['network'], '6.4f')}  {_num(sops['per_image'], '9.3g')}  "
            f"{_num(energy['snn_uj'], '10.4g')}  {_num(energy['snn_over_ann'], '6.3f')}x  {where}"
        )
    first = next(iter(results["synaptic_ops"].values()), None)
    if first is not None:
        ann_uj = next(iter(results["energy"].values()))["ann_uj"]
        lines.append(f"  ANN: {first['ann_macs']:.3g} MACs, {ann_uj:.4g} uJ per image")
    return "\n".join(lines)
