"""Diagnostics by name: per-layer statistics read from the exact spike counts at every T.

The diagnostics (:mod:`lightning_snn.diagnostics`) recover every IF neuron's exact spike count at
each T of the list from the same simulation that gives the accuracy. A *layer statistic* is one
more number per layer and T computed from those counts: each batch adds its sum over the layer's
neurons, the sums are added over batches and ``torch.distributed`` ranks with the built-in
diagnostics, and at the end :meth:`LayerStatistic.finish` turns the total into the reported value
(by default a fraction of the layer's neurons: the sum over ``images x neurons``). They appear in
``snn_results.json`` under ``"statistics"``: ``{name: {T: {layer: value}}}``.

Two are registered here: ``silent`` (the fraction of neurons that did not fire in T steps: dead
or below threshold for the whole simulation) and ``saturated`` (the fraction that fired at every
step: a threshold calibrated too low clips them). A new one is a registered subclass in any module
(``snn.statistics: [name]``, or its import path ``package.module.Class``), and touches nothing
else (docs/EXTENDING.md)::

    @register_statistic("busy")
    class Busy(LayerStatistic):
        def read(self, counts, t, neuron):
            return (counts.abs() >= t / 2).sum()

Plain PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch

from lightning_snn.named_classes import find_class, register_class
from lightning_snn.neurons import IFNeuron

__all__ = ["STATISTICS", "LayerStatistic", "register_statistic", "statistic_classes"]


class LayerStatistic:
    """One number per layer and T, summed over images and ranks, then normalised by :meth:`finish`.

    A subclass defines :meth:`read` (and :meth:`finish` if its value is not a fraction of neurons).
    It holds no state: one instance serves every layer, batch and rank.
    """

    #: its name in the registry and in ``snn_results.json`` (set by :func:`register_statistic`)
    kind: ClassVar[str] = ""

    def read(self, counts: torch.Tensor, t: int, neuron: IFNeuron) -> torch.Tensor:
        """This batch's contribution: a 0-dim tensor summed over the batch and the layer's neurons.

        Args:
            counts: each neuron's net spike count after ``t`` steps, ``[B, *neurons]`` (the neuron
                model's own reading, :meth:`~lightning_snn.neurons.IFNeuron.spike_counts`; do not
                change it in place).
            t: the steps simulated so far (a T of the list).
            neuron: the layer's neuron (its threshold, initial membrane, bias current).
        """
        raise NotImplementedError(f"{type(self).__name__} must define read(counts, t, neuron).")

    def finish(self, total: float, images: int, neurons: int, t: int) -> float:
        """The reported value from the sum over all images: by default per neuron and image."""
        return total / max(images * neurons, 1)


#: The layer statistics by name (``snn.statistics``); :func:`register_statistic` adds more.
STATISTICS: dict[str, type[LayerStatistic]] = {}


def register_statistic(kind: str) -> Callable[[type[LayerStatistic]], type[LayerStatistic]]:
    """Class decorator: make a :class:`LayerStatistic` subclass available under ``kind``."""
    return register_class(STATISTICS, kind, LayerStatistic, "layer statistic", "register_statistic")


def statistic_classes(names: Sequence[str]) -> tuple[type[LayerStatistic], ...]:
    """The classes of ``names`` (registered names or import paths), refused by name if unknown or
    repeated."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"snn.statistics must be a list of names, got {names!r}.")
    out = []
    for name in names:
        cls = find_class(
            STATISTICS, name, LayerStatistic, "layer statistic", "lightning_snn.layer_statistics.register_statistic"
        )
        if cls in out:
            raise ValueError(f"layer statistic {name!r} is asked for twice in snn.statistics.")
        out.append(cls)
    return tuple(out)


def statistic_name(cls: type[LayerStatistic]) -> str:
    """The key of ``cls`` in ``snn_results.json``: its registered name, else its import path."""
    return cls.kind if STATISTICS.get(cls.kind) is cls else f"{cls.__module__}.{cls.__qualname__}"


@register_statistic("silent")
class Silent(LayerStatistic):
    """The fraction of neurons that fired no spike (net count 0) in T steps."""

    def read(self, counts: torch.Tensor, t: int, neuron: IFNeuron) -> torch.Tensor:
        return torch.count_nonzero(counts == 0)


@register_statistic("saturated")
class Saturated(LayerStatistic):
    """The fraction of neurons that fired at every one of the T steps (net count T)."""

    def read(self, counts: torch.Tensor, t: int, neuron: IFNeuron) -> torch.Tensor:
        return torch.count_nonzero(counts >= t)
