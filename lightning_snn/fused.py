"""The IF neuron's update over a chunk of time steps in one pass: charge, fire, soft reset, count.

The eager update (:meth:`lightning_snn.neurons.IFNeuron.forward`) makes four element-wise passes
per step over the membrane (``add_``, ``ge``, ``mul_``, ``sub_``; the signed neuron eight), each
reading and writing the whole layer. Here one kernel call per layer per chunk reads each step's
input current once, writes each step's spikes once, and keeps the membrane potential in cache
(CPU) or in registers (GPU) across the chunk's steps.

Two hand-written kernels, one semantics:

* CPU: a small C file compiled once per machine with the system C compiler (``$CC``, else
  ``cc``/``gcc``) into a shared library loaded with :mod:`ctypes` (:mod:`lightning_snn.cbuild`);
  ~1-2 s the first time, cached on disk (``$LIGHTNING_SNN_CACHE``, else ``~/.cache/lightning_snn``)
  and loaded in ~1 ms by every later process. OpenMP threads: ``torch.get_num_threads()``.
* CUDA: a Triton kernel (Triton ships with PyTorch's CUDA builds), compiled by Triton on first use
  and cached by it.

**Exact**: the kernels do the eager update's float operations in the same order
(``v + (I + bias)``, ``v >= V_th``, ``v - s * V_th`` with ``s`` in {-1, 0, 1}, no fused
multiply-add, no fast-math), so they give bit for bit the eager engine's spikes, membrane
potentials and counts; ``tests/test_fused.py`` checks that for the IF and the signed neuron.

**Fallback**: where no kernel can be built (no C compiler, no Triton, a compile error) or for a
dtype other than float32/float64, the eager update runs, and a warning says once why. The mode
(``"auto"``: fused where available; ``"on"``: fused or raise; ``"off"``: eager) is set with
:func:`set_fused_mode`, the :func:`fused_mode` context manager or ``$LIGHTNING_SNN_FUSED``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import warnings
from collections.abc import Iterator

import torch

from lightning_snn.cbuild import build_c_library

MODES = ("auto", "on", "off")
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}

# ---- the CPU kernel ------------------------------------------------------------------------------
# One function per (neuron, dtype). Arrays: I (the chunk's currents; step t at I + t * stride_t,
# stride_t = 0 for the first layer's constant current), bias and th ([F], one value per feature of a
# sample), v ([B, F], in place), out ([K, B, F]), count ([B, F], += spikes of this chunk; may be
# NULL), net and neg ([B, F], signed only). Work is split into blocks of one sample's features, so
# a block's membrane stays in L1 across the chunk's K steps.
C_SOURCE = r"""
#include <stdint.h>
#define BLK 8192

/* K steps of one block; X is the step's input current at i, TH the threshold at i (tp[i], or the
   scalar th0 of a layer with one threshold: one stream less), REC what a spike adds to the counts
   (empty when nothing is counted: the loop then keeps no per-block counter at all) */
#define IF_STEPS(T, X, TH, REC)                                                                     \
    for (int64_t t = 0; t < K; t++) {                                                               \
        const T *ip = I + t * stride_t + b * F + f0;                                                \
        T *op = out + (t * B + b) * F + f0;                                                         \
        for (int64_t i = 0; i < n; i++) {                                                           \
            T x = X;                                                                                \
            T u = vp[i] + x;                                                                        \
            int s = u >= TH;                                                                        \
            vp[i] = s ? u - TH : u;                                                                 \
            op[i] = s ? TH : (T)0;                                                                  \
            REC                                                                                     \
        }                                                                                           \
    }

/* the four (bias, counting) combinations of IF_STEPS for one threshold form */
#define IF_BLOCK(T, TH)                                                                             \
    if (count) {                                                                                    \
        int32_t cnt[BLK];                                                                           \
        for (int64_t i = 0; i < n; i++) cnt[i] = 0;                                                 \
        if (bp) { IF_STEPS(T, ip[i] + bp[i], TH, cnt[i] += s;) }                                    \
        else { IF_STEPS(T, ip[i], TH, cnt[i] += s;) }                                               \
        T *cp = count + b * F + f0;                                                                 \
        for (int64_t i = 0; i < n; i++) cp[i] += (T)cnt[i];                                         \
    } else if (bp) {                                                                                \
        IF_STEPS(T, ip[i] + bp[i], TH, )                                                            \
    } else {                                                                                        \
        IF_STEPS(T, ip[i], TH, )                                                                    \
    }

