"""Simulating a converted SNN over time, fast and with bounded memory.

Time runs in chunks of ``time_chunk`` steps. Within a chunk every stateless layer runs
once on a time-folded ``[steps * B, ...]`` tensor and each IF neuron runs its recurrence
over the chunk; between chunks only the membrane potentials persist, so memory is bounded
by ``time_chunk``, not by T. ``time_chunk=1`` is the classic per-step loop (the whole
network once per step); larger chunks trade cache locality for fewer, larger kernels.
The first layer's current is the same at every step: it is computed once per chunk on
``[B, ...]`` and broadcast by the first neuron.

The analog readout sums the last layer's output over time; the prediction at step t is the
argmax of that sum, so one simulation to ``T_max`` yields a prediction at every T in a list
(valid at every T for the membrane and no-shift modes, which do not depend on T).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import fx, nn

from lightning_snn import sparse
from lightning_snn.chunking import auto_time_chunk, largest_state_bytes
from lightning_snn.constant_input import chunk_runner
from lightning_snn.conversion import convert_graph, stateful_modules
from lightning_snn.graph import prepare
from lightning_snn.snn import ConvertedSNN

if TYPE_CHECKING:
    from lightning_snn.conversion_config import ConversionConfig


def validate_timesteps(timesteps: Sequence[int]) -> list[int]:
    """Sorted, de-duplicated positive simulation lengths, or a ValueError that says why."""
    if isinstance(timesteps, (int, float)):
        timesteps = [timesteps]
    for t in timesteps:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or int(t) != t:
            raise ValueError(f"simulation lengths T must be whole numbers of steps, got {t!r}; e.g. [16, 32, 64].")
    ts = sorted({int(t) for t in timesteps})
    if not ts:
        raise ValueError("the list of simulation lengths T is empty; give at least one T > 0, e.g. [16, 32, 64].")
    if ts[0] <= 0:
        raise ValueError(f"simulation lengths T must be > 0, got {ts[0]}; e.g. timesteps: [16, 32, 64].")
    return ts


def resolve_time_chunk(
    time_chunk: int | str, device: torch.device, batch_size: int = 256, bytes_per_sample: int | None = None
) -> int:
    """Steps per chunk: ``time_chunk`` itself, or for ``"auto"`` the memory rule
    (:func:`lightning_snn.chunking.auto_time_chunk`) for this device, batch size and largest
    activation per sample (``bytes_per_sample``; ``None``: not known yet, 1 step)."""
    if time_chunk == "auto":
        return 1 if bytes_per_sample is None else auto_time_chunk(device, batch_size, bytes_per_sample)
    message = f"time_chunk must be a positive int or 'auto', got {time_chunk!r}."
    try:
        chunk = int(time_chunk)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if isinstance(time_chunk, bool) or chunk <= 0 or chunk != time_chunk and not isinstance(time_chunk, str):
        raise ValueError(message)
    return chunk


def checked_time_chunk(time_chunk: int | str) -> int | str:
    """``time_chunk`` as ``"auto"`` or a positive int (:func:`resolve_time_chunk`'s check), for
    :func:`simulate_checked`."""
    return time_chunk if time_chunk == "auto" else resolve_time_chunk(time_chunk, torch.device("cpu"))


def reset_snn(snn: nn.Module) -> None:
    """Clear the state of every stateful layer (membrane potentials, spike counts, max-pool counts)."""
    for n in stateful_modules(snn):
        n.reset()


@torch.no_grad()
def simulate(
    snn: nn.Module,
    x: torch.Tensor,
    timesteps: Sequence[int],
    time_chunk: int | str = "auto",
    record_spikes: bool = False,
    on_timestep: Callable[[int], None] | None = None,
    on_timestep_at: Sequence[int] | None = None,
) -> torch.Tensor:
    """Run ``snn`` on the constant input ``x`` up to ``max(timesteps)`` steps.

    Args:
        snn: from :func:`lightning_snn.conversion.convert`.
        x: one batch of analog inputs ``[B, ...]`` (presented at every step).
        timesteps: the T values at which to read the output.
        time_chunk: steps folded into one forward pass (``"auto"``: one step, then as many as the
            memory rule of :mod:`lightning_snn.chunking` gives for the activations' sizes).
        record_spikes: keep each neuron's total spike count (``neuron.spike_count``) after the
            run, e.g. to compare firing rates with ANN activations.
        on_timestep: called as ``on_timestep(T)`` right after step ``T`` for every T of the list,
            while every layer still holds its state at that step (membrane potentials ``v``):
            chunks then end at every T. What :class:`lightning_snn.diagnostics.DiagnosticsProbe`
            reads its per-T spike counts from; ``None`` (the default) changes nothing.
        on_timestep_at: the T (a subset of ``timesteps``) at which ``on_timestep`` is called;
            default every T of ``timesteps``. The outputs at the other T are read as usual,
            without ending a chunk there (e.g. every T of an average over T = 400..600).

    Returns:
        ``[len(timesteps), B, ...]``: the time-averaged output (sum of the readout over the
        first T steps, divided by T) at each requested T, row ``i`` for ``timesteps[i]``: in the
        order asked, a repeated T repeated (one simulation to the largest T gives them all).
    """
    ts = validate_timesteps(timesteps)
    rows = rows_as_asked(timesteps, ts)
    stops = ts if on_timestep_at is None else validate_timesteps(on_timestep_at)
    if not set(stops) <= set(ts):
        raise ValueError(f"on_timestep_at {sorted(set(stops) - set(ts))} are not in timesteps: read them too.")
    out = simulate_checked(
        snn, x, ts, checked_time_chunk(time_chunk), record_spikes=record_spikes, on_timestep=on_timestep, stops=stops
    )
    return out if rows is None else out[rows.to(out.device)]


@torch.no_grad()
def simulate_checked(
    snn: nn.Module,
    x: torch.Tensor,
    ts: Sequence[int],
    time_chunk: int | str = "auto",
    *,
    record_spikes: bool = False,
    on_timestep: Callable[[int], None] | None = None,
    stops: Sequence[int] | None = None,
) -> torch.Tensor:
    """:func:`simulate` with settings checked already, once for every batch (by :func:`simulate`,
    :func:`validate_timesteps`, or a :class:`~lightning_snn.conversion_config.ConversionConfig`):
    ``ts`` sorted, de-duplicated positive ints, ``time_chunk`` a positive int or ``"auto"``, ``stops``
    (``on_timestep_at``; default ``ts``) a sorted subset of ``ts``. Returns one row per T of ``ts``."""
    stops = ts if stops is None else stops
    chunk = 1 if time_chunk == "auto" else time_chunk  # "auto": one step, then the memory rule
    batch = x.shape[0]
    all_neurons = stateful_modules(snn)
    if not all_neurons:
        raise TypeError(
            f"{type(snn).__name__} has no IF neurons: simulate() runs a converted SNN. Convert the ANN first: "
            "snn = lightning_snn.conversion.convert(ann, calibrate_thresholds(ann, batches))."
        )
    for n in all_neurons:
        n.reset()
        n.batch_size = batch
        if hasattr(n, "record_spikes"):
            n.record_spikes = record_spikes
    results: list[torch.Tensor] = []
    total: torch.Tensor | None = None
    t_done, next_i, next_stop = 0, 0, 0
    try:
        run_chunk = chunk_runner(snn, x)  # the layers that see only the constant input run once, here
        while t_done < ts[-1]:
            steps = min(chunk, ts[-1] - t_done)
            if on_timestep is not None and next_stop < len(stops):
                steps = min(steps, stops[next_stop] - t_done)  # the callback reads the state at step T
            for n in all_neurons:
                n.steps = steps
            out = run_chunk()
            out = out.unsqueeze(0).expand(steps, *out.shape) if out.shape[0] == batch and steps > 1 else out
            out = out.reshape(steps, batch, *out.shape[1:])
            # read the requested T inside this chunk from a running (cumulative) sum
            cumulative = out.cumsum(0) if total is None else out.cumsum(0) + total
            while next_i < len(ts) and ts[next_i] <= t_done + steps:
                results.append(cumulative[ts[next_i] - t_done - 1] / ts[next_i])
                next_i += 1
            total = cumulative[-1]
            t_done += steps
            if time_chunk == "auto" and t_done == steps:  # after the first chunk the activations' sizes are known
                chunk = resolve_time_chunk("auto", x.device, batch, largest_state_bytes(all_neurons, batch))
            if on_timestep is not None and next_stop < len(stops) and stops[next_stop] == t_done:
                on_timestep(t_done)
                next_stop += 1
    finally:
        for n in all_neurons:
            n.free_state()  # spike counts stay for the caller
    return torch.stack(results)


def rows_as_asked(timesteps: Sequence[int] | int, ts: list[int]) -> torch.Tensor | None:
    """Indices into the sorted, de-duplicated ``ts`` that give one row per T of ``timesteps`` in the
    order asked; ``None`` if that order is ``ts`` itself."""
    asked = [int(t) for t in ([timesteps] if isinstance(timesteps, (int, float)) else timesteps)]
    return None if asked == ts else torch.tensor([ts.index(t) for t in asked])


class SpikingEvaluator:
    """Every SNN needed to read an ANN's conversion at a list of T, behind one call.

    Membrane, constant and no-shift modes need one SNN simulated once to ``T_max``; the bias
    mode (Algorithm 1 exactly) shifts the bias by ``V_th/(2T)``, so it builds one SNN per T and
    simulates each to its own T. ``shift_scale`` / ``shift_fraction``: as in
    :func:`~lightning_snn.conversion.convert`. The settings are checked here, once
    (:class:`~lightning_snn.conversion_config.ConversionConfig`); :meth:`from_config` builds it from
    a checked config and a prepared graph.
    """

    def __init__(
        self,
        model: nn.Module,
        thresholds: dict[str, float],
        timesteps: Sequence[int],
        shift: str = "membrane",
        readout: str = "analog",
        time_chunk: int | str = "auto",
        neuron: str = "if",
        shift_scale: float = 1.0,
        shift_fraction: float | None = None,
    ) -> None:
        from lightning_snn.conversion_config import ConversionConfig  # it imports this module

        config = ConversionConfig(
            timesteps, shift=shift, readout=readout, time_chunk=time_chunk, neuron=neuron,
            shift_scale=shift_scale, shift_fraction=shift_fraction,
        )  # fmt: skip
        param = next(model.parameters(), None)
        self._build(prepare(model), thresholds, config, config.timesteps, param.device if param is not None else "cpu")

    @classmethod
    def from_config(
        cls,
        graph: fx.GraphModule,
        thresholds: dict[str, float],
        config: ConversionConfig,
        device: torch.device | str,
        timesteps: Sequence[int] | None = None,
    ) -> SpikingEvaluator:
        """The evaluator of a checked ``config`` from the model's prepared ``graph``
        (:meth:`~lightning_snn.conversion_config.ConversionConfig.check_model`), which is copied, not
        modified, and not prepared again. ``timesteps``: the T to read, sorted and de-duplicated
        (default ``config.timesteps``; e.g. ``config.read_timesteps``). The SNNs go to ``device``."""
        self = cls.__new__(cls)
        self._build(graph, thresholds, config, config.timesteps if timesteps is None else timesteps, device)
        return self

    def _build(self, graph, thresholds, config: ConversionConfig, timesteps: Sequence[int], device) -> None:
        self.timesteps = list(timesteps)
        self.time_chunk = config.time_chunk
        settings = dict(
            readout=config.readout, neuron=config.neuron, neuron_type=config.neuron_type,
            shift_scale=config.shift_scale, shift_fraction=config.shift_fraction,
        )  # fmt: skip
        # one SNN per T for the bias shift; each gets its own copy of the graph (convert_graph edits it in place)
        per_t = self.timesteps if config.shift == "bias" else [None]
        #: the converted SNNs: one valid at every T, or (bias mode) one per T, each knowing its T
        self.snns: list[ConvertedSNN] = [
            convert_graph(copy.deepcopy(graph), thresholds, shift=config.shift, timesteps=t, **settings).to(device)
            for t in per_t
        ]
        for snn in self.snns:  # event-driven layers where lightning_snn.sparse's mode says so
            sparse.apply_mode(snn)

    def snn_at(self, timesteps: int) -> ConvertedSNN:
        """The SNN whose simulation of ``timesteps`` steps is the conversion at that T."""
        for snn in self.snns:
            if snn.valid_at(timesteps):
                return snn
        raise ValueError(f"no SNN for T = {timesteps}: this evaluator was built for T in {self.timesteps}.")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Time-averaged outputs ``[len(timesteps), B, ...]``, one row per T of ``self.timesteps``
        (sorted and de-duplicated)."""
        if len(self.snns) == 1 and self.snns[0].timesteps is None:
            return simulate_checked(self.snns[0], x, self.timesteps, self.time_chunk)
        return torch.cat([simulate_checked(snn, x, [snn.timesteps], self.time_chunk) for snn in self.snns])
