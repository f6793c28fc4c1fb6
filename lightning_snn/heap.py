"""Keep freed memory in the process (glibc), so CPU simulations stop paying page faults.

A simulation allocates the same large tensors chunk after chunk. With glibc's defaults, freed
blocks at the top of the heap are handed back to the kernel once they pass a threshold that adapts
to earlier frees, and blocks above it are ``mmap``-ed; every new block then costs minor page faults
(the kernel zeroes each fresh 4 KiB page). Which tensors pay depends on what was freed before: the
neurons' membrane potentials, which live across chunks, split the heap, so at batch 256 our engine
took ~80x the page faults of T plain ANN forwards (317k against 4k per run, ~25% of its CPU time;
``benchmarks/simulation_speed.py --heap trim``, docs/BENCHMARKS.md).

:func:`keep_freed_memory` turns the trimming off and raises the ``mmap`` threshold to 1 GiB
(``mallopt``), for the whole process: memory freed once is reused, never returned to the kernel
before exit, so the process keeps its peak size. The command line calls it at start-up
(``LIGHTNING_SNN_HEAP=trim`` keeps glibc's defaults); library users call it themselves. The
chunk rule (:mod:`lightning_snn.chunking`) reads :func:`heap_kept`: without page faults, larger
folded tensors pay off on the CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: ``mallopt`` parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MODES = ("keep", "trim")

_kept = False


def heap_mode() -> str:
    """``LIGHTNING_SNN_HEAP`` (``keep`` by default, or ``trim``); anything else is refused."""
    mode = os.environ.get("LIGHTNING_SNN_HEAP", "keep").strip().lower() or "keep"
    if mode not in MODES:
        raise ValueError(f"LIGHTNING_SNN_HEAP={mode!r}: use one of {MODES} (keep: freed memory stays in the process)")
    return mode


def keep_freed_memory() -> bool:
    """Stop glibc from returning freed memory to the kernel; True if it is kept now (on glibc,
    unless ``LIGHTNING_SNN_HEAP=trim``). Idempotent; a no-op returning False elsewhere."""
    global _kept
    if _kept:
        return True
    if heap_mode() == "trim":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to do
        return False
    _kept = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and mallopt(_M_MMAP_THRESHOLD, 2**30) == 1
    return _kept


def heap_kept() -> bool:
    """Whether :func:`keep_freed_memory` turned glibc's trimming off in this process."""
    return _kept
