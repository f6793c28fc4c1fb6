"""Where a run writes its files (``config.yaml``, ``snn_results.json``, ``snn_report.png``, any
export), without ever overwriting another run's.

A run's directory is its logger's (the W&B run's folder, or ``trainer.log_dir``), or the
trainer's ``default_root_dir`` when there is no logger. Several runs can share such a folder
(``--trainer.logger false``, a fixed logger version, ``fit`` then ``test``), so each run claims
its directory by creating a marker file in it exclusively; a run that finds the folder claimed
takes the first free ``run_<k>`` subfolder instead. Every file a run writes is claimed the same
way, before the work, through :func:`claim_files`: inside the run's directory it always finds a
free name; outside it (an absolute path, or ``..``) it is refused if the file exists. Rank zero
only: the other ranks write nothing.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

#: The marker that says which run owns a directory (its pid, host and start time).
MARKER = ".lightning_snn_run"

_CLAIMED: weakref.WeakKeyDictionary[pl.Trainer, Path] = weakref.WeakKeyDictionary()


def logger_dir(trainer: pl.Trainer) -> Path:
    """The folder the trainer's logger gives this run: the W&B run's folder, else the log dir
    (``trainer.default_root_dir`` without a logger)."""
    logger = trainer.logger
    if isinstance(logger, WandbLogger):
        return Path(logger.experiment.dir)
    # as trainer.log_dir, without its broadcast: this runs on rank zero only, and a collective
    # call on one rank would hang the others (DDP)
    if logger is not None:
        folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
        if folder:
            return Path(folder)
    return Path(trainer.default_root_dir)


def run_dir(trainer: pl.Trainer) -> Path:
    """This run's own directory, claimed on first use and the same for every later call."""
    if trainer not in _CLAIMED:
        base = logger_dir(trainer)
        try:
            _CLAIMED[trainer] = claim_dir(base)
        except OSError as exc:
            raise ValueError(
                f"cannot create the run directory {str(base)!r} ({exc.strerror or exc}): point "
                "--trainer.default_root_dir (or the logger's save_dir) at a writable folder."
            ) from exc
    return _CLAIMED[trainer]


def claim_dir(base: Path, allow_base: bool = True) -> Path:
    """``base`` if no other run has claimed it (and ``allow_base``), else its first unclaimed
    ``run_<k>`` subfolder."""
    for k in itertools.count(0 if allow_base else 1):
        candidate = base if k == 0 else base / f"run_{k}"
        candidate.mkdir(parents=True, exist_ok=True)
        try:
            with open(candidate / MARKER, "x") as f:  # exclusive: two runs never get the same folder
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, f)
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


def claim_files(folder: Path, names: Sequence[str | Path], setting: str) -> list[Path]:
    """Claim every file a run will write, together, before the work: the one path through which
    results, the dashboard and any export are placed, so that no run replaces another's file.

    A claim creates the file exclusively (empty) now; the writer replaces it later (atomically,
    :func:`write_json_atomic`), and :func:`release` removes claims never written (a failed run).

    Args:
        folder: the run's own directory (:func:`run_dir`).
        names: the files, relative to ``folder`` (or absolute), e.g. ``["snn_results.json",
            "snn_report.png"]``.
        setting: the setting that named them, for messages (``"snn.results_file"``).

    Returns:
        The claimed paths, in the order of ``names``. Inside ``folder`` every name is free, or they
        all move together into a newly claimed ``run_<k>`` subfolder (a second evaluation in one
        run, e.g. ``fit`` then ``test`` on one Trainer).

    Raises:
        ValueError: a name that lies outside ``folder`` (absolute, or ``..`` leading out of it) is
            taken: another run's file would be replaced; or a file cannot be created there.
    """
    folder = Path(folder)
    paths = [folder / name for name in names]
    if not all(_inside(path, folder) for path in paths):
        return _claim_all(paths, setting, refuse=True)
    for k in itertools.count():
        base = folder if k == 0 else claim_dir(folder, allow_base=False)
        try:
            return _claim_all([base / name for name in names], setting, refuse=False)
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


def _claim_all(paths: list[Path], setting: str, refuse: bool) -> list[Path]:
    """Create every path exclusively, or none of them (FileExistsError, or a ValueError if ``refuse``)."""
    created: list[Path] = []
    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            release(created)
            raise ValueError(_cannot_write(setting, path, exc)) from exc
        try:
            with open(path, "x"):
                pass
        except FileExistsError as exc:
            release(created)
            if not refuse:
                raise
            empty = " (it is empty: claimed by a run that did not finish? delete it if so)" if _empty(path) else ""
            raise ValueError(
                f"{setting} {str(path)!r} exists{empty}: another run's results would be replaced. Give a file name "
                "(written into this run's own directory) or a new path."
            ) from exc
        except OSError as exc:
            release(created)
            raise ValueError(_cannot_write(setting, path, exc)) from exc
        created.append(path)
    return created


def _cannot_write(setting: str, path: Path, exc: OSError) -> str:
    return (
        f"{setting}: cannot write {str(path)!r} ({exc.strerror or exc}). Give a file name (written into the run "
        "directory) or a path in a writable folder."
    )


def _empty(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False


def release(paths: Sequence[Path] | None) -> None:
    """Remove claimed files that were never written (still empty), e.g. after a failed run."""
    for path in paths or ():
        if _empty(path):
            path.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary file beside ``path``, then rename: never a half-written file.

    The file gets the usual permissions (0666 less the umask, e.g. 0644), so others in a shared
    cluster group can read the results.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        with open(tmp, "x") as f:  # open() honours the umask; tempfile.mkstemp would give 0600
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