/* th_scalar: th holds one value for every feature (th[0]) instead of F values */
#define IF_KERNEL(NAME, T)                                                                          \
void NAME(const T *I, int64_t stride_t, const T *bias, const T *th, T *v, T *out, T *count,         \
          int64_t K, int64_t B, int64_t F, int nthreads, int th_scalar) {                           \
    int64_t fb = (F + BLK - 1) / BLK, nblocks = B * fb;                                             \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static) if(nthreads > 1 && K * B * F >= 65536)") \
    for (int64_t blk = 0; blk < nblocks; blk++) {                                                   \
        int64_t b = blk / fb, f0 = (blk % fb) * BLK, n = F - f0 < BLK ? F - f0 : BLK;               \
        T *vp = v + b * F + f0;                                                                     \
        const T *tp = th_scalar ? th : th + f0, *bp = bias ? bias + f0 : 0;                         \
        if (th_scalar) {                                                                            \
            const T th0 = tp[0];                                                                    \
            IF_BLOCK(T, th0)                                                                        \
        } else {                                                                                    \
            IF_BLOCK(T, tp[i])                                                                      \
        }                                                                                           \
    }                                                                                               \
}

/* signed: +1 at v >= th; -1 at v < 0 if the net count so far is positive; v -= s * th */
#define SIGNED_STEPS(T, REC)                                                                        \
    for (int64_t t = 0; t < K; t++) {                                                               \
        const T *ip = I + t * stride_t + b * F + f0;                                                \
        T *op = out + (t * B + b) * F + f0;                                                         \
        for (int64_t i = 0; i < n; i++) {                                                           \
            T x = bias ? ip[i] + bias[f0 + i] : ip[i];                                              \
            T u = vp[i] + x;                                                                        \
            T s = u >= tp[i] ? (T)1 : ((u < 0 && np[i] > 0) ? (T)-1 : (T)0);                        \
            np[i] += s;                                                                             \
            vp[i] = u - s * tp[i];                                                                  \
            op[i] = s * tp[i];                                                                      \
            ncnt[i] += s < 0;                                                                       \
            REC                                                                                     \
        }                                                                                           \
    }

#define SIGNED_KERNEL(NAME, T)                                                                      \
void NAME(const T *I, int64_t stride_t, const T *bias, const T *th, T *v, T *out, T *count,         \
          T *net, T *neg, int64_t K, int64_t B, int64_t F, int nthreads) {                          \
    int64_t fb = (F + BLK - 1) / BLK, nblocks = B * fb;                                             \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static) if(nthreads > 1 && K * B * F >= 65536)") \
    for (int64_t blk = 0; blk < nblocks; blk++) {                                                   \
        int64_t b = blk / fb, f0 = (blk % fb) * BLK, n = F - f0 < BLK ? F - f0 : BLK;               \
        T *vp = v + b * F + f0, *np = net + b * F + f0;                                             \
        const T *tp = th + f0;                                                                      \
        int32_t ncnt[BLK];                                                                          \
        for (int64_t i = 0; i < n; i++) ncnt[i] = 0;                                                \
        if (count) {                                                                                \
            int32_t cnt[BLK];                                                                       \
            for (int64_t i = 0; i < n; i++) cnt[i] = 0;                                             \
            SIGNED_STEPS(T, cnt[i] += s != 0;)                                                      \
            T *cp = count + b * F + f0;                                                             \
            for (int64_t i = 0; i < n; i++) cp[i] += (T)cnt[i];                                     \
        } else {                                                                                    \
            SIGNED_STEPS(T, )                                                                       \
        }                                                                                           \
        T *gp = neg + b * F + f0;                                                                   \
        for (int64_t i = 0; i < n; i++) gp[i] += (T)ncnt[i];                                        \
    }                                                                                               \
}

