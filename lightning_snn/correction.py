"""Label-free post-conversion correction: SNN Calibration's "light" bias correction (Li et al., ICML 2021).

At a short simulation length T an IF layer's mean output (spike count x ``V_th`` / T) drifts
from its ANN activation: quantization, the neurons' residual membrane, and the errors of the
layers before it, which do not average out. :func:`correct_bias` measures that drift on the
calibration images (no labels) and cancels its mean, layer by layer in execution order: for
each activation site it adds, per channel, the mean over images and positions of

    e_c = ANN activation - SNN output rate x V_th   (at the target T)

to the IF neuron's constant input current (:meth:`~lightning_snn.neurons.IFNeuron.set_bias_current`),
and only then measures the next layer, which so sees the already-corrected layers before it.

Why ``e`` itself: the bias current is added at every step, and the SNN's rate x ``V_th`` is a
per-step quantity, so a current ``d`` raises the membrane by ``T d`` over T steps and the output
rate x ``V_th`` by about ``d`` (exactly, for a neuron that neither saturates at one spike per
step nor stays silent): a mean error ``e`` needs a current of about ``e``.

Which T: the correction is tuned for one target T (``timesteps``). The corrected SNN is still
one network with T-independent settings (the membrane shift's ``V_th / 2`` initial potential
plus a constant current), so the one-pass accuracy-vs-T curve stays valid at every T; but
the current corrects the error *at the target T*. At longer T the uncorrected SNN's error
shrinks by itself, so there the added current is a small systematic bias of its own (about
``e`` per step, i.e. the rate is off by about ``e / V_th`` of the maximum rate). The study in
``docs/LOW_LATENCY.md`` measures both sides.

Under ``torch.distributed`` every rank passes its share of the calibration images; the
per-channel sums and counts are all-reduced with SUM, so every rank applies the same currents,
equal to one process's over the union.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import fx, nn

from lightning_snn.conversion import OUTPUT_KEY
from lightning_snn.graph import activation_sites, prepare, record_sites
from lightning_snn.neurons import IFNeuron
from lightning_snn.simulation import checked_time_chunk, rows_as_asked, simulate_checked, validate_timesteps

#: Post-conversion corrections the evaluation knows (``snn.correction`` in a config).
CORRECTIONS = ("none", "light")


def _inputs(batch) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _check_reiterable(batches: Iterable, passes: str) -> None:
    if isinstance(batches, Iterator):
        raise ValueError(
            f"the correction reads the calibration batches {passes}: pass a list or a DataLoader, "
            "not a generator or iterator."
        )


def _all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    if dist.is_available() and dist.is_initialized():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def _channel_sum(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, ...]`` -> per-channel sum ``[C]`` (float64) over the batch and all positions."""
    return x.transpose(0, 1).reshape(x.shape[1], -1).sum(1, dtype=torch.float64)


def spiking_sites(snn: nn.Module) -> dict[str, IFNeuron]:
    """The SNN's IF neurons by site name (the spiking readout's output neuron left out)."""
    return {m.name: m for m in snn.modules() if isinstance(m, IFNeuron) and m.name != OUTPUT_KEY}


@torch.no_grad()
def ann_channel_means(
    ann: nn.Module, batches: Iterable, device: torch.device | str | None = None
) -> dict[str, torch.Tensor]:
    """``{site: [C] mean activation}`` of the ANN (prepared copy, eval mode) over images and positions."""
    gm = prepare(ann)
    return graph_channel_means(gm, batches, device if device is not None else next(ann.parameters()).device)


@torch.no_grad()
def graph_channel_means(gm: fx.GraphModule, batches: Iterable, device: torch.device | str) -> dict[str, torch.Tensor]:
    """:func:`ann_channel_means` of the ANN's prepared graph (moved to ``device``, otherwise not modified)."""
    gm = gm.to(device)
    sites = activation_sites(gm)
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(len(sites), dtype=torch.float64, device=device)

    index = {name: i for i, name in enumerate(sites)}

    def observe(name: str, out: torch.Tensor) -> None:
        s = _channel_sum(out)
        sums[name] = s if name not in sums else sums[name] + s
        counts[index[name]] += out.numel() / out.shape[1]

    with record_sites(sites, observe):
        for batch in batches:
            gm(_inputs(batch).to(device))
    if not sums:
        raise ValueError("the calibration set is empty: pass at least one batch.")
    ordered = [sums[n] for n in sites]
    _all_reduce_sum([*ordered, counts])
    return {n: s / c for n, s, c in zip(sites, ordered, counts.tolist(), strict=True)}


