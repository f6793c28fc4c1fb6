"""The ``snn_results.json`` format: its version, where its picture goes, and reading it back.

:meth:`lightning_snn.evaluation.ConversionReport.to_json` builds the results dict and stamps it
with :data:`RESULTS_SCHEMA_VERSION`; every reader goes through :func:`check_results` (or
:func:`read_results` for a file), which tells a file of another version or shape from a broken
one, with a message instead of a ``KeyError``. Files written before the version was recorded
have the shape of version 1 and are read as such.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The version of the ``snn_results.json`` layout. Raise it whenever a key is renamed, removed or
#: changes meaning (adding a key does not break readers and needs no new version).
RESULTS_SCHEMA_VERSION = 1
SCHEMA_KEY = "schema_version"
#: Keys every results file has, with the type of their value.
CORE_KEYS = {"ann_acc": (int, float), "snn_acc": Mapping, "thresholds": Mapping}
#: The keys the diagnostics add, each ``{T: ...}`` over the T of ``snn_acc``.
DIAGNOSTIC_KEYS = ("firing_rates", "synaptic_ops", "energy", "layer_errors")


class ResultsError(ValueError):
    """A results file that is not readable as ``snn_results.json``."""


def dashboard_name(results_name: str) -> str:
    """The dashboard PNG's file name beside a results file: ``snn_results.json`` ->
    ``snn_report.png``, ``vgg_results.json`` -> ``vgg_report.png``, ``a.json`` -> ``a_report.png``."""
    stem = Path(results_name).stem
    return (stem[: -len("results")] + "report" if stem.endswith("results") else f"{stem}_report") + ".png"


def check_results(results: Any, source: str = "the results dict") -> Mapping[str, Any]:
    """``results`` if it is a results dict of this version and shape, else a :class:`ResultsError`
    that says what is wrong. The diagnostics keys are checked when present (all four or none)."""
    if not isinstance(results, Mapping):
        raise ResultsError(f"{source} is a JSON {type(results).__name__}, not the object of a snn_results.json.")
    version = results.get(SCHEMA_KEY, 1)  # files from before the version was recorded have version 1's shape
    if version != RESULTS_SCHEMA_VERSION:
        raise ResultsError(
            f"{source} has schema_version {version!r}, but this lightning-snn reads version {RESULTS_SCHEMA_VERSION}: "
            "it was written by another version of lightning-snn. Read it with that version, or convert the "
            "checkpoint again with this one (train.py test --ckpt_path ...)."
        )
    wrong = [k for k, kind in CORE_KEYS.items() if not isinstance(results.get(k), kind)]
    if wrong:
        raise ResultsError(
            f"{source} is not a snn_results.json of lightning-snn: {wrong} missing or of another type "
            f"(its keys: {sorted(results)[:12]})."
        )
    ts = set(results["snn_acc"])
    present = [k for k in DIAGNOSTIC_KEYS if k in results]
    if present:
        for key in DIAGNOSTIC_KEYS:
            value = results.get(key)
            if not isinstance(value, Mapping) or set(value) != ts:
                got = sorted(value, key=str) if isinstance(value, Mapping) else type(value).__name__
                raise ResultsError(
                    f"{source}: {key!r} should hold the T of snn_acc {sorted(ts, key=_t)}, got {got}: the file is "
                    "damaged or was edited by hand."
                )
    return results


def read_results(path: str | Path) -> Mapping[str, Any]:
    """Read and check a ``snn_results.json``, with an error that names the file for a missing,
    unreadable, truncated or foreign one."""
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ResultsError(f"{str(path)!r}: no such file (each run writes snn_results.json into its folder).") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"cannot read {str(path)!r}: {getattr(exc, 'strerror', None) or exc}.") from exc
    if not text.strip():
        raise ResultsError(
            f"{str(path)!r} is empty: a run claims its results file when it starts and writes it at the end, so that "
            "run is still going, or did not finish."
        )
    try:
        results = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"{str(path)!r} is not valid JSON ({exc.msg}: line {exc.lineno}, column {exc.colno}): truncated or "
            "damaged? A run writes its results atomically, so a complete run's file is whole."
        ) from exc
    return check_results(results, repr(str(path)))


def _t(key: Any) -> Any:
    return int(key) if str(key).isdigit() else str(key)
