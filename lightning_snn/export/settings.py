"""The settings of an export (``snn.export``, ``snn.export_timesteps``, ``snn.export_options``), checked once.

An :class:`ExportConfig` is built once where the settings come in (the conversion callback's
``__init__``, with :meth:`ExportConfig.build` against the conversion's
:class:`~lightning_snn.conversion_config.ConversionConfig`), refuses what cannot be exported before any
work, and is passed on: :meth:`ExportConfig.check_graph` checks a model's prepared graph before training
(no second preparation), and its fields are the arguments of :func:`~lightning_snn.export.export_nir`.
:func:`check_export_settings` and :func:`check_model_exportable` are the same checks from keywords and
from a model, for callers without a config.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import fx, nn

from lightning_snn.conversion import OUTPUT_KEY, convert_graph
from lightning_snn.export.nir_common import POOLINGS, ExportError, require_nir
from lightning_snn.export.nir_export import check_nir_exportable
from lightning_snn.graph import activation_sites, prepare
from lightning_snn.neurons import IFNeuron, neuron_class

if TYPE_CHECKING:
    from lightning_snn.conversion_config import ConversionConfig

#: Export formats the conversion callback knows (``snn.export``).
EXPORT_FORMATS = ("nir",)
#: The options of the NIR exporter (:func:`~lightning_snn.export.to_nir`).
EXPORT_OPTIONS = ("pooling", "integrator")


@dataclass(frozen=True)
class ExportConfig:
    """An export's settings, checked when built (ValueError/TypeError saying what to do), frozen afterwards.

    Attributes:
        format: ``"nir"`` (:data:`EXPORT_FORMATS`).
        timesteps: the simulation length T the file is for (the membrane shift becomes ``V_th / (2T)``).
        pooling, integrator: the NIR exporter's options (:func:`~lightning_snn.export.to_nir`).
    """

    format: str
    timesteps: int
    pooling: str = "avg"
    integrator: bool = True

    def __post_init__(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {self.format!r}; choose one of {list(EXPORT_FORMATS)} (or null).")
        t = self.timesteps
        if isinstance(t, bool) or not isinstance(t, int) or t <= 0:
            raise ValueError(
                f"snn.export: {self.format} needs snn.export_timesteps, the simulation length T the file is exported "
                f"for (the membrane shift becomes the bias shift V_th / (2T)), a positive int, e.g. 64; got {t!r}."
            )
        if self.pooling not in POOLINGS:
            raise ValueError(f"snn.export_options.pooling must be one of {list(POOLINGS)}, got {self.pooling!r}.")
        if not isinstance(self.integrator, bool):
            raise TypeError(f"snn.export_options.integrator must be true or false, got {self.integrator!r}.")

    @classmethod
    def build(
        cls, export: str | None, timesteps: int | None, options: dict | None, config: ConversionConfig
    ) -> ExportConfig | None:
        """The export settings checked against the conversion's ``config`` (checked already: its neuron is
        a type, not looked up again); ``None`` without an export."""
        return _build(export, timesteps, options, config.shift, config.timesteps, config.neuron, config.neuron_type)

    @property
    def options(self) -> dict[str, Any]:
        """The exporter's keyword options (:func:`~lightning_snn.export.export_nir`)."""
        return {"pooling": self.pooling, "integrator": self.integrator}

    def check_graph(self, graph: fx.GraphModule, config: ConversionConfig) -> None:
        """Refuse, before any training, a model whose SNN NIR cannot hold (named), from its prepared
        ``graph`` (:meth:`~lightning_snn.conversion_config.ConversionConfig.check_model`; not modified)."""
        _check_graph(copy.deepcopy(graph), config.shift, config.readout)


def check_export_settings(
    export: str | None,
    timesteps: int | None,
    options: dict | None = None,
    *,
    shift: str = "membrane",
    simulated: list[int] | None = None,
    neuron: str = "if",
) -> ExportConfig | None:
    """Refuse unusable export settings before any work: an unknown format, a missing or bad T (for
    ``shift: bias``, one of the ``simulated`` T: the only SNNs built), unknown options, a neuron NIR
    cannot hold, or the ``nir`` package missing. Returns the :class:`ExportConfig` (``None``: no export)."""
    return _build(export, timesteps, options, shift, simulated, neuron, None)


def check_model_exportable(model: nn.Module, shift: str = "membrane", readout: str = "analog") -> None:
    """Refuse, before any training, a model whose SNN NIR cannot hold (named): its prepared graph is
    converted with unit thresholds (no calibration) and checked (:func:`check_nir_exportable`)."""
    from lightning_snn.conversion_config import ConversionConfig  # the one check of shift and readout

    config = ConversionConfig([1], shift=shift, readout=readout)
    _check_graph(prepare(model), config.shift, config.readout)


def _build(export, timesteps, options, shift, simulated, neuron: str, neuron_type) -> ExportConfig | None:
    if export is None:
        if timesteps is not None or options:
            raise ValueError("snn.export_timesteps / snn.export_options are set, snn.export is not: add export: nir.")
        return None
    options = dict(options or {})
    settings = ExportConfig(export, timesteps, **{k: v for k, v in options.items() if k in EXPORT_OPTIONS})
    unknown = sorted(set(options) - set(EXPORT_OPTIONS))
    if unknown:
        raise ValueError(f"unknown snn.export_options {unknown}; the NIR exporter takes 'pooling' and 'integrator'.")
    if shift == "bias" and simulated is not None and timesteps not in simulated:
        raise ValueError(
            f"shift: bias builds one SNN per simulated T {list(simulated)}: snn.export_timesteps must be one of "
            f"them, got {timesteps}."
        )
    model = neuron_class(neuron) if neuron_type is None else neuron_type
    if model.emits_negative:
        raise ExportError(f"cannot export to NIR: {neuron!r} neurons fire negative spikes, which NIR's IF cannot.")
    if model is not IFNeuron:
        raise ExportError(f"cannot export to NIR: NIR's IF is the soft-reset IF neuron 'if', not {neuron!r}.")
    require_nir()
    return settings


def _check_graph(graph: fx.GraphModule, shift: str, readout: str) -> None:
    """Convert ``graph`` (in place) with unit thresholds and the IF neuron, and check the SNN for NIR."""
    unit = {name: 1.0 for name in [*activation_sites(graph), OUTPUT_KEY]}
    timesteps = 1 if shift == "bias" else None
    snn = convert_graph(
        graph, unit, shift=shift, timesteps=timesteps, readout=readout, neuron="if", neuron_type=IFNeuron
    )
    check_nir_exportable(snn)


__all__ = ["EXPORT_FORMATS", "EXPORT_OPTIONS", "ExportConfig", "check_export_settings", "check_model_exportable"]