class _RateRecorder:
    """A forward hook on an IF neuron: per channel, the sum over images and positions of its
    output (spikes x ``V_th``) over the first T steps, for each requested T, across batches."""

    def __init__(self, neuron: IFNeuron, timesteps: list[int]) -> None:
        self.ts = timesteps
        self.sums: torch.Tensor | None = None  # [len(ts), C]
        self.positions = 0.0  # images x positions per channel, summed over batches
        self.handle = neuron.register_forward_hook(self)
        self.start_batch()

    def start_batch(self) -> None:
        self.t_done, self.running = 0, None

    def __call__(self, module: IFNeuron, _inputs, out: torch.Tensor) -> None:
        steps, batch = module.steps, out.shape[0] // module.steps
        per_step = out.view(steps, batch, out.shape[1], -1).sum((1, 3), dtype=torch.float64)  # [steps, C]
        cumulative = per_step.cumsum(0) if self.running is None else per_step.cumsum(0) + self.running
        if self.sums is None:
            self.sums = torch.zeros(len(self.ts), out.shape[1], dtype=torch.float64, device=out.device)
        for i, t in enumerate(self.ts):
            if self.t_done < t <= self.t_done + steps:
                self.sums[i] += cumulative[t - self.t_done - 1]
        if self.t_done == 0:
            self.positions += out[0].numel() / out.shape[1] * batch
        self.running = cumulative[-1]
        self.t_done += steps

    def remove(self) -> None:
        self.handle.remove()


@torch.no_grad()
def snn_channel_means(
    snn: nn.Module,
    batches: Iterable,
    timesteps: Sequence[int],
    sites: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    time_chunk: int | str = "auto",
) -> dict[str, torch.Tensor]:
    """``{site: [len(T), C]}``: each IF site's mean output rate x ``V_th`` per channel over the
    images and positions, at every T (rows in the order of ``timesteps``), from one simulation
    per batch to ``max(T)``.

    Args:
        snn: from :func:`lightning_snn.conversion.convert`.
        batches: inputs or ``(inputs, targets)`` tuples.
        timesteps: the simulation lengths T.
        sites: the sites to record (default: all IF sites).
        device: where to run (default: the SNN's device).
        time_chunk: as :func:`lightning_snn.simulation.simulate`.
    """
    ts = validate_timesteps(timesteps)
    means = _snn_means(snn, batches, ts, sites, device, checked_time_chunk(time_chunk))
    rows = rows_as_asked(timesteps, ts)  # one row per T as asked, as simulate() returns them
    return means if rows is None else {n: m[rows.to(m.device)] for n, m in means.items()}


def _snn_means(snn, batches, ts: list[int], sites, device, time_chunk) -> dict[str, torch.Tensor]:
    """:func:`snn_channel_means` at the checked, sorted ``ts`` (rows in that order)."""
    neurons = spiking_sites(snn)
    names = list(neurons) if sites is None else list(sites)
    unknown = [n for n in names if n not in neurons]
    if unknown:
        raise ValueError(f"no IF neuron for site(s) {unknown} in this SNN; its sites are {list(neurons)}.")
    if device is None:
        device = next(iter(snn.buffers())).device
    recorders = {n: _RateRecorder(neurons[n], ts) for n in names}
    try:
        for batch in batches:
            for r in recorders.values():
                r.start_batch()
            simulate_checked(snn, _inputs(batch).to(device), ts, time_chunk)
    finally:
        for r in recorders.values():
            r.remove()
    if any(r.sums is None for r in recorders.values()):
        raise ValueError("the calibration set is empty: pass at least one batch.")
    sums = [recorders[n].sums for n in names]
    positions = torch.tensor([recorders[n].positions for n in names], dtype=torch.float64, device=device)
    _all_reduce_sum([*sums, positions])
    t = torch.tensor(ts, dtype=torch.float64, device=device).unsqueeze(1)
    return {n: s / (t * p) for n, s, p in zip(names, sums, positions.tolist(), strict=True)}


