"""Calibrate -> convert -> evaluate across T, as one plain function with a typed result.

:func:`evaluate_conversion` is what the conversion callback, the benchmarks and API users call:
it takes any iterables of batches (a DataLoader, a list of tensors) and returns a
:class:`ConversionReport` with the ANN's and the SNN's accuracy on the same images, one entry per
T. Under an initialised ``torch.distributed`` process group every rank passes its own share of
the images: thresholds are all-reduced with MAX (:func:`~lightning_snn.calibration.calibrate_thresholds`)
and the correct-prediction counts with SUM, so every rank returns the numbers of one process
over all the images. Plain PyTorch: no Trainer needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from lightning_snn.calibration import calibrate_graph
from lightning_snn.conversion import OUTPUT_KEY
from lightning_snn.conversion_config import ConversionConfig, validate_correction, validate_time_chunk  # noqa: F401 (re-exported)
from lightning_snn.correction import correct_graph_bias
from lightning_snn.diagnostics import Diagnostics, DiagnosticsProbe, EnergyModel
from lightning_snn.recurrent_conversion import is_recurrent
from lightning_snn.results import RESULTS_SCHEMA_VERSION, SCHEMA_KEY
from lightning_snn.simulation import SpikingEvaluator
from lightning_snn.snn import ConvertedSNN
from lightning_snn.t_average import TAverage


@dataclass
class ConversionReport:
    """What one conversion measured. Accuracies are percentages of ``num_test_images``.

    Attributes:
        timesteps: the simulation lengths T, sorted.
        ann_acc: the source ANN's accuracy on the test images.
        snn_acc: ``{T: SNN accuracy}``.
        conversion_loss: ``{T: ann_acc - snn_acc}`` in percentage points.
        ann_correct, snn_correct: the exact counts behind the accuracies.
        thresholds: ``{layer: V_th}`` (without the output's maximum).
        output_threshold: the maximum logit (the spiking readout's threshold), if calibrated.
        num_test_images, calibration_images: images seen, summed over ranks.
        seconds: wall time of ``calibration``, ``conversion`` and ``simulation`` (which includes
            the ANN's forward pass on the same images).
        shift, readout, time_chunk: the conversion settings.
        threshold_clip_on: whether the source ANN's threshold ReLUs were clipping (``None``: it
            has none); ``False`` means the ANN was a plain-ReLU network.
        calibration, percentile: the threshold calibration method (and its percentile).
        correction, correction_timesteps: the post-conversion correction and its target T.
        neuron: ``"if"`` or ``"signed"`` (:func:`~lightning_snn.conversion.convert`).
        diagnostics: firing rates, synaptic operations, energy and per-layer errors at every T
            (:class:`~lightning_snn.diagnostics.Diagnostics`), if requested.
        shift_scale, shift_fraction: the shift's size (:func:`~lightning_snn.conversion.convert`).
        average: the accuracy averaged over every T of a range (:class:`~lightning_snn.t_average.TAverage`),
            if requested.
        snns: the simulated :class:`~lightning_snn.snn.ConvertedSNN` (s), e.g. to export one.
    """

    timesteps: list[int]
    ann_acc: float
    snn_acc: dict[int, float]
    conversion_loss: dict[int, float]
    ann_correct: int
    snn_correct: dict[int, int]
    thresholds: dict[str, Any]
    output_threshold: Any
    num_test_images: int
    calibration_images: int
    seconds: dict[str, float] = field(default_factory=dict)
    shift: str = "membrane"
    readout: str = "analog"
    time_chunk: int | str = "auto"
    threshold_clip_on: bool | None = None
    calibration: str = "max"
    percentile: float | None = None
    correction: str = "none"
    correction_timesteps: int | None = None
    neuron: str = "if"
    diagnostics: Diagnostics | None = None
    shift_scale: float = 1.0
    shift_fraction: float | None = None
    average: TAverage | None = None
    #: the converted SNNs that were simulated (one, or one per T in bias mode); not in the JSON
    snns: list[ConvertedSNN] = field(default_factory=list, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (T keys as strings, accuracies rounded to 1e-6): the keys of
        ``snn_results.json``."""
        data = {
            SCHEMA_KEY: RESULTS_SCHEMA_VERSION,  # read back through lightning_snn.results.check_results
            "shift": self.shift,
            "readout": self.readout,
            "time_chunk": self.time_chunk,
            "threshold_clip_on": self.threshold_clip_on,
            "calibration": self.calibration,
            "percentile": self.percentile,
            "correction": self.correction,
            "correction_timesteps": self.correction_timesteps,
            "neuron": self.neuron,
            "shift_scale": self.shift_scale,
            "shift_fraction": self.shift_fraction,
            "num_test_images": self.num_test_images,
            "calibration_images": self.calibration_images,
            "ann_acc": round(self.ann_acc, 6),
            "ann_correct": self.ann_correct,
            "snn_acc": {str(t): round(a, 6) for t, a in self.snn_acc.items()},
            "snn_correct": {str(t): c for t, c in self.snn_correct.items()},
            "conversion_loss": {str(t): round(v, 6) for t, v in self.conversion_loss.items()},
            "thresholds": {k: _jsonable(v) for k, v in self.thresholds.items()},
            "output_threshold": _jsonable(self.output_threshold),
            "seconds": dict(self.seconds),
        }
        if self.average is not None:
            data["average_over"] = self.average.to_json()
        if self.diagnostics is not None:  # firing_rates, synaptic_ops, energy, layer_errors
            data.update(self.diagnostics.to_json())
        return data

    def table(self) -> str:
        """The accuracy-vs-T table as text, for logs and terminals."""
        lines = [f"  ANN accuracy: {self.ann_acc:.2f}%", "      T   SNN acc   conversion loss"]
        for t in self.timesteps:
            lines.append(f"  {t:5d}   {self.snn_acc[t]:6.2f}%   {self.conversion_loss[t]:+6.2f} pts")
        if self.average is not None:
            lines.append(self.average.table_line())
        if self.diagnostics is not None:
            lines.append(self.diagnostics.table())
        return "\n".join(lines)


def validate_conversion_settings(
    timesteps: Sequence[int],
    shift: str,
    readout: str,
    time_chunk: Any,
    calibration: str = "max",
    percentile: float = 99.99,
    correction: str = "none",
    correction_timesteps: int | None = None,
    neuron: str = "if",
    shift_scale: float = 1.0,
    shift_fraction: float | None = None,
    average_over: Sequence[int] | None = None,
) -> list[int]:
    """Check the settings of :func:`evaluate_conversion` before any work; returns the sorted T list.
    (Build a :class:`~lightning_snn.conversion_config.ConversionConfig` to keep them, checked.)"""
    config = ConversionConfig(
        timesteps, shift, readout, time_chunk, calibration, percentile, correction, correction_timesteps, neuron,
        shift_scale, shift_fraction, average_over,
    )  # fmt: skip
    return list(config.timesteps)


def threshold_clip_state(model: nn.Module) -> bool | None:
    """Whether the model's threshold ReLUs clip (``None`` if it has no warm-up switch)."""
    flags = [
        bool(m.threshold_enabled)
        for m in model.modules()
        if isinstance(getattr(m, "threshold_enabled", None), torch.Tensor)
    ]
    return all(flags) if flags else None


@torch.no_grad()
def evaluate_conversion(
    model: nn.Module,
    calibration_batches: Iterable,
    test_batches: Iterable,
    timesteps: Sequence[int],
    *,
    shift: str = "membrane",
    readout: str = "analog",
    time_chunk: int | str = "auto",
    device: torch.device | str | None = None,
    calibration: str = "max",
    percentile: float = 99.99,
    correction: str = "none",
    correction_timesteps: int | None = None,
    diagnostics: bool = False,
    energy: EnergyModel | None = None,
    neuron: str = "if",
    output_loops: Sequence[int] | None = None,
    shift_scale: float = 1.0,
    shift_fraction: float | None = None,
    average_over: Sequence[int] | None = None,
) -> ConversionReport:
    """Calibrate thresholds on ``calibration_batches``, convert, and measure ANN and SNN accuracy
    on ``test_batches`` at every T.

    Args:
        model: the source ANN (its train/eval mode is restored afterwards; it is not modified).
        calibration_batches: inputs or ``(inputs, targets)`` tuples for the thresholds.
        test_batches: ``(inputs, targets)`` tuples.
        timesteps: the simulation lengths T to report.
        shift: ``"membrane"``, ``"bias"`` or ``"none"`` (see :func:`lightning_snn.conversion.convert`).
        readout: ``"analog"`` or ``"spiking"``.
        time_chunk: steps folded into one forward pass, or ``"auto"``.
        device: where to run (default: the model's device).
        calibration: ``"max"``, ``"percentile"``, ``"channel"`` or ``"lambda"``
            (:func:`~lightning_snn.calibration.calibrate_thresholds`); ``percentile`` is its ``p``.
        correction: ``"none"`` or ``"light"``: after conversion, shift every IF layer's bias current
            so that its mean output per channel at ``correction_timesteps`` matches the ANN's on the
            calibration images (:func:`~lightning_snn.correction.correct_bias`). Percentile
            calibration and the correction read ``calibration_batches`` more than once, so pass a
            re-iterable (a list, a DataLoader).
        diagnostics: also measure firing rates, synaptic operations, energy and per-layer errors
            at every T, from the same simulation (:class:`~lightning_snn.diagnostics.DiagnosticsProbe`).
        energy: the energy constants of the diagnostics (default 0.9 pJ per AC, 4.6 pJ per MAC).
        neuron: ``"if"`` (the paper's IF neuron) or ``"signed"`` (it also fires negative spikes
            to take back early ones: fewer errors at short T; a negative spike is a synaptic
            event like a positive one). See :func:`~lightning_snn.conversion.convert`.
        output_loops: recurrent models only: the loop counts of the spiking output layer.
        shift_scale: multiplies the membrane or bias shift (0 = none, 1 = the paper's).
        shift_fraction: the constant shift per step, in units of ``V_th`` (``shift="constant"``;
            default 1/1600, the paper's Tables 2-3).
        average_over: ``[first, last]``: also the mean and standard deviation of the SNN's
            accuracy over every T from ``first`` to ``last`` (within the simulation, so
            ``last <= max(timesteps)``), read from the same simulation (not with ``shift="bias"``).

    A recurrent model (:func:`~lightning_snn.recurrent_conversion.is_recurrent`) goes to
    :func:`~lightning_snn.recurrent_evaluation.evaluate_recurrent_config` with the same settings object
    (``timesteps`` are then steps per word), which refuses by name the recurrent models and the settings it
    does not know.

    Returns:
        A :class:`ConversionReport`; under ``torch.distributed`` the same on every rank.
    """
    config = ConversionConfig(
        timesteps, shift=shift, readout=readout, time_chunk=time_chunk, calibration=calibration,
        percentile=percentile, correction=correction, correction_timesteps=correction_timesteps, neuron=neuron,
        shift_scale=shift_scale, shift_fraction=shift_fraction, average_over=average_over, diagnostics=diagnostics,
        energy=energy, output_loops=output_loops,
    )  # fmt: skip
    return evaluate_config(model, calibration_batches, test_batches, config, device=device)


@torch.no_grad()
def evaluate_config(
    model: nn.Module,
    calibration_batches: Iterable,
    test_batches: Iterable,
    config: ConversionConfig,
    *,
    device: torch.device | str | None = None,
) -> ConversionReport:
    """:func:`evaluate_conversion` with its settings in a :class:`~lightning_snn.conversion_config.ConversionConfig`,
    checked when it was built and not again: the model is prepared once
    (:meth:`~lightning_snn.conversion_config.ConversionConfig.check_model`) and that graph is
    calibrated, converted (every T of the bias shift), corrected and read by the diagnostics. A
    recurrent model goes to :func:`~lightning_snn.recurrent_evaluation.evaluate_recurrent_config`."""
    c = config
    if is_recurrent(model):  # appendix A.4: its own converter, the same settings object and report
        from lightning_snn.recurrent_evaluation import evaluate_recurrent_config  # it imports this module

        return evaluate_recurrent_config(model, calibration_batches, test_batches, c, device=device)
    ts, read_ts = list(c.timesteps), list(c.read_timesteps)  # the report's T and every T of the average
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        t0 = time.perf_counter()
        if isinstance(calibration_batches, Iterator) and (c.calibration == "percentile" or c.correction != "none"):
            raise ValueError(
                f"calibration {c.calibration!r} with correction {c.correction!r} reads the calibration batches more "
                "than once: pass a list or a DataLoader, not a generator or iterator."
            )
        graph = c.check_model(model)  # the one prepared graph of this conversion: every step below reads it
        batches = Counted(calibration_batches)
        thresholds = calibrate_graph(graph, batches, device, method=c.calibration, percentile=c.percentile)
        t_calibration = time.perf_counter() - t0

        t0 = time.perf_counter()
        param = next(model.parameters(), None)
        home = param.device if param is not None else "cpu"  # where convert() puts the SNN: the model's device
        evaluator = SpikingEvaluator.from_config(graph, thresholds, c, home, read_ts)
        t_conversion = time.perf_counter() - t0
        t0 = time.perf_counter()
        if c.correction == "light":
            correct_graph_bias(graph, evaluator.snns[0], batches, c.correction_timesteps, device, c.time_chunk)
        t_correction = time.perf_counter() - t0

        t0 = time.perf_counter()
        # [ANN correct, SNN correct at each T, images], summed over ranks at the end
        counts = torch.zeros(len(read_ts) + 2, dtype=torch.long, device=device)
        probe = DiagnosticsProbe.from_config(evaluator.snns, graph, c) if c.diagnostics else None
        diag = probe.empty(device) if probe is not None else None
        for batch in test_batches:
            x, y = batch[0].to(device), batch[1].to(device)
            counts[0] += (model(x).argmax(-1) == y).sum()
            if probe is None:
                snn_out = evaluator(x)
            else:  # the same simulation, read at every T
                snn_out, batch_diag = probe(x)
                diag.merge(batch_diag)
            counts[1:-1] += (snn_out.argmax(-1) == y.unsqueeze(0)).sum(-1)
            counts[-1] += y.numel()
        t_simulation = time.perf_counter() - t0
    finally:
        model.train(was_training)

    seen, total = sum_over_ranks(counts, batches.count, diag, "(inputs, targets)")
    correct = counts[:-1].tolist()
    ann = 100.0 * correct[0] / total
    read = dict(zip(read_ts, correct[1:], strict=True))
    snn = {t: 100.0 * read[t] / total for t in ts}
    return ConversionReport(
        timesteps=ts,
        ann_acc=ann,
        snn_acc=snn,
        conversion_loss={t: ann - a for t, a in snn.items()},
        ann_correct=correct[0],
        snn_correct={t: read[t] for t in ts},
        thresholds={k: v for k, v in thresholds.items() if k != OUTPUT_KEY},
        output_threshold=thresholds.get(OUTPUT_KEY),
        num_test_images=total,
        calibration_images=seen,
        seconds={
            "calibration": t_calibration,
            "conversion": t_conversion,
            "correction": t_correction,
            "simulation": t_simulation,
        },
        shift=c.shift,
        readout=c.readout,
        time_chunk=c.time_chunk,
        threshold_clip_on=threshold_clip_state(model),
        calibration=c.calibration,
        percentile=c.percentile if c.calibration == "percentile" else None,
        correction=c.correction,
        correction_timesteps=c.correction_timesteps if c.correction != "none" else None,
        neuron=c.neuron,
        diagnostics=diag,
        shift_scale=c.shift_scale,
        shift_fraction=c.constant_shift,
        average=TAverage.from_counts(c.average_over, read, total, ann) if c.average_over is not None else None,
        snns=evaluator.snns,
    )


def _images_in(batch: Any) -> int:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(x.shape[0])


class Counted:
    """An iterable of batches that counts the samples of one pass (re-iterable if ``batches`` is);
    ``size(batch)`` says how many a batch holds (default: the inputs' first dimension)."""

    def __init__(self, batches: Iterable, size: Callable[[Any], int] = _images_in) -> None:
        self.batches, self.size, self.count = batches, size, 0

    def __iter__(self) -> Iterator:
        self.count = 0  # every pass sees the same samples
        for batch in self.batches:
            self.count += self.size(batch)
            yield batch


def sum_over_ranks(counts: torch.Tensor, calibration_samples: int, probe=None, empty: str = "") -> tuple[int, int]:
    """Sum the per-rank prediction ``counts`` in place over ``torch.distributed`` ranks (nothing to do
    in one process), and the ``probe``'s sums if one recorded diagnostics; return the calibration
    samples seen by all ranks together and the test samples (``counts[-1]``). No test sample is a
    ValueError saying ``empty`` (what to pass)."""
    seen = torch.tensor([calibration_samples], dtype=torch.long, device=counts.device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        dist.all_reduce(seen, op=dist.ReduceOp.SUM)
    if probe is not None:
        probe.all_reduce()
    total = int(counts[-1])
    if total == 0:
        raise ValueError(f"the test set is empty: pass at least one {empty} batch.")
    return int(seen.item()), total


def _jsonable(value: Any) -> Any:
    """Thresholds may be floats or (per-channel) tensors: JSON gets numbers or lists."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
