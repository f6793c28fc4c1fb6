"""ANN -> SNN conversion (Deng & Gu 2021, Algorithm 1), in plain PyTorch.

* :func:`calibrate_thresholds` -- per-site ``V_th`` = max activation over a calibration set
  (the paper), or a percentile, one per channel, or QCFS's ``lambda``; identical on every
  rank under ``torch.distributed``, equal to one process's.
* :func:`convert` -- the SNN: the model's prepared graph (:func:`lightning_snn.graph.prepare`)
  with every activation site replaced by an :class:`~lightning_snn.neurons.IFNeuron` (soft
  reset, spike amplitude ``V_th``) and every max pooling by a
  :class:`~lightning_snn.neurons.SpikingMaxPool2d`.

How the converter understands a network: through its torch.fx graph. Every call site of a
ReLU-like activation (a reused module, ``F.relu``, ``clamp(min=0)`` included) is its own
site with its own threshold and neuron, batch norm is folded into the conv before it, and
every other operation must be on an allow-list of linear, time-invariant operations that
run unchanged on time-folded ``[steps * B, ...]`` tensors (see :mod:`lightning_snn.neurons`).
Anything else is refused by name (:class:`~lightning_snn.graph.ConversionError`) before any
work, never converted wrongly. A residual block's activation after the add becomes one IF
neuron that integrates branch + shortcut, with the same shift as every other neuron.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from fractions import Fraction

import torch
import torch.distributed as dist
from torch import nn

from lightning_snn.activations import QCFS, ThresholdReLU
from lightning_snn.graph import (
    ConversionError,
    activation_sites,
    max_pool_sites,
    prepare,
    set_submodule,
)
from lightning_snn.neurons import IFNeuron, SpikingMaxPool2d, StatefulModule, neuron_class
from lightning_snn.snn import ConvertedSNN

#: Key of the output layer's maximum (the spiking readout's threshold) in a thresholds dict.
OUTPUT_KEY = "<output>"
SHIFT_MODES = ("membrane", "bias", "none")
READOUTS = ("analog", "spiking")
#: Threshold calibration methods of :func:`calibrate_thresholds`.
CALIBRATION_METHODS = ("max", "percentile", "channel", "lambda")


def activation_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The activation sites of ``model`` (one per call site), by name, in execution order.

    The modules are those of the prepared copy (:func:`lightning_snn.graph.prepare`), not of
    ``model``: a module called twice gives two sites.
    """
    return activation_sites(prepare(model))


def check_convertible(model: nn.Module) -> None:
    """Raise a :class:`~lightning_snn.graph.ConversionError` (a TypeError) if ``model`` cannot be
    converted exactly: untraceable, an operation off the allow-list (named), or no activation."""
    prepare(model)