IF_KERNEL(if_f32, float)
IF_KERNEL(if_f64, double)
SIGNED_KERNEL(signed_f32, float)
SIGNED_KERNEL(signed_f64, double)
"""

_lock = threading.Lock()
_mode = os.environ.get("LIGHTNING_SNN_FUSED", "auto").strip().lower() or "auto"
_cpu_lib: ctypes.CDLL | None = None
_cpu_error: str | None = None  # why the CPU kernel is unavailable (None: not tried yet or fine)
_cuda_kernels: dict | None = None
_cuda_error: str | None = None
_warned: set[str] = set()
#: what building each kernel cost in this process: ``{"cpu": {"seconds", "cached", "library"}}``
BUILD_INFO: dict[str, dict] = {}


def set_fused_mode(mode: str) -> None:
    """``"auto"`` (fused where a kernel is available, else eager with a warning once), ``"on"``
    (fused or raise) or ``"off"`` (always the eager update)."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"fused mode must be one of {MODES}, got {mode!r}.")
    _mode = mode


def get_fused_mode() -> str:
    """The current mode (see :func:`set_fused_mode`)."""
    return _mode


@contextlib.contextmanager
def fused_mode(mode: str) -> Iterator[None]:
    """Run a block with another fused mode, e.g. ``with fused_mode("off"): simulate(...)``."""
    previous = _mode
    set_fused_mode(mode)
    try:
        yield
    finally:
        set_fused_mode(previous)


if _mode not in MODES:
    raise ValueError(f"LIGHTNING_SNN_FUSED must be one of {MODES}, got {_mode!r}.")


def _declare(lib: ctypes.CDLL) -> None:
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    for name in ("if_f32", "if_f64"):
        getattr(lib, name).argtypes = [p, i64, p, p, p, p, p, i64, i64, i64, ctypes.c_int, ctypes.c_int]
        getattr(lib, name).restype = None
    for name in ("signed_f32", "signed_f64"):
        getattr(lib, name).argtypes = [p, i64, p, p, p, p, p, p, p, i64, i64, i64, ctypes.c_int]
        getattr(lib, name).restype = None


def cpu_kernels() -> ctypes.CDLL | None:
    """The CPU kernel library (built or loaded once per process), or ``None`` if it cannot be built
    (:func:`unavailable_reason` says why)."""
    global _cpu_lib, _cpu_error
    if _cpu_lib is None and _cpu_error is None:
        with _lock:
            if _cpu_lib is None and _cpu_error is None:
                try:
                    lib = build_c_library(C_SOURCE, "if_kernels", BUILD_INFO.setdefault("cpu", {}))
                    _declare(lib)
                    _cpu_lib = lib
                except Exception as exc:  # any failure means: run eager, and say why
                    _cpu_error = f"{type(exc).__name__}: {exc}"
    return _cpu_lib


