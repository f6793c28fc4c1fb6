"""Inside the SNN, across T: firing rates, synaptic operations, energy and per-layer error.

Everything here is read from the **same** simulation that gives the accuracy-vs-T curve
(:func:`lightning_snn.simulation.simulate`): forward hooks on the spiking layers keep one running
sum of each layer's output per batch (``[B, neurons]``, the size of its membrane potential) and,
at every T of the list, reduce it at once to a few numbers per layer; nothing of size
``[T, B, neurons]`` is ever stored. With no probe attached the engine runs exactly as before.

* **Firing rate**: spikes per neuron per step, per IF layer and for the whole network.
* **Synaptic operations (SOPs)**: each spike counted once per synapse it drives. A neuron's
  fan-out is computed once per SNN from its torch.fx graph (:func:`~lightning_snn.fanout.synapse_map`): the graph
  downstream of each spiking layer is run on one sample with every conv / linear weight replaced
  by its non-zero mask (ones where a synapse exists), no bias, average pooling as sum pooling,
  every other linear operation (batch norm, scaling, subtraction, flatten, dropout) as identity,
  and autograd gives, per neuron, the number of synapses it reaches before the next synaptic
  layer's output, or the input of an IF layer reached without one (an identity shortcut: one
  synapse per spike). Exact for conv (kernel, stride, dilation, padding, padding mode, groups,
  borders), linear, pooling, ``cat`` and residual branches. A spiking max-pool is a gate, not a
  synapse: the spikes it passes on are counted at its output with its output's fan-out and
  credited to the IF layer that feeds it. A spike through an average pooling drives the
  synapses of its pooled position (the pooling folded into the next layer's weights).
* **MACs**: the first synaptic layer(s) on the analog input (the image is not spikes), and the
  ANN's MACs for the same images: every synaptic layer dense, layer by layer (non-zero weights,
  padding excluded, the same counting as the SOPs).
* **Energy** per image: ``E_AC * SOPs + E_MAC * input MACs`` next to the ANN's ``E_MAC * MACs``
  (:class:`EnergyModel`; 0.9 pJ and 4.6 pJ, 45 nm, Horowitz 2014). The input MACs are counted once
  per step, as the SNN literature does (hardware that presents the image at every step recomputes
  them), although this engine computes them once per chunk and broadcasts.
* **Per-layer conversion error**: mean ``|rate x V_th - min(a, V_th)|`` over the layer's neurons
  and the images, ``a`` being the ANN's activation at that layer on the same images; also relative
  to the mean of ``min(a, V_th)``. The part of ``a`` above ``V_th`` (test activations above the
  calibrated maximum; zero for a threshold-ReLU ANN whose clip is V_th) is no rate-coding error:
  no T removes it, so it is reported apart as ``clip_mae``.

  **Predicted** (``predicted_mae``): the paper's layer-wise error model, eq. (14)-(15): the
  input ``z`` of a layer uniform within each quantisation interval of width ``V_th / T`` and
  ``h'`` the IF neuron's rate function, a floor with step ``V_th / T`` shifted by ``delta``.
  Then ``E|h'(z - delta) - h(z)| = V_th / (4T)`` at the paper's optimal shift
  ``delta = V_th / (2T)`` (eq. 15: a rounding; our membrane and bias shifts both realise it) and
  ``V_th / (2T)`` without a shift (a floor), for neurons whose activation is inside
  ``(0, V_th)``; 0 for those at 0 or at the clip, where the IF neuron is exact. A shift of
  another size (``shift_scale``, the constant shift) offsets the floor by ``o`` steps, read from
  the neuron's initial membrane and bias current at each T (``o = v_0 / V_th + T b / V_th``),
  and the model's error is ``(o^2 + (1 - o)^2) / 2`` steps for ``0 <= o <= 1``, ``o - 1/2``
  beyond (:func:`quantisation_factor`). The factor is the neuron model's own
  (:meth:`~lightning_snn.neurons.IFNeuron.quantisation_error`; the signed neuron's is the IF
  neuron's); a model without one is left out of the prediction (``null``), by name. We compare the
  mean *absolute* error in activation units because the paper's own totals, eq. (13) and (16)
  (``L V_th^2 / (4T)``), are a loss proxy (constant Hessian, summed over layers), not a per-layer
  quantity one can measure; they share its ``1/T`` law. The prediction is the layer's own
  quantisation term ``Delta a'_l`` of eq. (10) only: deeper layers also inherit the earlier
  layers' errors (eq. (10)'s ``B_l W_l Delta a_{l-1}``), so measured >= predicted there.

Plain PyTorch: :func:`simulate_with_diagnostics` for one batch, :class:`DiagnosticsProbe` to run
many batches (fan-out maps and the prepared ANN built once), :class:`Diagnostics` to accumulate
them (``merge``) and to reduce them over ``torch.distributed`` ranks (``all_reduce``: sums).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.fx as fx
from torch import nn

from lightning_snn.conversion import OUTPUT_KEY
from lightning_snn.diagnostic_results import (
    _ABS_ERROR,
    _ACT,
    _CLIP,
    _ELEMENTS,
    _LOST,
    _N_COLUMNS,
    _QUANT,
    _SOPS,
    _SPIKES,
    E_AC_PJ,
    E_MAC_PJ,
    Diagnostics,
    EnergyModel,
    summary_table,
)
from lightning_snn.fanout import INPUT_KEY, SynapseMap, _body, synapse_map
from lightning_snn.graph import activation_sites, prepare, record_sites
from lightning_snn.layer_statistics import statistic_classes
from lightning_snn.neurons import IFNeuron, SpikingMaxPool2d, _per_channel, quantisation_factor
from lightning_snn.simulation import checked_time_chunk, rows_as_asked, simulate_checked, validate_timesteps
from lightning_snn.snn import ConvertedSNN

if TYPE_CHECKING:
    from lightning_snn.conversion_config import ConversionConfig


# ---- recording during the simulation ------------------------------------------------------------
def _per_element(value: torch.Tensor, features: torch.Size, dtype=torch.float32) -> torch.Tensor:
    """A neuron's scalar or per-channel ``[C]`` buffer as one value per element of ``features``."""
    value = value.detach().to(dtype)
    if value.dim() == 1 and len(features) > 1:
        value = value.view(-1, *([1] * (len(features) - 1)))
    return value.expand(features).reshape(-1)