@torch.no_grad()
def site_activations(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The ANN's activation at every site on the batch ``x``, and its output.

    Returns ``({site name: activation}, output)``, from the prepared copy (eval mode, batch norm
    folded), under the names the thresholds and the SNN's neurons use.
    """
    gm = prepare(model).to(x.device)
    acts: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, n=n: acts.__setitem__(n, out.detach().clone()))
        for n, m in activation_sites(gm).items()
    ]
    try:
        out = gm(x)
    finally:
        for h in handles:
            h.remove()
    return acts, out


@torch.no_grad()
def calibrate_thresholds(
    model: nn.Module,
    batches: Iterable,
    device: torch.device | str | None = None,
    include_output: bool = True,
    method: str = "max",
    percentile: float = 99.99,
) -> dict[str, float | torch.Tensor]:
    """Per-site threshold ``V_th`` from the ANN's activations on ``batches``.

    Runs the prepared copy of the model (:func:`lightning_snn.graph.prepare`) in eval mode (no
    dropout, batch norm folded); ``model`` itself is not touched.

    Methods:

    * ``"max"`` (the paper, Algorithm 1 lines 3-9): the largest activation of the site.
    * ``"percentile"``: the ``percentile``-th percentile of all the site's activation values
      (every element of every image, zeros included; Rueckauer et al. 2017), by the
      nearest-rank definition: the ``k``-th smallest value, ``k = ceil(p / 100 * N)`` of ``N``
      values (numpy's ``method="inverted_cdf"``; ``p`` is read as the decimal it prints as, so
      99.99 of 10000 values is the 9999th). It is exact, not estimated: a radix selection on
      the float's bit pattern, whose high 16 bits are counted in a histogram in a first pass
      over ``batches`` and the low 16 bits, within the one high bin that holds rank ``k``, in a
      second pass. So ``batches`` must be re-iterable (a list, a DataLoader; not a generator).
    * ``"channel"``: one threshold per output channel (dimension 1), its largest activation: a
      ``[C]`` tensor per site, which :class:`~lightning_snn.neurons.IFNeuron` takes as is.
    * ``"lambda"``: the clip level of the site's activation: QCFS's current ``lambda``
      (:attr:`~lightning_snn.activations.QCFS.y_th`, Bu et al. 2022 convert with
      ``V_th = lambda``) or a clipping :class:`~lightning_snn.activations.ThresholdReLU`'s
      ``y_th``; a site without a clip (plain ReLU, or a threshold ReLU still in its warm-up)
      gets its max.

    A threshold of 0 would be a neuron that never fires: a channel whose maximum is 0 (a dead
    channel) gets its layer's maximum, and a layer whose percentile is 0 (more than ``p``% of
    its values are 0) gets its maximum, so that conversion does not fail on them; a layer
    whose maximum is 0 (dead) keeps 0 and :func:`convert` refuses it by name. A non-finite
    maximum (NaN or inf in the ANN) is returned as is, for :func:`convert` to refuse.

    Under an initialised ``torch.distributed`` process group every rank passes its own share
    of the images and gets identical thresholds, equal to one process's over the union of the
    shares: maxima (per layer and per channel) are all-reduced with MAX; the percentile's
    histograms are integer counts, all-reduced with SUM after each pass, so every rank selects
    the same ``k``-th value of the union (no sampling, no approximation). Ranks may hold no
    batch at all.

    Args:
        model: the ANN.
        batches: an iterable of inputs or ``(inputs, targets)`` tuples; re-iterable for
            ``method="percentile"``.
        device: where to run (default: the model's device).
        include_output: also record the max output (logit), under :data:`OUTPUT_KEY`, the
            threshold of the spiking readout (always a max).
        method: ``"max"``, ``"percentile"``, ``"channel"`` or ``"lambda"`` (see above).
        percentile: ``p`` in ``(0, 100]`` for ``method="percentile"`` (100 = the max).

    Returns:
        ``{site name: V_th}`` in execution order (floats; ``[C]`` float tensors for
        ``"channel"``), plus :data:`OUTPUT_KEY` if requested. A module called once keeps its
        qualified name (``features.1``); see :mod:`lightning_snn.graph`.
    """
    check_calibration(method, percentile)
    gm = prepare(model)
    layers = activation_sites(gm)
    if device is None:
        device = next(model.parameters()).device
    gm = gm.to(device)
    names = list(layers)
    if method == "percentile" and isinstance(batches, Iterator):
        raise ValueError(
            "calibration method 'percentile' reads the calibration batches twice (an exact two-pass "
            "selection): pass a list or a DataLoader, not a generator or iterator."
        )
    stats = _FirstPass(len(names), device, per_channel=method == "channel", histogram=method == "percentile")
    seen = _calibration_pass(gm, [layers[n] for n in names], batches, device, stats.observe, stats.observe_output)
    if not _distributed() and seen == 0:
        raise ValueError("the calibration set is empty: pass at least one batch.")
    stats.reduce()
    maxima = stats.maxima.tolist()
    layer_maxima = maxima[:-1]
    if method == "channel":
        values = [_channel_thresholds(c, m) for c, m in zip(stats.channel_maxima, layer_maxima, strict=True)]
    elif method == "percentile":
        values = _percentiles(gm, [layers[n] for n in names], batches, device, stats.high, percentile)
        values = [v if v > 0 else m for v, m in zip(values, layer_maxima, strict=True)]
    elif method == "lambda":
        values = [_clip_level(layers[n], m) for n, m in zip(names, layer_maxima, strict=True)]
    else:
        values = layer_maxima
    # a non-finite maximum (NaN/inf in the ANN) is passed on whatever the method: convert() refuses it
    values = [v if math.isfinite(m) else m for v, m in zip(values, layer_maxima, strict=True)]
    thresholds = dict(zip(names, values, strict=True))
    if include_output:
        thresholds[OUTPUT_KEY] = maxima[-1]
    return thresholds


def check_calibration(method: str, percentile: float = 99.99) -> None:
    """Raise a ValueError/TypeError that says what is allowed if the calibration settings are unusable."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {list(CALIBRATION_METHODS)}.")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)):
        raise TypeError(f"percentile must be a number in (0, 100], e.g. 99.99, got {percentile!r}.")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], e.g. 99.99 (100 = the max), got {percentile}.")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _calibration_pass(gm: nn.Module, sites: list[nn.Module], batches: Iterable, device, on_site, on_output=None) -> int:
    """One forward pass of ``gm`` over ``batches`` with ``on_site(i, activation)`` hooked to
    site ``i``; returns the number of images seen."""
    handles = [m.register_forward_hook(lambda _m, _i, out, i=i: on_site(i, out.detach())) for i, m in enumerate(sites)]
    seen = 0
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            out = gm(x.to(device))
            if on_output is not None:
                on_output(out.detach())
            seen += x.shape[0]
    finally:
        for h in handles:
            h.remove()
    return seen


