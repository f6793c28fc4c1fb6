"""Where a run writes its files (``config.yaml``, ``snn_results.json``), without ever
overwriting another run's.

A run's directory is its logger's (the W&B run's folder, or ``trainer.log_dir``), or the
trainer's ``default_root_dir`` when there is no logger. Several runs can share such a folder
(``--trainer.logger false``, a fixed logger version, ``fit`` then ``test``), so each run claims
its directory by creating a marker file in it exclusively; a run that finds the folder claimed
takes the first free ``run_<k>`` subfolder instead. Rank zero only: the other ranks write nothing.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
import weakref
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


def free_path(folder: Path, name: str) -> Path:
    """``folder / name`` if nothing is there yet, else the same name in a newly claimed subfolder
    (a second evaluation in one run, e.g. ``fit`` then ``test`` on one Trainer)."""
    path = folder / name
    return path if not path.exists() else claim_dir(folder, allow_base=False) / name


def check_writable(path: Path, setting: str) -> None:
    """Fail now, before any training, if ``path`` cannot be written later (tried, not guessed:
    ``os.access`` says yes to root on a read-only file system)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.{os.getpid()}.probe"
        with open(probe, "x"):
            pass
        probe.unlink()
    except OSError as exc:
        raise ValueError(
            f"{setting}: cannot write {str(path)!r} ({exc.strerror or exc}). Give a file name (written into the run "
            "directory) or a path in a writable folder."
        ) from exc


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