@torch.no_grad()
def channel_errors(
    ann: nn.Module,
    snn: nn.Module,
    batches: Iterable,
    timesteps: Sequence[int],
    device: torch.device | str | None = None,
    time_chunk: int | str = "auto",
) -> dict[str, torch.Tensor]:
    """``{site: [len(T), C]}``: per channel, mean ANN activation - mean SNN rate x ``V_th`` at every T
    (the error :func:`correct_bias` cancels at its target T). ``batches`` is read twice."""
    _check_reiterable(batches, "twice")
    ann_means = ann_channel_means(ann, batches, device)
    snn_means = snn_channel_means(snn, batches, timesteps, device=device, time_chunk=time_chunk)
    missing = [n for n in snn_means if n not in ann_means]
    if missing:
        raise ValueError(f"the SNN's sites {missing} are not activation sites of this ANN: convert this ANN.")
    return {n: ann_means[n].unsqueeze(0) - m for n, m in snn_means.items()}


@torch.no_grad()
def correct_bias(
    ann: nn.Module,
    snn: nn.Module,
    batches: Iterable,
    timesteps: int,
    device: torch.device | str | None = None,
    time_chunk: int | str = "auto",
    iterations: int = 1,
) -> dict[str, torch.Tensor]:
    """SNN Calibration's light bias correction at target ``T = timesteps``, in place on ``snn``.

    For every IF site in execution order, simulate the SNN (already corrected up to the site
    before) for ``timesteps`` steps on ``batches`` and add, per channel, the mean error
    ``ANN activation - SNN rate x V_th`` to the neuron's per-step bias current (see the module
    docstring for why a current of ``e`` cancels a mean error ``e``). The membrane shift and
    the source activation's shift, if any, stay: the correction adds to the current that is
    there. One ANN pass and one SNN pass per site over ``batches`` (so they must be re-iterable).

    Args:
        ann: the source ANN the SNN was converted from (not modified).
        snn: from :func:`lightning_snn.conversion.convert` on ``ann``; modified in place.
        batches: calibration inputs or ``(inputs, targets)`` tuples (labels unused).
        timesteps: the target simulation length T (an int >= 1).
        device: where to run (default: the ANN's device).
        time_chunk: as :func:`lightning_snn.simulation.simulate`.
        iterations: measure-and-add rounds per site (Li et al.: 1). A current ``d`` moves only
            the neurons that are not silent (nor saturated), so one round leaves part of the
            error; each further round removes part of the rest, for one more SNN pass per site.

    Returns:
        ``{site: [C] current added}``, in execution order.
    """
    (target,) = validate_timesteps([timesteps])
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an int >= 1 (Li et al. use 1), got {iterations!r}.")
    time_chunk = checked_time_chunk(time_chunk)
    gm = prepare(ann)
    device = device if device is not None else next(ann.parameters()).device
    return correct_graph_bias(gm, snn, batches, target, device, time_chunk, iterations)


@torch.no_grad()
def correct_graph_bias(
    gm: fx.GraphModule,
    snn: nn.Module,
    batches: Iterable,
    timesteps: int,
    device: torch.device | str,
    time_chunk: int | str = "auto",
    iterations: int = 1,
) -> dict[str, torch.Tensor]:
    """:func:`correct_bias` from the source ANN's prepared graph (:func:`lightning_snn.graph.prepare`;
    moved to ``device``, otherwise not modified), with settings checked already (by
    :func:`correct_bias` or a :class:`~lightning_snn.conversion_config.ConversionConfig`):
    ``timesteps`` an int >= 1, ``time_chunk`` a positive int or ``"auto"``."""
    target = timesteps
    _check_reiterable(batches, "once per layer")
    ann_means = graph_channel_means(gm, batches, device)
    neurons = spiking_sites(snn)
    foreign = sorted(set(neurons) ^ set(ann_means))
    if foreign:
        raise ValueError(
            f"the SNN's IF sites and the ANN's activation sites differ ({foreign}): pass the ANN it was converted from."
        )
    added: dict[str, torch.Tensor] = {}
    for name in ann_means:  # execution order: each site sees the corrected sites before it
        neuron = neurons[name]
        for _ in range(iterations):
            rate = _snn_means(snn, batches, [target], [name], device, time_chunk)
            error = (ann_means[name] - rate[name][0]).to(torch.float32)
            neuron.set_bias_current(neuron.bias_current.to(error.device) + error)
            added[name] = error.cpu() if name not in added else added[name] + error.cpu()
    return added


__all__ = [
    "CORRECTIONS",
    "ann_channel_means",
    "channel_errors",
    "correct_bias",
    "correct_graph_bias",
    "graph_channel_means",
    "snn_channel_means",
    "spiking_sites",
]
