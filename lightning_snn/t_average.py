"""The SNN's accuracy averaged over a range of simulation lengths (the paper's Tables 2-3: T = 400..600).

One simulation to ``T_max`` gives a prediction at every T (membrane, constant or no shift), so
the accuracy at *every* T of a range costs one more argmax per T and batch, no second simulation.
:func:`validate_average_over` checks the range before any work; :func:`read_timesteps` is what
the simulation must read; :class:`TAverage` holds the result (``snn_results.json``'s
``average_over``). Plain Python; :func:`lightning_snn.evaluation.evaluate_conversion` uses it.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def validate_average_over(
    average_over: Sequence[int] | None, timesteps: Sequence[int], shift: str
) -> tuple[int, int] | None:
    """``(first, last)`` T of the range, or a ValueError/TypeError that says what to do.

    The range must lie inside the simulation (``1 <= first <= last <= max(timesteps)``: the
    simulation runs to the largest T of the list), and the shift must give every T from one
    simulation (not ``bias``, which builds one SNN per T).
    """
    if average_over is None:
        return None
    if isinstance(average_over, (str, bytes)) or not isinstance(average_over, Sequence) or len(average_over) != 2:
        raise TypeError(f"average_over must be [first T, last T], e.g. [400, 600], got {average_over!r}.")
    for t in average_over:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or int(t) != t:
            raise TypeError(f"average_over must be two whole numbers of steps, e.g. [400, 600], got {average_over!r}.")
    first, last = (int(t) for t in average_over)
    if not 1 <= first <= last:
        raise ValueError(f"average_over [{first}, {last}] must have 1 <= first <= last, e.g. [400, 600].")
    t_max = max(int(t) for t in timesteps)
    if last > t_max:
        raise ValueError(
            f"average_over [{first}, {last}] reaches beyond the simulation, which runs to the largest T of "
            f"timesteps ({t_max}): add {last} to timesteps, or end the range at {t_max} or before."
        )
    if shift == "bias":
        raise ValueError(
            f"average_over reads {last - first + 1} T from one simulation; shift 'bias' builds one SNN per T "
            "(V_th/(2T) depends on T). Use shift membrane (the same charge at every T) or constant (the paper's "
            "Tables 2-3: V_th/1600 per step)."
        )
    return first, last


def read_timesteps(timesteps: Sequence[int], average: tuple[int, int] | None) -> list[int]:
    """The T the simulation reads: ``timesteps`` and every T of the range."""
    ts = {int(t) for t in timesteps}
    if average is not None:
        ts |= set(range(average[0], average[1] + 1))
    return sorted(ts)


@dataclass
class TAverage:
    """Mean and standard deviation of the SNN's accuracy over every T of ``[first, last]``.

    Attributes:
        first, last: the range (inclusive).
        snn_correct: ``{T: correct predictions}`` at every T of the range.
        num_images: the test images behind each count.
        ann_acc: the source ANN's accuracy on the same images (for the loss).
    """

    first: int
    last: int
    snn_correct: dict[int, int]
    num_images: int
    ann_acc: float

    @classmethod
    def from_counts(
        cls, average: tuple[int, int], correct: Mapping[int, int], num_images: int, ann_acc: float
    ) -> TAverage:
        """The range's counts picked from ``{T: correct}`` of every T read."""
        first, last = average
        return cls(first, last, {t: int(correct[t]) for t in range(first, last + 1)}, num_images, ann_acc)

    @property
    def accuracies(self) -> list[float]:
        """The accuracy (%) at each T of the range, in order."""
        return [100.0 * c / self.num_images for c in self.snn_correct.values()]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        """Population standard deviation over the T of the range (every T of it is measured, none sampled)."""
        return statistics.pstdev(self.accuracies)

    @property
    def label(self) -> str:
        return f"T{self.first}_{self.last}"

    def to_json(self) -> dict[str, Any]:
        """``snn_results.json``'s ``average_over``."""
        return {
            "first": self.first,
            "last": self.last,
            "n_timesteps": len(self.snn_correct),
            "mean_acc": round(self.mean, 6),
            "std_acc": round(self.std, 6),
            "std_kind": "population standard deviation over the T of the range",
            "mean_conversion_loss": round(self.ann_acc - self.mean, 6),
            "snn_correct": {str(t): c for t, c in self.snn_correct.items()},
        }

    def table_line(self) -> str:
        return (
            f"  T = {self.first}..{self.last} ({len(self.snn_correct)} T, one simulation): SNN acc "
            f"{self.mean:.2f} +- {self.std:.2f}% (mean +- std over T), "
            f"conversion loss {self.ann_acc - self.mean:+.2f} pts"
        )

    def metrics(self) -> dict[str, float]:
        """Logger metrics, e.g. ``snn/acc_mean_T400_600``, ``snn/acc_std_T400_600``,
        ``snn/conversion_loss_mean_T400_600``."""
        return {
            f"snn/acc_mean_{self.label}": self.mean,
            f"snn/acc_std_{self.label}": self.std,
            f"snn/conversion_loss_mean_{self.label}": self.ann_acc - self.mean,
        }


__all__ = ["TAverage", "read_timesteps", "validate_average_over"]
