"""Exporters of a converted SNN (:class:`~lightning_snn.snn.ConvertedSNN`) to other simulators' formats.

One format today, NIR (the Neuromorphic Intermediate Representation, read by sinabs, snnTorch,
Norse, Spyx, Lava, SpiNNaker2): :func:`export_nir` writes a ``.nir`` file, :func:`to_nir` builds
the ``nir.NIRGraph``, :func:`import_nir` reads a file written here back into a ConvertedSNN;
:class:`ExportConfig` holds an export's settings, checked once (:mod:`lightning_snn.export.settings`).
Exact semantics, what each node means and what each known importer changes: ``docs/EXPORT.md``.

The ``nir`` package is an optional dependency (``pip install -e ".[nir]"``); this package
imports without it and says which extra to install when an export is asked for.
"""

from __future__ import annotations

from lightning_snn.export.nir_common import POOLINGS, ExportError, require_nir
from lightning_snn.export.nir_export import check_nir_exportable, export_nir, to_nir
from lightning_snn.export.nir_import import from_nir, import_nir
from lightning_snn.export.settings import EXPORT_FORMATS, ExportConfig, check_export_settings, check_model_exportable

__all__ = [
    "EXPORT_FORMATS",
    "POOLINGS",
    "ExportConfig",
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
