"""One frozen, self-validating object for the settings of a conversion.

A :class:`ConversionConfig` is built once, where the settings come in (the conversion callback's
``snn.*``, :func:`lightning_snn.evaluation.evaluate_conversion`'s arguments, or by an API user),
checks every setting in ``__post_init__`` with the errors of the checks below (what is allowed,
what to do), and is then passed down as is: calibration, conversion, the simulation, the
correction and the diagnostics read it and check nothing again. With
:meth:`ConversionConfig.check_model` the model is prepared (:func:`lightning_snn.graph.prepare`:
deep copy, trace, batch norm folded) once per conversion, and that graph is shared by every step.
Plain Python; settings that depend on the model are checked against it there, not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import fx, nn

from lightning_snn.calibration import check_calibration
from lightning_snn.conversion import READOUTS, refuse_negative_spikes_into_pools
from lightning_snn.correction import CORRECTIONS
from lightning_snn.diagnostic_results import EnergyModel
from lightning_snn.graph import max_pool_sites, prepare
from lightning_snn.layer_statistics import LayerStatistic, statistic_classes
from lightning_snn.neurons import IFNeuron, neuron_class
from lightning_snn.shift import PAPER_CONSTANT_SHIFT, check_shift
from lightning_snn.simulation import validate_timesteps
from lightning_snn.t_average import read_timesteps, validate_average_over


def validate_time_chunk(time_chunk: Any) -> int | str:
    """``time_chunk`` as a positive int or ``"auto"``, or an error that says what is allowed."""
    if isinstance(time_chunk, str):
        if time_chunk == "auto":
            return time_chunk
        if time_chunk.strip().isdigit():
            time_chunk = int(time_chunk)
        else:
            raise ValueError(f"time_chunk must be a positive int or 'auto', got {time_chunk!r}.")
    if isinstance(time_chunk, bool) or not isinstance(time_chunk, int):
        raise TypeError(f"time_chunk must be a positive int or 'auto', got {type(time_chunk).__name__} {time_chunk!r}.")
    if time_chunk <= 0:
        raise ValueError(f"time_chunk must be a positive int or 'auto', got {time_chunk}.")
    return time_chunk


def validate_output_loops(loops: Sequence[int] | int | None) -> list[int] | None:
    """Sorted distinct loop counts (each an int >= 1), or None; an error that says what is allowed."""
    if loops is None:
        return None
    if isinstance(loops, int) and not isinstance(loops, bool):
        loops = [loops]
    if isinstance(loops, (str, bytes)) or not isinstance(loops, Sequence) or not loops:
        raise ValueError(f"output_loops must be a non-empty list of ints >= 1, e.g. [1, 4, 16], got {loops!r}.")
    for value in loops:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"output_loops must be ints >= 1 (replays of the output layer's input), got {value!r}.")
    return sorted(set(loops))


def validate_correction(correction: str, correction_timesteps: int | None, shift: str) -> None:
    """Refuse an unknown correction, a missing or bad target T, or a correction with the bias shift."""
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; choose one of {list(CORRECTIONS)}.")
    if correction == "none":
        return
    t = correction_timesteps
    if t is None or isinstance(t, bool) or not isinstance(t, int) or t <= 0:
        raise ValueError(
            f"correction {correction!r} is tuned for one simulation length: set correction_timesteps to that "
            f"target T (a positive int, e.g. 4), got {t!r}."
        )
    if shift == "bias":
        raise ValueError(
            "correction 'light' needs one SNN for every T (shift 'membrane' or 'none'); shift 'bias' builds one "
            "SNN per T. Use shift: membrane."
        )


@dataclass(frozen=True)
class ConversionConfig:
    """The settings of one conversion, checked once when it is built (ValueError/TypeError saying
    what to do), frozen afterwards.

    Attributes:
        timesteps: the simulation lengths T to report (stored sorted and de-duplicated).
        shift, shift_scale, shift_fraction: the shift of the IF neurons' charge
            (:func:`lightning_snn.conversion.convert`, :func:`lightning_snn.shift.check_shift`).
        readout: ``"analog"`` or ``"spiking"``.
        neuron: a registered neuron model or its import path; :attr:`neuron_type` is its class.
        time_chunk: steps folded into one forward pass (a positive int, or ``"auto"``).
        calibration, percentile: the threshold calibration method (and its ``p``).
        correction, correction_timesteps: the post-conversion correction and its target T.
        diagnostics: also measure firing rates, synaptic operations, energy and per-layer errors.
        energy: the diagnostics' energy constants (default :class:`~lightning_snn.diagnostics.EnergyModel`).
        average_over: ``[first, last]`` T of an accuracy average (stored as a checked
            ``(first, last)`` of ints), or ``None``.
        batch_size: the evaluation batch size of whoever builds the loaders (``None``: theirs).
        statistics: layer statistics the diagnostics measure besides, by name or import path
            (:mod:`lightning_snn.layer_statistics`; needs ``diagnostics``).
        output_loops: recurrent models only: the loop counts ``L`` of the spiking output layer (stored
            sorted and de-duplicated; ``None``: :data:`~lightning_snn.recurrent_evaluation.DEFAULT_OUTPUT_LOOPS`).
            A recurrent model's own refusals are :func:`~lightning_snn.recurrent_conversion.check_recurrent_config`'s.

    Derived once (not arguments): :attr:`neuron_type`, :attr:`statistic_types` and
    :attr:`read_timesteps` (every T the simulation reads: ``timesteps`` and the T of the average).
    """

    timesteps: Sequence[int]
    shift: str = "membrane"
    readout: str = "analog"
    time_chunk: int | str = "auto"
    calibration: str = "max"
    percentile: float = 99.99
    correction: str = "none"
    correction_timesteps: int | None = None
    neuron: str = "if"
    shift_scale: float = 1.0
    shift_fraction: float | None = None
    average_over: Sequence[int] | None = None
    diagnostics: bool = False
    energy: EnergyModel | None = None
    batch_size: int | None = None
    statistics: Sequence[str] = ()
    output_loops: Sequence[int] | None = None
    neuron_type: type[IFNeuron] = field(init=False, repr=False, compare=False)
    statistic_types: tuple[type[LayerStatistic], ...] = field(init=False, repr=False, compare=False)
    read_timesteps: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # the order of evaluation.validate_conversion_settings' checks: the same setting fails first
        ts = validate_timesteps(self.timesteps)
        check_shift(self.shift, self.shift_scale, self.shift_fraction)
        average = validate_average_over(self.average_over, ts, self.shift)
        if self.readout not in READOUTS:
            raise ValueError(f"unknown readout {self.readout!r}; choose one of {list(READOUTS)}.")
        time_chunk = validate_time_chunk(self.time_chunk)
        check_calibration(self.calibration, self.percentile)
        validate_correction(self.correction, self.correction_timesteps, self.shift)
        neuron_type = neuron_class(self.neuron)
        # the messages name the config keys (snn.*): the callback's settings are where most of them come from
        if not isinstance(self.diagnostics, bool):
            raise TypeError(f"snn.diagnostics must be true or false, got {self.diagnostics!r}.")
        if self.energy is not None and not isinstance(self.energy, EnergyModel):
            raise TypeError(f"energy must be a lightning_snn.diagnostics.EnergyModel or None, got {self.energy!r}.")
        b = self.batch_size
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b <= 0):
            raise ValueError(f"snn.batch_size must be a positive int or null (the default), got {b!r}.")
        statistic_types = statistic_classes(self.statistics)
        if statistic_types and not self.diagnostics:
            raise ValueError(f"snn.statistics {list(self.statistics)} are diagnostics: set snn.diagnostics: true.")
        loops = validate_output_loops(self.output_loops)
        put = object.__setattr__  # frozen: the normalised values are set once, here
        put(self, "timesteps", tuple(ts))
        put(self, "time_chunk", time_chunk)
        put(self, "average_over", average)
        put(self, "neuron_type", neuron_type)
        put(self, "statistics", tuple(self.statistics))
        put(self, "statistic_types", statistic_types)
        put(self, "output_loops", None if loops is None else tuple(loops))
        put(self, "read_timesteps", tuple(read_timesteps(ts, average)))

    @property
    def constant_shift(self) -> float | None:
        """The constant shift per step in units of ``V_th`` (the paper's 1/1600 unless set); ``None``
        for the other shift modes."""
        if self.shift != "constant":
            return self.shift_fraction
        return PAPER_CONSTANT_SHIFT if self.shift_fraction is None else self.shift_fraction

    def check_model(self, model: nn.Module) -> fx.GraphModule:
        """Prepare the feed-forward ``model`` (:func:`lightning_snn.graph.prepare`, which refuses what cannot be
        converted exactly) and refuse a neuron that emits negative spikes into a gated spiking max-pool
        and ``output_loops`` (recurrent models only), before any work. Returns the prepared graph: pass it
        on rather than preparing the model again."""
        if self.output_loops is not None:
            raise ValueError("output_loops applies to recurrent models only (their looped output layer); remove it.")
        gm = prepare(model)
        if self.neuron_type.emits_negative:
            refuse_negative_spikes_into_pools(self.neuron, max_pool_sites(gm))
        return gm


__all__ = ["ConversionConfig", "validate_correction", "validate_output_loops", "validate_time_chunk"]