def spike_counts(neuron: IFNeuron, mean_current: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each neuron's net spike count after ``t`` steps and how many counts could not be recovered:
    the neuron model's own reading (:meth:`lightning_snn.neurons.IFNeuron.spike_counts`)."""
    return neuron.spike_counts(mean_current, t)


class _PoolSum:
    """A forward hook on a spiking max-pool: the running sum of its output (it fires no spikes of
    its own, and what it passes on is not a function of its input's sum)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None

    def __call__(self, module: nn.Module, _inputs, output: torch.Tensor) -> None:
        steps = module.steps
        out = output.view(steps, -1, *output.shape[1:])
        chunk = out[0] if steps == 1 else out.sum(0)
        self.total = chunk.clone() if self.total is None else self.total.add_(chunk)


class _CountReader(fx.Interpreter):
    """At step T, the SNN's graph run once on time averages: every layer in between is affine, so
    its mean output is the layer applied to its mean input; each IF layer turns its mean input
    current and its membrane potential into exact spike counts (:func:`spike_counts`)."""

    def __init__(self, gm: fx.GraphModule, t: int, pools: Mapping[str, _PoolSum], read) -> None:
        super().__init__(gm)
        self.t, self.pools, self.read = t, pools, read

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        if isinstance(module, IFNeuron):
            return self.read(target, module, args[0])
        if isinstance(module, SpikingMaxPool2d):
            return self.pools[target].total / self.t
        return super().call_module(target, args, kwargs)


class DiagnosticsProbe:
    """Runs SNN simulations with diagnostics, batch after batch; fan-out maps and the prepared ANN
    are built once.

    How it reads the counts at every T without slowing the simulation: nothing is added to the
    per-step work of the IF neurons. The simulation ends a chunk at every T of the list and calls
    back (``simulate(..., on_timestep=...)``); there :class:`_CountReader` runs the graph once on
    time averages and recovers every IF neuron's exact spike count from its membrane potential.
    Only the spiking max-pools' outputs are summed step by step (forward hooks).

    Args:
        snns: the SNN (simulated to ``T_max``), or the SNNs of a
            :class:`lightning_snn.simulation.SpikingEvaluator` (each knows the T it is built for: one
            for every T, or in bias mode one per T), or ``{T: SNN}`` with one SNN per T.
        ann: the source ANN the SNN was converted from (for its activations and MACs).
        timesteps: the simulation lengths T.
        time_chunk: as in :func:`~lightning_snn.simulation.simulate`.
        energy: energy constants (default :class:`EnergyModel`).
        read_timesteps: the T at which the outputs are read (default ``timesteps``); a superset of
            ``timesteps``, which alone get diagnostics (e.g. every T of an average over 400..600,
            read from the same simulation without a diagnostics read at each).
        statistics: layer statistics to measure besides, by name or import path
            (:mod:`lightning_snn.layer_statistics`; ``snn.statistics``).
    """

    def __init__(
        self,
        snns: nn.Module | Sequence[ConvertedSNN] | Mapping[int, nn.Module],
        ann: nn.Module,
        timesteps: Sequence[int],
        time_chunk: int | str = "auto",
        energy: EnergyModel | None = None,
        read_timesteps: Sequence[int] | None = None,
        statistics: Sequence[str] = (),
    ) -> None:
        ts = validate_timesteps(timesteps)
        read_ts = ts if read_timesteps is None else validate_timesteps(read_timesteps)
        chunk = checked_time_chunk(time_chunk)
        self._setup(snns, prepare(ann), ts, chunk, energy, read_ts, statistic_classes(statistics))

    @classmethod
    def from_config(
        cls,
        snns: Sequence[ConvertedSNN],
        graph: fx.GraphModule,
        config: ConversionConfig,
    ) -> DiagnosticsProbe:
        """The probe of a checked ``config`` (its T, time chunk, energy and read T) for the SNNs of a
        :class:`~lightning_snn.simulation.SpikingEvaluator`, with the source ANN's prepared ``graph``
        (:meth:`~lightning_snn.conversion_config.ConversionConfig.check_model`; not prepared again)."""
        self = cls.__new__(cls)
        ts, read_ts = list(config.timesteps), list(config.read_timesteps)
        self._setup(snns, graph, ts, config.time_chunk, config.energy, read_ts, config.statistic_types)
        return self

    def _setup(
        self, snns, graph: fx.GraphModule, timesteps: list[int], time_chunk, energy, read_timesteps, statistics=()
    ) -> None:
        self.timesteps = timesteps
        self.statistics = tuple(statistics)
        self._stat_readers = [cls() for cls in self.statistics]
        #: the SNN valid at every T (simulated once to T_max), or None and one SNN per T in ``per_t``
        self.snn: nn.Module | None = None
        self.per_t: dict[int, nn.Module] = {}
        if isinstance(snns, Sequence) and len(snns) == 1 and snns[0].timesteps is None:
            self.snn = snns[0]
        elif isinstance(snns, Sequence):  # SpikingEvaluator.snns in bias mode: each knows its T
            self.per_t = {snn.timesteps: snn for snn in snns}
        elif isinstance(snns, Mapping):
            self.per_t = dict(snns)
        else:
            self.snn = snns
        if self.snn is None and set(self.per_t) != set(self.timesteps):
            raise ValueError(f"one SNN per T needs exactly the T list {self.timesteps}, got {sorted(self.per_t)}.")
        self.time_chunk = time_chunk
        self.energy = energy or EnergyModel()
        gm, readout = _body(self._snn_at(self.timesteps[0]))
        self.ann = graph
        self.sites = list(activation_sites(self.ann))  # the ANN's sites, in execution order
        missing = [n for n in self.sites if not isinstance(_get(gm, n), IFNeuron)]
        if missing:
            raise ValueError(f"the SNN has no IF neuron at the ANN's layer(s) {missing}: convert this ANN.")
        self.layers = self.sites + ([OUTPUT_KEY] if readout is not None else [])
        self.synapses: SynapseMap | None = None
        self._fanouts: dict[tuple, torch.Tensor] = {}
        self.quant_factor = torch.tensor(
            [[self._quant_factor(name, t) for t in self.timesteps] for name in self.layers], dtype=torch.float64
        ).reshape(len(self.layers), len(self.timesteps))
        self._warn_unmodelled()
        self.read_timesteps = read_timesteps
        if not set(self.timesteps) <= set(self.read_timesteps):
            raise ValueError(f"read_timesteps must hold every T of the diagnostics {self.timesteps}.")
        if self.snn is None and self.read_timesteps != self.timesteps:
            raise ValueError("one SNN per T (bias shift) reads its own T only: read_timesteps must be the T list.")

    def _snn_at(self, t: int) -> nn.Module:
        return self.snn if self.snn is not None else self.per_t[t]

    def _neuron(self, name: str, t: int) -> IFNeuron:
        gm, readout = _body(self._snn_at(t))
        return readout if name == OUTPUT_KEY else _get(gm, name)

    def _quant_factor(self, name: str, t: int) -> float:
        """The quantisation error in steps at T of layer ``name`` of the SNN simulated at T, as its
        neuron model gives it (:meth:`~lightning_snn.neurons.IFNeuron.quantisation_error`); NaN
        where the model has none."""
        neuron = self._neuron(name, t)
        factor = neuron.quantisation_error(t)
        if factor is None:
            return float("nan")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 <= factor < float("inf"):
            raise ValueError(
                f"{type(neuron).__name__}.quantisation_error({t}) returned {factor!r}: it must be a number of "
                "steps >= 0, or None for a neuron model without one."
            )
        return float(factor)

    def _warn_unmodelled(self) -> None:
        """Name the layers left out of the theory overlay and their neuron models."""
        rows = torch.isnan(self.quant_factor).any(1).tolist()
        left_out = [name for name, nan in zip(self.layers, rows, strict=True) if nan]
        if left_out:
            models = sorted({repr(self._neuron(n, self.timesteps[0]).kind) for n in left_out})
            warnings.warn(
                f"no predicted error for layer(s) {left_out}: neuron {', '.join(models)} gives no quantisation "
                "error per step (IFNeuron.quantisation_error; docs/EXTENDING.md), so the theory overlay leaves "
                "them out (predicted_mae: null); everything measured is reported.",
                stacklevel=3,
            )

    def empty(self, device=None) -> Diagnostics:
        """Zero diagnostics of this SNN (for a rank with no batches)."""
        return Diagnostics.empty(self.timesteps, self.layers, device, self.energy, self.quant_factor, self.statistics)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, Diagnostics]:
        """Simulate the batch ``x``; returns ``(outputs [len(read_timesteps), B, ...], Diagnostics of this
        batch)``, one output row per T of ``self.read_timesteps`` (sorted, de-duplicated)."""
        if self.synapses is None:
            self.synapses = synapse_map(self._snn_at(self.timesteps[0]), x)
        diag = self.empty(x.device)
        targets = self._ann_targets(x, diag)
        scratch: dict[str, torch.Tensor] = {}  # one buffer per layer for the error sums of this batch
        diag.structure[-2] = self.synapses.input_macs
        diag.structure[-1] = self.synapses.ann_macs
        diag.images = torch.tensor(float(x.shape[0]), dtype=torch.float64, device=x.device)
        outputs = []
        # one simulation to T_max read at every T, or (bias shift) one simulation per T of its own SNN
        runs = [(self.snn, self.read_timesteps, self.timesteps)] if self.snn is not None else []
        runs += [(self.per_t[t], [t], [t]) for t in self.timesteps if self.snn is None]
        for snn, ts, stops in runs:
            gm, readout = _body(snn)
            pools = {
                n: _PoolSum() for n, fan in self.synapses.fanout.items() if isinstance(_get(gm, n), SpikingMaxPool2d)
            }
            handles = [gm.get_submodule(n).register_forward_hook(p) for n, p in pools.items()]
            try:
                read = lambda step, gm=gm, readout=readout, pools=pools: self._read(  # noqa: E731
                    gm, readout, pools, x, step, diag, targets, scratch
                )
                outputs.append(simulate_checked(snn, x, ts, self.time_chunk, on_timestep=read, stops=stops))
            finally:
                for h in handles:
                    h.remove()
        return torch.cat(outputs), diag

    def _flat_fanout(self, fanout: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        key = (id(fanout), like.device, like.dtype)
        if key not in self._fanouts:
            self._fanouts[key] = fanout.reshape(-1).to(like.device, like.dtype)
        return self._fanouts[key]

    def _read(self, gm, readout, pools, x, t: int, diag: Diagnostics, targets, scratch: dict) -> None:
        """At step ``t``: every layer's spike counts, reduced at once to this T's sums."""
        i = self.timesteps.index(t)

        def reduce(layer: str, counts: torch.Tensor, fanout: torch.Tensor, fires: bool) -> None:
            row = self.layers.index(layer)
            summed = counts.reshape(counts.shape[0], -1).sum(0)
            sops = summed @ self._flat_fanout(fanout, summed)
            diag.per_t[row, i, _SOPS] += sops.to(torch.float64)
            if fires:
                diag.per_t[row, i, _SPIKES] += summed.sum().to(torch.float64)

        def read_neuron(name: str, neuron: IFNeuron, mean_current: torch.Tensor) -> torch.Tensor:
            counts, lost = spike_counts(neuron, mean_current, t)  # net: positive minus negative spikes
            row = self.layers.index(name)
            diag.per_t[row, i, _LOST] += lost.to(torch.float64)
            for k, stat in enumerate(self._stat_readers):  # before counts are used up below
                diag.per_t[row, i, _N_COLUMNS + k] += stat.read(counts, t, neuron).to(torch.float64)
            events = neuron.events(counts)  # every spike is an event, whatever its sign
            reduce(self.synapses.credited_to[name], events, self.synapses.fanout[name], True)
            vth = _per_channel(neuron.v_threshold.to(counts.dtype), counts.dim() - 1)
            mean_out = counts.mul_(vth / t)  # rate x V_th; counts are used up
            target = targets.get(name)
            if target is not None:  # in a buffer kept for the batch: allocating is most of the cost
                if name not in scratch:
                    scratch[name] = torch.empty_like(target)
                diff = torch.sub(mean_out, target, out=scratch[name]).abs_()
                diag.per_t[self.layers.index(name), i, _ABS_ERROR] += diff.sum().to(torch.float64)
            return mean_out

        for name, pool in pools.items():  # a max-pool's spikes are its feeding layer's, with its own fan-out
            feeding = self.synapses.credited_to[name]
            neuron = _get(gm, feeding)
            if not isinstance(neuron, IFNeuron):
                raise ValueError(f"cannot tell which IF layer feeds the spiking max-pool {name!r}.")
            vth = _per_channel(neuron.v_threshold.to(pool.total.dtype), pool.total.dim() - 1)
            reduce(feeding, pool.total / vth, self.synapses.fanout[name], False)
        out = _CountReader(gm, t, pools, read_neuron).run(x)
        if readout is not None:
            read_neuron(OUTPUT_KEY, readout, out)

    def _ann_targets(self, x: torch.Tensor, diag: Diagnostics) -> dict[str, torch.Tensor]:
        """``min(a, V_th)`` per layer for the errors, and the per-layer sums of this batch."""
        self.ann = self.ann.to(x.device)
        gm, _ = _body(self._snn_at(self.timesteps[0]))
        acts: dict[str, torch.Tensor] = {}
        with record_sites(activation_sites(self.ann), acts.__setitem__):
            self.ann(x)
        targets = {}
        for j, name in enumerate(self.sites):
            neuron: IFNeuron = _get(gm, name)
            a = acts[name]
            vth = _per_channel(neuron.v_threshold.to(a.device, a.dtype), a.dim() - 1)
            clipped = torch.minimum(a, vth)
            # the neurons inside (0, V_th), where the IF neuron quantises; its own V_th for each
            # (count_nonzero of a bool tensor: several times faster than its sum on the CPU)
            if vth.dim() == 0:
                inside_vth = vth * (torch.count_nonzero(a > 0) - torch.count_nonzero(a >= vth))
            else:
                per_channel = torch.count_nonzero((a > 0) & (a < vth), [0, *range(2, a.dim())])
                inside_vth = per_channel.to(a.dtype) @ neuron.v_threshold.to(a.device, a.dtype)
            layer = diag.per_layer[j]
            layer[_ACT] = clipped.sum()
            layer[_CLIP] = (a - clipped).sum()
            layer[_QUANT] = inside_vth  # x the quantisation factor per T, in layer_errors
            layer[_ELEMENTS] = a.numel()
            diag.structure[j] = a[0].numel()
            targets[name] = clipped
        if len(self.layers) > len(self.sites):  # the spiking readout's neuron
            diag.structure[len(self.sites)] = float(self.synapses.fanout[OUTPUT_KEY].numel())
        return targets


def _get(gm: nn.Module, name: str) -> nn.Module | None:
    try:
        return gm.get_submodule(name)
    except AttributeError:
        return None


def simulate_with_diagnostics(
    snn: nn.Module,
    ann: nn.Module,
    x: torch.Tensor,
    timesteps: Sequence[int],
    time_chunk: int | str = "auto",
    energy: EnergyModel | None = None,
) -> tuple[torch.Tensor, Diagnostics]:
    """:func:`~lightning_snn.simulation.simulate` plus firing rates, SOPs, energy and per-layer
    errors at every T, from the same simulation.

    For many batches build a :class:`DiagnosticsProbe` once (this function rebuilds the fan-out
    maps and the prepared ANN at every call) and ``merge`` the per-batch results.

    Args:
        snn: from :func:`lightning_snn.conversion.convert` (membrane or no shift: one run to
            ``T_max``; for the bias mode pass ``{T: snn}`` to :class:`DiagnosticsProbe`).
        ann: the ANN it was converted from.
        x: one batch of inputs ``[B, ...]``.
        timesteps: the T values to read.
        time_chunk: as in :func:`~lightning_snn.simulation.simulate`.
        energy: energy constants (default 0.9 pJ per AC, 4.6 pJ per MAC).

    Returns:
        ``(outputs, diagnostics)``: ``outputs`` exactly as :func:`simulate` returns them,
        ``diagnostics`` a :class:`Diagnostics` (``.firing_rates()``, ``.synaptic_ops()``,
        ``.energy_per_image()``, ``.layer_errors()``, ``.to_json()``).
    """
    outputs, diagnostics = DiagnosticsProbe(snn, ann, timesteps, time_chunk, energy)(x)
    rows = rows_as_asked(timesteps, validate_timesteps(timesteps))  # as simulate() returns them
    return (outputs if rows is None else outputs[rows.to(outputs.device)]), diagnostics


__all__ = [
    "E_AC_PJ",
    "E_MAC_PJ",
    "Diagnostics",
    "DiagnosticsProbe",
    "EnergyModel",
    "INPUT_KEY",
    "SynapseMap",
    "quantisation_factor",
    "simulate_with_diagnostics",
    "summary_table",
    "synapse_map",
]
