"""Exporters of a converted SNN (:class:`~lightning_snn.snn.ConvertedSNN`) to other simulators' formats.

One format today, NIR (the Neuromorphic Intermediate Representation, read by sinabs, snnTorch,
Norse, Spyx, Lava, SpiNNaker2): :func:`export_nir` writes a ``.nir`` file, :func:`to_nir` builds
the ``nir.NIRGraph``, :func:`import_nir` reads a file written here back into a ConvertedSNN.
Exact semantics, what each node means and what each known importer changes: ``docs/EXPORT.md``.

The ``nir`` package is an optional dependency (``pip install -e ".[nir]"``); this package
imports without it and says which extra to install when an export is asked for.
"""

from __future__ import annotations

from torch import nn

from lightning_snn.conversion import OUTPUT_KEY, activation_layers, convert
from lightning_snn.export.nir_common import POOLINGS, ExportError, require_nir
from lightning_snn.export.nir_export import check_nir_exportable, export_nir, to_nir
from lightning_snn.export.nir_import import from_nir, import_nir
from lightning_snn.neurons import IFNeuron, neuron_class

#: Export formats the conversion callback knows (``snn.export``).
EXPORT_FORMATS = ("nir",)


def check_export_settings(
    export: str | None,
    timesteps: int | None,
    options: dict | None = None,
    *,
    shift: str = "membrane",
    simulated: list[int] | None = None,
    neuron: str = "if",
) -> None:
    """Refuse unusable export settings before any work (the callback calls it in ``__init__``):
    an unknown format, a missing or bad T (for ``shift: bias``, one of the ``simulated`` T: the
    only SNNs built), unknown options, signed neurons, or the ``nir`` package missing."""
    if export is None:
        if timesteps is not None or options:
            raise ValueError("snn.export_timesteps / snn.export_options are set, snn.export is not: add export: nir.")
        return
    if export not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {export!r}; choose one of {list(EXPORT_FORMATS)} (or null).")
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps <= 0:
        raise ValueError(
            f"snn.export: {export} needs snn.export_timesteps, the simulation length T the file is exported for "
            f"(the membrane shift becomes the bias shift V_th / (2T)), a positive int, e.g. 64; got {timesteps!r}."
        )
    options = dict(options or {})
    unknown = sorted(set(options) - {"pooling", "integrator"})
    if unknown:
        raise ValueError(f"unknown snn.export_options {unknown}; the NIR exporter takes 'pooling' and 'integrator'.")
    if "pooling" in options and options["pooling"] not in POOLINGS:
        raise ValueError(f"snn.export_options.pooling must be one of {list(POOLINGS)}, got {options['pooling']!r}.")
    if "integrator" in options and not isinstance(options["integrator"], bool):
        raise TypeError(f"snn.export_options.integrator must be true or false, got {options['integrator']!r}.")
    if shift == "bias" and simulated is not None and timesteps not in simulated:
        raise ValueError(
            f"shift: bias builds one SNN per simulated T {simulated}: snn.export_timesteps must be one of them, "
            f"got {timesteps}."
        )
    model = neuron_class(neuron)
    if model.emits_negative:
        raise ExportError(f"cannot export to NIR: {neuron!r} neurons fire negative spikes, which NIR's IF cannot.")
    if model is not IFNeuron:
        raise ExportError(f"cannot export to NIR: NIR's IF is the soft-reset IF neuron 'if', not {neuron!r}.")
    require_nir()


def check_model_exportable(model: nn.Module, shift: str = "membrane", readout: str = "analog") -> None:
    """Refuse, before any training, a model whose SNN NIR cannot hold (named): it is converted
    with unit thresholds (no calibration) and its graph checked (:func:`check_nir_exportable`)."""
    sites = activation_layers(model)
    unit = {name: 1.0 for name in [*sites, OUTPUT_KEY]}
    snn = convert(model, unit, shift=shift, timesteps=1 if shift == "bias" else None, readout=readout)
    check_nir_exportable(snn)


__all__ = [
    "EXPORT_FORMATS",
    "POOLINGS",
    "ExportError",
    "check_export_settings",
    "check_model_exportable",
    "check_nir_exportable",
    "export_nir",
    "from_nir",
    "import_nir",
    "require_nir",
    "to_nir",
]
