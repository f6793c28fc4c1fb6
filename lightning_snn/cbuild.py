"""Compiling a small C file into a shared library, once per machine, and loading it with ctypes.

The fused IF update (:mod:`lightning_snn.fused`) and the event-driven layers
(:mod:`lightning_snn.sparse`) are a few dozen lines of C each. They are built with the system C
compiler (``$CC``, else cc, gcc or clang) on first use, ~1-2 s, and cached on disk
(:func:`cache_dir`) under a key of the source, the compiler, its flags and the CPU, so every later
process loads the library in about a millisecond. No Python headers, no PyTorch headers: the
kernels take raw pointers (``tensor.data_ptr()``).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

# No -ffast-math, and no contraction of a * b + c into one rounding: the eager update's arithmetic,
# operation by operation. -march=native where the compiler takes it (the cache key holds the CPU).
_CFLAGS = ("-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math", "-Wno-unknown-pragmas")
_OPTIONAL_FLAGS = (("-march=native", "-fopenmp"), ("-fopenmp",), ("-march=native",), ())


def cache_dir() -> Path:
    """Where the compiled kernel lives: ``$LIGHTNING_SNN_CACHE``, else ``~/.cache/lightning_snn``
    (``$XDG_CACHE_HOME`` honoured), else a per-user folder in the temp directory."""
    if os.environ.get("LIGHTNING_SNN_CACHE"):
        return Path(os.environ["LIGHTNING_SNN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lightning_snn"


def _compiler() -> str | None:
    """``$CC`` if set (as given, so a broken ``$CC`` fails loudly), else the first of cc, gcc, clang."""
    if os.environ.get("CC"):
        return os.environ["CC"]
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_fingerprint() -> str:
    """The CPU's model and feature flags (a ``-march=native`` library is only valid on its CPU)."""
    info = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            info += "".join(line for line in f if line.startswith(("flags", "model name", "Features")))[:4000]
    except OSError:
        pass
    return info


def _compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def build_c_library(source: str, tag: str, info: dict | None = None) -> ctypes.CDLL:
    """Compile C ``source`` into a shared library (or load the one built before, by any process,
    from :func:`cache_dir`) and load it; ``tag`` names the file. Raises RuntimeError saying why not.
    ``info`` receives what it cost (seconds, cached or built, the flags)."""
    info = {} if info is None else info
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found ($CC, cc, gcc, clang)")
    key = hashlib.sha256(
        "\n".join(
            [source, cc, _compiler_version(cc), _cpu_fingerprint(), repr(_CFLAGS), repr(_OPTIONAL_FLAGS)]
        ).encode()
    ).hexdigest()[:16]
    t0 = time.perf_counter()
    folders = [cache_dir(), Path(tempfile.gettempdir()) / f"lightning_snn_{getattr(os, 'getuid', lambda: 0)()}"]
    for folder in folders:
        lib = folder / f"{tag}_{key}.so"
        if lib.is_file():  # built before, by this or another process
            with contextlib.suppress(OSError):
                handle = ctypes.CDLL(str(lib))
                info.update(seconds=time.perf_counter() - t0, cached=True, library=str(lib))
                return handle
    errors = []
    for folder in folders:  # the cache folder, else (not writable) the temp folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            src = folder / f".{tag}_{key}.{os.getpid()}.{threading.get_ident()}.c"
            src.write_text(source)
        except OSError as exc:
            errors.append(f"{folder}: {exc}")
            continue
        lib = folder / f"{tag}_{key}.so"
        for extra in _OPTIONAL_FLAGS:  # the fastest flags this compiler accepts
            tmp = folder / f".{tag}_{key}.{os.getpid()}.{threading.get_ident()}.so"
            cmd = [cc, *_CFLAGS, *extra, str(src), "-o", str(tmp)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{' '.join(cmd)}: {exc}")
                continue
            if proc.returncode != 0:
                errors.append(
                    f"{' '.join(cmd)}: {(proc.stderr or proc.stdout).strip()[-500:] or 'exit ' + str(proc.returncode)}"
                )
                continue
            os.replace(tmp, lib)  # atomic: processes building at once each publish a whole library
            try:
                handle = ctypes.CDLL(str(lib))
            except OSError as exc:
                errors.append(f"loading {lib}: {exc}")
                continue
            with contextlib.suppress(OSError):
                src.unlink()
            info.update(seconds=time.perf_counter() - t0, cached=False, library=str(lib), flags=[*_CFLAGS, *extra])
            return handle
    raise RuntimeError("the C kernel did not build: " + " | ".join(errors[-3:]))