class _FirstPass:
    """Per-site statistics of the first calibration pass: maxima (always; the last entry is the
    output's), per-channel maxima and the histogram of the high 16 bits of the values' keys."""

    def __init__(self, n_sites: int, device, per_channel: bool, histogram: bool) -> None:
        self.maxima = torch.full((n_sites + 1,), float("-inf"), dtype=torch.float64, device=device)
        self.channel_maxima: list[torch.Tensor | None] | None = [None] * n_sites if per_channel else None
        self.high = torch.zeros(n_sites, _BINS, dtype=torch.long, device=device) if histogram else None
        self.device = device

    def observe(self, i: int, out: torch.Tensor) -> None:
        self.maxima[i] = torch.maximum(self.maxima[i], out.max().to(torch.float64))
        if self.channel_maxima is not None:
            per_channel = out.transpose(0, 1).flatten(1).amax(1).to(torch.float64)
            old = self.channel_maxima[i]
            self.channel_maxima[i] = per_channel if old is None else torch.maximum(old, per_channel)
        if self.high is not None:
            self.high[i] += torch.bincount(_high_bins(_float_keys(out)), minlength=_BINS)

    def observe_output(self, out: torch.Tensor) -> None:
        self.maxima[-1] = torch.maximum(self.maxima[-1], out.max().to(torch.float64))

    def reduce(self) -> None:
        """All-reduce over ranks (MAX for maxima, SUM for counts), so every rank holds the union's."""
        if not _distributed():
            return
        dist.all_reduce(self.maxima, op=dist.ReduceOp.MAX)
        if self.high is not None:
            dist.all_reduce(self.high, op=dist.ReduceOp.SUM)
        if self.channel_maxima is not None:
            # a rank without batches does not know the channel counts: agree on them first
            sizes = torch.tensor([0 if c is None else c.numel() for c in self.channel_maxima], device=self.device)
            dist.all_reduce(sizes, op=dist.ReduceOp.MAX)
            empty = torch.tensor([float("-inf")], dtype=torch.float64, device=self.device)
            flat = torch.cat(
                [
                    c if c is not None else empty.expand(int(n))
                    for c, n in zip(self.channel_maxima, sizes.tolist(), strict=True)
                ]
            )
            dist.all_reduce(flat, op=dist.ReduceOp.MAX)
            self.channel_maxima = list(flat.split(sizes.tolist()))


def _channel_thresholds(channel_max: torch.Tensor | None, layer_max: float) -> torch.Tensor | float:
    """Per-channel maxima with dead channels (max <= 0) set to the layer's maximum."""
    if channel_max is None:  # no image at all: the layer max (-inf) lets convert() refuse it
        return layer_max
    out = channel_max.detach().cpu().clone()
    out[out <= 0] = layer_max
    return out.to(torch.float32)


def _clip_level(act: nn.Module, layer_max: float) -> float:
    """QCFS's lambda or a clipping threshold ReLU's y_th; the maximum for an unclipped site."""
    if isinstance(act, QCFS):
        return act.y_th
    if isinstance(act, ThresholdReLU) and act._enabled:
        return act.y_th
    return layer_max


# ---- exact percentiles by radix selection on the float32 bit pattern ---------------------
_BINS = 1 << 16