# ---- the CUDA kernel (Triton) ------------------------------------------------------------------
def _build_cuda_kernels() -> dict:
    import triton
    import triton.language as tl

    @triton.jit
    def if_kernel(CUR, stride_t, BIAS, TH, V, OUT, COUNT, NET, NEG, K, N, F,
                  HAS_BIAS: tl.constexpr, RECORD: tl.constexpr, SIGNED: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        f = offs % F
        th = tl.load(TH + f, mask=mask, other=1.0)
        v = tl.load(V + offs, mask=mask, other=0.0)
        if HAS_BIAS:
            b = tl.load(BIAS + f, mask=mask, other=0.0)
        if SIGNED:
            net = tl.load(NET + offs, mask=mask, other=0.0)
            ncnt = tl.zeros([BLOCK], dtype=tl.int32)
        cnt = tl.zeros([BLOCK], dtype=tl.int32)
        zero = tl.zeros([BLOCK], dtype=v.dtype)
        for t in range(K):
            x = tl.load(CUR + t * stride_t + offs, mask=mask, other=0.0)
            if HAS_BIAS:
                x = x + b
            u = v + x
            pos = u >= th
            if SIGNED:
                negative = (u < 0) & (net > 0) & (~pos)
                # no multiply (an FMA would round differently): the same values as v - s * th
                v = tl.where(pos, u - th, tl.where(negative, u + th, u))
                net = tl.where(pos, net + 1.0, tl.where(negative, net - 1.0, net))
                tl.store(OUT + t * N + offs, tl.where(pos, th, tl.where(negative, -th, zero)), mask=mask)
                ncnt += negative.to(tl.int32)
                cnt += (pos | negative).to(tl.int32)
            else:
                v = tl.where(pos, u - th, u)
                tl.store(OUT + t * N + offs, tl.where(pos, th, zero), mask=mask)
                cnt += pos.to(tl.int32)
        tl.store(V + offs, v, mask=mask)
        if SIGNED:
            tl.store(NET + offs, net, mask=mask)
            g = tl.load(NEG + offs, mask=mask, other=0.0)
            tl.store(NEG + offs, g + ncnt.to(v.dtype), mask=mask)
        if RECORD:
            c = tl.load(COUNT + offs, mask=mask, other=0.0)
            tl.store(COUNT + offs, c + cnt.to(v.dtype), mask=mask)

    return {"if": if_kernel, "cdiv": triton.cdiv}


def cuda_kernels() -> dict | None:
    """The Triton kernel (built once per process), or ``None`` if Triton is unavailable."""
    global _cuda_kernels, _cuda_error
    if _cuda_kernels is None and _cuda_error is None:
        with _lock:
            if _cuda_kernels is None and _cuda_error is None:
                try:
                    _cuda_kernels = _build_cuda_kernels()
                except Exception as exc:
                    _cuda_error = f"{type(exc).__name__}: {exc}"
    return _cuda_kernels


def unavailable_reason(device: torch.device | str, dtype: torch.dtype = torch.float32) -> str | None:
    """Why the fused update cannot run for this device and dtype (``None``: it can); builds the
    kernel if it was not built yet."""
    device = torch.device(device)
    if dtype not in _DTYPES:
        return f"dtype {dtype} (the fused kernels cover float32 and float64)"
    if device.type == "cpu":
        return None if cpu_kernels() is not None else f"CPU kernel unavailable ({_cpu_error})"
    if device.type == "cuda":
        return None if cuda_kernels() is not None else f"CUDA kernel unavailable ({_cuda_error})"
    return f"device type {device.type!r} (the fused kernels cover cpu and cuda)"


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(
            f"lightning_snn: the fused IF update is not used, the eager one runs instead (slower): {reason}. "
            "Set LIGHTNING_SNN_FUSED=off (or lightning_snn.fused.set_fused_mode('off')) to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )


def reset_state_for_tests() -> None:
    """Forget built kernels, errors and warnings (tests force a failed build with this)."""
    global _cpu_lib, _cpu_error, _cuda_kernels, _cuda_error
    _cpu_lib = _cpu_error = _cuda_kernels = _cuda_error = None
    _warned.clear()
    BUILD_INFO.clear()


# ---- the update ----------------------------------------------------------------------------------
def _version(t: torch.Tensor) -> int | None:
    try:
        return t._version
    except RuntimeError:  # an inference tensor keeps no version counter
        return None


def _per_feature(neuron, value: torch.Tensor, features: torch.Size, like: torch.Tensor, name: str) -> torch.Tensor:
    """A scalar or ``[C]`` buffer as ``[F]`` (one value per feature of a sample), cached on the neuron
    while the buffer is the same tensor, unmodified (a replaced buffer, e.g. by
    :meth:`~lightning_snn.neurons.IFNeuron.set_bias_current` or ``.to()``, is a new tensor)."""
    key = (_version(value), tuple(features), like.dtype, like.device)
    cache = neuron.__dict__.setdefault("_fused_cache", {})
    hit = cache.get(name)
    if hit is not None and hit[0] is value and hit[1] == key:
        return hit[2]
    v = value.to(device=like.device, dtype=like.dtype)
    if v.dim() == 1 and len(features) > 1:
        v = v.view(-1, *([1] * (len(features) - 1)))
    flat = v.expand(features).reshape(-1).contiguous()
    cache[name] = (value, key, flat)  # holding `value` keeps its identity from being reused
    return flat


def if_forward(neuron, current: torch.Tensor) -> torch.Tensor | None:
    """One chunk of ``neuron`` (an :class:`~lightning_snn.neurons.IFNeuron`) in one fused pass, or
    ``None`` where the eager update must run (mode ``"off"``, or no kernel: warned once)."""
    if _mode == "off":
        return None
    reason = unavailable_reason(current.device, current.dtype)
    if reason is not None:
        if _mode == "on":
            raise RuntimeError(f"fused mode 'on' but the fused IF update cannot run: {reason}.")
        _warn_once(reason)
        return None
    per_step = neuron.unfold_time(current)  # validates the rows; a view, no copy
    steps, batch, features = per_step.shape[0], per_step.shape[1], per_step.shape[2:]
    if not current.is_contiguous():
        current = current.contiguous()
    stride_t = 0 if current.shape[0] == batch and steps > 1 else current[0].numel() * batch
    n_feat = features.numel()
    dtype, device = current.dtype, current.device
    if neuron.v is None:
        v0 = neuron.v_init.to(device=device, dtype=dtype)
        if v0.dim() == 1 and len(features) > 1:
            v0 = v0.view(-1, *([1] * (len(features) - 1)))
        # a copy, always: expand(...).contiguous() of a one-element state would alias the v_init buffer
        neuron.v = v0.expand(batch, *features).clone(memory_format=torch.contiguous_format)
    v = neuron.v
    if neuron.emits_negative and neuron.net_count is None:
        neuron.net_count = torch.zeros_like(v)
        neuron.negative_count = torch.zeros_like(v)
    if neuron.record_spikes and neuron.spike_count is None:
        neuron.spike_count = torch.zeros_like(v)
    state = (neuron.net_count, neuron.negative_count) if neuron.emits_negative else None
    th_scalar = neuron.v_threshold.numel() == 1 and state is None and device.type == "cpu"
    th = (
        neuron.v_threshold.reshape(1).to(device=device, dtype=dtype)
        if th_scalar
        else _per_feature(neuron, neuron.v_threshold, features, current, "th")
    )
    bias = _per_feature(neuron, neuron.bias_current, features, current, "bias") if neuron.has_bias else None
    out = torch.empty((steps, batch, *features), dtype=dtype, device=device)
    count = neuron.spike_count if neuron.record_spikes else None
    with torch.profiler.record_function("lightning_snn::fused_if"):  # named in profiles (ctypes is invisible)
        _LAUNCHERS[device.type](current, stride_t, bias, th, v, out, count, state, steps, batch, n_feat, th_scalar)
    return out.view(-1, *features)


def _launch_cpu(current, stride_t, bias, th, v, out, count, state, steps, batch, n_feat, th_scalar=False) -> None:
    def ptr(t: torch.Tensor | None) -> int | None:
        return None if t is None else t.data_ptr()

    args = (ptr(current), stride_t, ptr(bias), ptr(th), ptr(v), ptr(out), ptr(count))
    tail = (steps, batch, n_feat, torch.get_num_threads())
    name = _DTYPES[current.dtype]
    if state is not None:
        getattr(_cpu_lib, f"signed_{name}")(*args, ptr(state[0]), ptr(state[1]), *tail)
    else:
        getattr(_cpu_lib, f"if_{name}")(*args, *tail, int(th_scalar))


def _launch_triton(
    current, stride_t, bias, th, v, out, count, state, steps, batch, n_feat, th_scalar=False, block: int = 1024
) -> None:
    k = _cuda_kernels
    n = batch * n_feat
    net, neg = state if state is not None else (v, v)  # unread where a constexpr flag is off
    with torch.cuda.device(v.device) if v.is_cuda else contextlib.nullcontext():
        k["if"][(k["cdiv"](n, block),)](
            current, stride_t, bias if bias is not None else v, th, v, out, count if count is not None else v,
            net, neg, steps, n, n_feat,
            HAS_BIAS=bias is not None, RECORD=count is not None, SIGNED=state is not None, BLOCK=block,
        )  # fmt: skip


#: the kernel launcher per device type (the tests run the Triton kernel on the CPU in Triton's interpreter)
_LAUNCHERS = {"cpu": _launch_cpu, "cuda": _launch_triton}
