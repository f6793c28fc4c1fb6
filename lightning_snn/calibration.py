"""Threshold calibration (Deng & Gu 2021, Algorithm 1 lines 3-9, and the methods since): one
``V_th`` per activation site from the ANN's activations on a calibration set.

The methods live in a registry (:data:`CALIBRATIONS`): each says what its first pass over the
images must collect (per-channel maxima, a histogram for an exact percentile) and computes the
thresholds from it (:class:`CalibrationRun`). ``max`` (the paper's), ``percentile``, ``channel``
and ``lambda`` are registered here; :func:`register_calibration` adds one from any module. Every
method is identical on every rank under ``torch.distributed`` and equal to one process's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.distributed as dist
from torch import fx, nn

from lightning_snn.activations import QCFS, ThresholdReLU
from lightning_snn.graph import activation_sites, prepare, record_sites

#: Key of the output layer's maximum (the spiking readout's threshold) in a thresholds dict.
OUTPUT_KEY = "<output>"


@dataclass(frozen=True)
class CalibrationRun:
    """What a calibration method reads: the prepared ANN, its sites, the batches (a method with
    ``two_passes`` may run them again), the first pass's statistics and each site's maximum."""

    gm: nn.Module
    sites: dict[str, nn.Module]
    batches: Iterable
    device: torch.device | str
    stats: _FirstPass
    layer_maxima: list[float]
    percentile: float


@dataclass(frozen=True)
class CalibrationMethod:
    """A registered calibration method.

    Attributes:
        thresholds: ``run -> [V_th per site]`` (floats, or ``[C]`` tensors per channel).
        per_channel: its first pass collects each site's per-channel maxima.
        histogram: its first pass collects the histogram of the values' high 16 bits.
        two_passes: it reads the batches again (they must be re-iterable).
    """

    thresholds: Callable[[CalibrationRun], Sequence[float | torch.Tensor]]
    per_channel: bool = False
    histogram: bool = False
    two_passes: bool = False


#: The calibration methods by name (``snn.calibration``, ``calibrate_thresholds(method=...)``).
CALIBRATIONS: dict[str, CalibrationMethod] = {}


def register_calibration(
    name: str, *, per_channel: bool = False, histogram: bool = False, two_passes: bool = False
) -> Callable[[Callable[[CalibrationRun], Sequence]], Callable[[CalibrationRun], Sequence]]:
    """Function decorator: register ``run -> thresholds`` as the calibration method ``name``."""

    def add(fn: Callable[[CalibrationRun], Sequence]) -> Callable[[CalibrationRun], Sequence]:
        taken = CALIBRATIONS.get(name)
        if taken is not None and taken.thresholds is not fn:
            raise ValueError(f"calibration method {name!r} is already registered ({taken.thresholds.__qualname__}).")
        CALIBRATIONS[name] = CalibrationMethod(fn, per_channel, histogram, two_passes)
        return fn

    return add


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
    if device is None:
        device = next(model.parameters()).device
    return calibrate_graph(gm, batches, device, include_output, method, percentile)


def calibrate_graph(
    gm: fx.GraphModule,
    batches: Iterable,
    device: torch.device | str,
    include_output: bool = True,
    method: str = "max",
    percentile: float = 99.99,
) -> dict[str, float | torch.Tensor]:
    """:func:`calibrate_thresholds` on the model's prepared graph (:func:`lightning_snn.graph.prepare`,
    moved to ``device``, otherwise not modified) with settings checked already (by
    :func:`calibrate_thresholds` or a :class:`~lightning_snn.conversion_config.ConversionConfig`)."""
    layers = activation_sites(gm)
    gm = gm.to(device)
    names = list(layers)
    if CALIBRATIONS[method].two_passes and isinstance(batches, Iterator):
        raise ValueError(
            f"calibration method {method!r} reads the calibration batches twice (an exact two-pass "
            "selection): pass a list or a DataLoader, not a generator or iterator."
        )
    spec = CALIBRATIONS[method]
    stats = _FirstPass(len(names), device, per_channel=spec.per_channel, histogram=spec.histogram)
    seen = _calibration_pass(gm, layers, batches, device, stats.observe, stats.observe_output)
    if not _distributed() and seen == 0:
        raise ValueError("the calibration set is empty: pass at least one batch.")
    stats.reduce()
    maxima = stats.maxima.tolist()
    layer_maxima = maxima[:-1]
    run = CalibrationRun(gm, layers, batches, device, stats, layer_maxima, percentile)
    values = list(spec.thresholds(run))
    # a non-finite maximum (NaN/inf in the ANN) is passed on whatever the method: convert() refuses it
    values = [v if math.isfinite(m) else m for v, m in zip(values, layer_maxima, strict=True)]
    thresholds = dict(zip(names, values, strict=True))
    if include_output:
        thresholds[OUTPUT_KEY] = maxima[-1]
    return thresholds


def check_calibration(method: str, percentile: float = 99.99) -> None:
    """Raise a ValueError/TypeError that says what is allowed if the calibration settings are unusable."""
    if method not in CALIBRATIONS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {sorted(CALIBRATIONS)}.")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)):
        raise TypeError(f"percentile must be a number in (0, 100], e.g. 99.99, got {percentile!r}.")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], e.g. 99.99 (100 = the max), got {percentile}.")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _calibration_pass(
    gm: nn.Module, sites: dict[str, nn.Module], batches: Iterable, device, on_site, on_output=None
) -> int:
    """One forward pass of ``gm`` over ``batches`` with ``on_site(i, activation)`` called for the
    ``i``-th site; returns the number of images seen."""
    index = {name: i for i, name in enumerate(sites)}
    seen = 0
    with record_sites(sites, lambda name, out: on_site(index[name], out)):
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            out = gm(x.to(device))
            if on_output is not None:
                on_output(out.detach())
            seen += x.shape[0]
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


# ---- the registered methods ------------------------------------------------------------------
@register_calibration("max")
def _max(run: CalibrationRun) -> list[float]:
    """The paper's: the largest activation of the site."""
    return run.layer_maxima


@register_calibration("percentile", histogram=True, two_passes=True)
def _percentile(run: CalibrationRun) -> list[float]:
    """The exact nearest-rank percentile (a layer whose percentile is 0: its maximum)."""
    values = _percentiles(run.gm, run.sites, run.batches, run.device, run.stats.high, run.percentile)
    return [v if v > 0 else m for v, m in zip(values, run.layer_maxima, strict=True)]


@register_calibration("channel", per_channel=True)
def _channel(run: CalibrationRun) -> list[torch.Tensor | float]:
    """One threshold per output channel, its largest activation (dead channels: the layer's)."""
    return [_channel_thresholds(c, m) for c, m in zip(run.stats.channel_maxima, run.layer_maxima, strict=True)]


@register_calibration("lambda")
def _lambda(run: CalibrationRun) -> list[float]:
    """The site's clip level (QCFS's lambda, a clipping threshold ReLU's y_th; else its maximum)."""
    return [_clip_level(site, m) for site, m in zip(run.sites.values(), run.layer_maxima, strict=True)]


#: The registered method names when this module loaded (``CALIBRATIONS`` is the live registry).
CALIBRATION_METHODS = tuple(CALIBRATIONS)

__all__ = [
    "CALIBRATIONS",
    "CALIBRATION_METHODS",
    "OUTPUT_KEY",
    "CalibrationMethod",
    "CalibrationRun",
    "calibrate_graph",
    "calibrate_thresholds",
    "check_calibration",
    "register_calibration",
]