def _float_keys(x: torch.Tensor) -> torch.Tensor:
    """int32 keys that sort like the float32 values (negative floats: lower 31 bits flipped)."""
    bits = x.to(torch.float32).reshape(-1).view(torch.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _high_bins(keys: torch.Tensor) -> torch.Tensor:
    return (keys >> 16).long() + _BINS // 2


def _key_value(key: int) -> float:
    """The float32 value of a key (the key map is its own inverse)."""
    k = torch.tensor([key], dtype=torch.int32)
    return (k ^ ((k >> 31) & 0x7FFFFFFF)).view(torch.float32).item()


def _rank(percentile: float, n: int) -> int:
    """Nearest rank ``k = ceil(p / 100 * n)`` (1-based), ``p`` taken as the decimal it prints as."""
    return min(max(math.ceil(Fraction(repr(float(percentile))) * n / 100), 1), n)


def _percentiles(gm, sites, batches, device, high: torch.Tensor, percentile: float) -> list[float]:
    """Second pass: the exact ``percentile`` of every site, given the (reduced) high-bit histograms."""
    totals = high.sum(1).tolist()
    ranks = [_rank(percentile, n) if n > 0 else 1 for n in totals]
    cumulative = high.cumsum(1)
    target = torch.tensor(ranks, device=device).unsqueeze(1)
    bins = torch.searchsorted(cumulative, target).squeeze(1).clamp_(max=_BINS - 1)
    before = torch.where(bins > 0, cumulative.gather(1, (bins - 1).clamp(min=0).unsqueeze(1)).squeeze(1), 0)
    within = (target.squeeze(1) - before).tolist()  # the rank inside the selected high bin
    low = torch.zeros_like(high)
    wanted = bins.tolist()

    def observe(i: int, out: torch.Tensor) -> None:
        keys = _float_keys(out)
        keys = keys[_high_bins(keys) == wanted[i]]
        low[i] += torch.bincount((keys & 0xFFFF).long(), minlength=_BINS)

    _calibration_pass(gm, sites, batches, device, observe)
    if _distributed():
        dist.all_reduce(low, op=dist.ReduceOp.SUM)
    values = []
    for i, n in enumerate(totals):
        if n == 0:
            values.append(float("-inf"))
            continue
        j = int(torch.searchsorted(low[i].cumsum(0), torch.tensor([within[i]], device=device)).item())
        values.append(_key_value(((wanted[i] - _BINS // 2) << 16) | j))
    return values


def _shift_terms(v_threshold: torch.Tensor, shift: str, timesteps: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(initial membrane, bias current) of one neuron under a shift mode."""
    zero = torch.zeros_like(v_threshold)
    if shift == "membrane":
        return v_threshold / 2.0, zero
    if shift == "bias":
        return zero, v_threshold / (2.0 * timesteps)
    return zero, zero


def check_neuron(neuron: str, model: nn.Module | None = None) -> None:
    """Refuse an unknown neuron model by name (:data:`~lightning_snn.neurons.NEURONS`), and (given
    the model) one that emits negative spikes into a gated spiking max-pool, before any training or
    calibration."""
    cls = neuron_class(neuron)
    if model is not None and cls.emits_negative:
        _refuse_negative_spikes_into_pools(neuron, max_pool_sites(prepare(model)))


def _refuse_negative_spikes_into_pools(neuron: str, spike_pools: dict) -> None:
    if spike_pools:
        raise ConversionError(
            f"max-pool(s) {sorted(spike_pools)} gate spike trains by their counts, which needs positive spikes: "
            f"{neuron!r} neurons fire negative ones and cannot feed them. Convert with neuron='if', or replace the "
            "max-pool by an average pool (or move it before the activation, where it is exact)."
        )


def convert(
    model: nn.Module,
    thresholds: dict[str, float],
    shift: str = "membrane",
    timesteps: int | None = None,
    readout: str = "analog",
    neuron: str = "if",
) -> ConvertedSNN:
    """Build the SNN from the model's prepared graph; ``model`` itself is never modified.

    Args:
        model: the source ANN (anything :func:`lightning_snn.graph.prepare` accepts).
        thresholds: from :func:`calibrate_thresholds` on this model: ``{site: V_th}``, a float
            or a per-channel ``[C]`` tensor / list per site.
        shift: ``"membrane"`` (initial membrane ``V_th/2``: independent of T, so one
            simulation to ``T_max`` is valid at every ``T``), ``"bias"`` (Algorithm 1:
            ``+V_th/(2T)`` to the bias, i.e. a constant input current; valid at ``timesteps``
            only) or ``"none"``.
        timesteps: the simulation length T, required for ``shift="bias"``.
        readout: ``"analog"`` (the last layer accumulates its input currents; predictions =
            argmax of the summed output) or ``"spiking"`` (the paper's IF output layer with
            threshold = max logit, no shift, as in the paper's appendix A.2).
        neuron: a registered neuron model (:data:`~lightning_snn.neurons.NEURONS`): ``"if"``
            (the paper's integrate-and-fire neuron, soft reset), ``"signed"``
            (:class:`~lightning_snn.neurons.SignedIFNeuron`, which also fires negative spikes to
            take back early ones: fewer errors at short T), or one added with
            :func:`~lightning_snn.neurons.register_neuron`. A gated spiking max-pool needs positive
            spikes, so a model with one is refused for a neuron that emits negative spikes.

    Returns:
        The SNN (a :class:`~lightning_snn.snn.ConvertedSNN`: the body graph, the readout, the
        shift and the thresholds), in eval mode, on the model's device. Run it with
        :func:`lightning_snn.simulation.simulate`.

    Raises:
        ConversionError: the model holds something the converter cannot convert exactly.
        ValueError: bad settings, or thresholds that do not fit this model.
    """
    if shift not in SHIFT_MODES:
        raise ValueError(f"unknown shift mode {shift!r}; choose one of {list(SHIFT_MODES)}.")
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; choose one of {list(READOUTS)}.")
    if shift == "bias" and (timesteps is None or int(timesteps) <= 0):
        raise ValueError("shift='bias' adds V_th/(2T) to the bias: pass the simulation length timesteps=T > 0.")
    make = neuron_class(neuron)
    snn = prepare(model)
    sites = activation_sites(snn)
    spike_pools = max_pool_sites(snn)  # before the sites become IF neurons: it looks for the sites
    missing = [n for n in sites if n not in thresholds]
    if missing:
        raise ValueError(
            f"no threshold for activation site(s) {missing}: the thresholds come from another "
            "architecture; calibrate this model with calibrate_thresholds()."
        )
    for name, act in sites.items():
        vth = torch.as_tensor(thresholds[name], dtype=torch.float64)  # IFNeuron names a dead or NaN site
        v_init, bias = _shift_terms(vth, shift, timesteps)
        if isinstance(act, ThresholdReLU):
            bias = bias - act.shift  # the source ANN computed clamp(x - shift, 0, y_th)
        set_submodule(snn, name, make(vth, v_init=v_init, bias_current=bias, name=name))
    if make.emits_negative:
        _refuse_negative_spikes_into_pools(neuron, spike_pools)
    for name, pool in spike_pools.items():
        set_submodule(snn, name, SpikingMaxPool2d.from_max_pool(pool))
    readout_neuron = None
    if readout == "spiking":
        if OUTPUT_KEY not in thresholds:
            raise ValueError("readout='spiking' needs the max logit: calibrate with include_output=True.")
        readout_neuron = IFNeuron(float(thresholds[OUTPUT_KEY]), name=OUTPUT_KEY)
    used = [*sites, OUTPUT_KEY] if readout == "spiking" else list(sites)
    snn = ConvertedSNN(
        snn,
        readout_neuron,
        shift=shift,
        timesteps=int(timesteps) if shift == "bias" else None,
        thresholds={name: thresholds[name] for name in used},
        neuron=neuron,
    )
    param = next(model.parameters(), None)
    return snn.to(param.device if param is not None else "cpu").eval()


def neurons(snn: nn.Module) -> list[IFNeuron]:
    """The IF neurons of an SNN, in module order."""
    return [m for m in snn.modules() if isinstance(m, IFNeuron)]


def stateful_modules(snn: nn.Module) -> list[StatefulModule]:
    """Every layer of an SNN that keeps state across steps (IF neurons, spiking max-pools)."""
    return [m for m in snn.modules() if isinstance(m, StatefulModule)]


__all__ = [
    "CALIBRATION_METHODS",
    "OUTPUT_KEY",
    "READOUTS",
    "SHIFT_MODES",
    "ConversionError",
    "ConvertedSNN",
    "activation_layers",
    "calibrate_thresholds",
    "check_calibration",
    "check_convertible",
    "convert",
    "neurons",
    "site_activations",
    "stateful_modules",
]
