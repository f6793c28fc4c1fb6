"""Event-driven convolutions and linear layers: work only for the inputs that spiked (opt-in).

An SNN layer's input is mostly zeros: each step only a few percent of the neurons fire. A dense
layer does the same work for any input; an event-driven one adds, for every non-zero input,
its value times the weights it reaches:

* linear: ``out[n] = b + sum over i with x[n, i] != 0 of x[n, i] * W[:, i]`` (``W.T`` kept contiguous);
* conv2d: every non-zero ``x[n, c, y, x]`` adds ``x * W[:, c, ky, kx]`` to each output position its
  window reaches, accumulated channels-last in a per-sample buffer (in cache), then written NCHW.

Both are small C kernels built like the fused IF update's (:func:`lightning_snn.cbuild.build_c_library`).
Per call, a layer counts its input's non-zeros and runs event-driven only when their share is
below its **crossover** (the density at which the two take the same time on this CPU, measured by
``benchmarks/sparse_crossover.py``, docs/BENCHMARKS.md); otherwise, and for the analog first layer,
the dense layer runs. :func:`make_event_driven` switches an SNN's layers in place.

**Exact in real arithmetic**: the same products as the dense layer, summed in another order. In
float64 the spikes and counts equal the dense path's (tests/test_sparse.py); with integer or
binary-fraction inputs and weights (every sum exact) the outputs are bit for bit the dense
layer's; in float32 the last bits of a sum can differ, like any change of convolution algorithm,
so a neuron exactly at its threshold may fire one step apart. Off by default for that reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from lightning_snn.cbuild import build_c_library

MODES = ("off", "auto")
_mode = os.environ.get("LIGHTNING_SNN_SPARSE", "off").strip().lower() or "off"
if _mode not in MODES:
    raise ValueError(f"LIGHTNING_SNN_SPARSE must be one of {MODES}, got {_mode!r}.")

#: input density below which the event-driven layer is faster than the dense one, the lowest
#: crossover measured over VGG-16's layer shapes on this project's CPU (one thread;
#: benchmarks/sparse_crossover.py, docs/BENCHMARKS.md): 3x3 convolutions 8.5-29%, linear layers
#: with >= 128 outputs 5.2-32%; a linear layer with fewer outputs (a classifier head, where the dense
#: matmul costs next to nothing) 1.7%: ``NARROW_LINEAR``
CROSSOVER = {"conv2d": 0.08, "linear": 0.05}
NARROW_LINEAR = (128, 0.015)  # (outputs below which, crossover)

C_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#define EVENT_LINEAR(NAME, T)                                                                       \
/* out [N, O] (holds the bias) += x[n, i] * wt[i, :] for every non-zero x[n, i]; wt = W.T [I, O] */ \
void NAME(const T *x, const T *wt, T *out, int64_t N, int64_t I, int64_t O, int nthreads) {         \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static) if(nthreads > 1)")             \
    for (int64_t n = 0; n < N; n++) {                                                               \
        T *op = out + n * O;                                                                        \
        const T *xp = x + n * I;                                                                    \
        for (int64_t i = 0; i < I; i++) {                                                           \
            T val = xp[i];                                                                          \
            if (val == 0) continue;                                                                 \
            const T *wp = wt + i * O;                                                               \
            for (int64_t o = 0; o < O; o++) op[o] += val * wp[o];                                   \
        }                                                                                           \
    }                                                                                               \
}

/* x [N, C, H, W]; wr [C, KH, KW, O] (the weight permuted); bias [O] or NULL; out [N, O, HO, WO].
   Per sample: accumulate channels-last in a buffer (in cache), then write it out NCHW. */
#define EVENT_CONV(NAME, T)                                                                         \
int NAME(const T *x, const T *wr, const T *bias, T *out, int64_t N, int64_t C, int64_t H,           \
         int64_t W, int64_t O, int64_t KH, int64_t KW, int64_t SH, int64_t SW, int64_t PH,           \
         int64_t PW, int64_t HO, int64_t WO, int nthreads) {                                        \
    int failed = 0;                                                                                 \
    _Pragma("omp parallel num_threads(nthreads) if(nthreads > 1)")                                  \
    {                                                                                               \
        T *acc = (T *)malloc(sizeof(T) * HO * WO * O);                                              \
        if (!acc) failed = 1;                                                                       \
        _Pragma("omp for schedule(static)")                                                         \
        for (int64_t n = 0; n < N; n++) {                                                           \
            if (!acc) continue;                                                                     \
            for (int64_t p = 0; p < HO * WO; p++)                                                   \
                for (int64_t o = 0; o < O; o++) acc[p * O + o] = bias ? bias[o] : (T)0;            \
            for (int64_t c = 0; c < C; c++) {                                                       \
                const T *xp = x + (n * C + c) * H * W;                                              \
                for (int64_t y = 0; y < H; y++) {                                                   \
                    for (int64_t xx = 0; xx < W; xx++) {                                            \
                        T val = xp[y * W + xx];                                                     \
                        if (val == 0) continue;                                                     \
                        for (int64_t ky = 0; ky < KH; ky++) {                                       \
                            int64_t ty = y + PH - ky;                                               \
                            if (ty < 0 || ty % SH) continue;                                        \
                            int64_t oy = ty / SH;                                                   \
                            if (oy >= HO) continue;                                                 \
                            for (int64_t kx = 0; kx < KW; kx++) {                                   \
                                int64_t tx = xx + PW - kx;                                          \
                                if (tx < 0 || tx % SW) continue;                                    \
                                int64_t ox = tx / SW;                                               \
                                if (ox >= WO) continue;                                             \
                                T *ap = acc + (oy * WO + ox) * O;                                   \
                                const T *wp = wr + ((c * KH + ky) * KW + kx) * O;                   \
                                for (int64_t o = 0; o < O; o++) ap[o] += val * wp[o];               \
                            }                                                                       \
                        }                                                                           \
                    }                                                                               \
                }                                                                                   \
            }                                                                                       \
            T *on = out + n * O * HO * WO;                                                          \
            for (int64_t o = 0; o < O; o++)                                                         \
                for (int64_t p = 0; p < HO * WO; p++) on[o * HO * WO + p] = acc[p * O + o];         \
        }                                                                                           \
        free(acc);                                                                                  \
    }                                                                                               \
    return failed;                                                                                  \
}
EVENT_LINEAR(event_linear_f32, float)
EVENT_LINEAR(event_linear_f64, double)
EVENT_CONV(event_conv_f32, float)
EVENT_CONV(event_conv_f64, double)
"""

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_lib: ctypes.CDLL | None = None
#: what building the kernels cost in this process
BUILD_INFO: dict = {}


def kernels() -> ctypes.CDLL:
    """The event-driven kernels (built once per machine, loaded once per process); raises
    RuntimeError if they cannot be built."""
    global _lib
    if _lib is None:
        lib = build_c_library(C_SOURCE, "event_layers", BUILD_INFO)
        p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
        for s in _SUFFIX.values():
            getattr(lib, f"event_linear_{s}").argtypes = [p, p, p, i64, i64, i64, i32]
            getattr(lib, f"event_linear_{s}").restype = None
            getattr(lib, f"event_conv_{s}").argtypes = [p, p, p, p] + [i64] * 13 + [i32]
            getattr(lib, f"event_conv_{s}").restype = ctypes.c_int
        _lib = lib
    return _lib


def event_linear(x: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, wt.T, bias)`` for a 2-D contiguous CPU ``x``, adding the weight rows of its
    non-zero entries; ``wt`` = ``W.T``, contiguous."""
    n, o = x.shape[0], wt.shape[1]
    out = bias.expand(n, o).clone() if bias is not None else torch.zeros(n, o, dtype=x.dtype)
    fn = getattr(kernels(), f"event_linear_{_SUFFIX[x.dtype]}")
    fn(x.data_ptr(), wt.data_ptr(), out.data_ptr(), n, x.shape[1], o, torch.get_num_threads())
    return out


def event_conv2d(
    x: torch.Tensor, wr: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int], padding: tuple[int, int]
) -> torch.Tensor:
    """``F.conv2d(x, W, bias, stride, padding)`` (one group, no dilation) for a contiguous CPU
    ``x [N, C, H, W]``, scattering the weights of its non-zero entries; ``wr`` = ``W`` permuted to
    ``[C_in, KH, KW, C_out]``, contiguous."""
    n, c, h, w = x.shape
    _, kh, kw, o = wr.shape
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (w + 2 * padding[1] - kw) // stride[1] + 1
    out = torch.empty(n, o, ho, wo, dtype=x.dtype)
    fn = getattr(kernels(), f"event_conv_{_SUFFIX[x.dtype]}")
    failed = fn(
        x.data_ptr(), wr.data_ptr(), None if bias is None else bias.data_ptr(), out.data_ptr(),
        n, c, h, w, o, kh, kw, stride[0], stride[1], padding[0], padding[1], ho, wo, torch.get_num_threads(),
    )  # fmt: skip
    if failed:
        raise MemoryError("event_conv2d: no memory for a per-sample accumulation buffer")
    return out


def _cached(module: nn.Module, name: str, make) -> torch.Tensor:
    """A tensor derived from ``module.weight`` (transposed / permuted), rebuilt when the weight is
    replaced or modified."""
    w = module.weight
    try:
        version = w._version
    except RuntimeError:  # inference tensors keep no version counter
        version = None
    hit = module.__dict__.get(name)
    if hit is not None and hit[0] is w and hit[1] == version:
        return hit[2]
    value = make(w.detach()).contiguous()
    module.__dict__[name] = (w, version, value)
    return value


def _usable(x: torch.Tensor, module: nn.Module) -> bool:
    return x.device.type == "cpu" and x.dtype in _SUFFIX and x.dtype == module.weight.dtype and not x.requires_grad


def _density(x: torch.Tensor) -> float:
    return int(torch.count_nonzero(x)) / max(1, x.numel())


class EventConv2d(nn.Conv2d):
    """A :class:`torch.nn.Conv2d` (same parameters, same state dict) that runs event-driven when
    the share of non-zero inputs is below ``crossover``. Made by :func:`make_event_driven`."""

    crossover: float = CROSSOVER["conv2d"]
    event_calls: int = 0
    dense_calls: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and _usable(x, self) and _density(x) < self.crossover:
            self.event_calls += 1
            wr = _cached(self, "_event_weight", lambda w: w.permute(1, 2, 3, 0))
            with torch.profiler.record_function("lightning_snn::event_conv2d"):
                return event_conv2d(x.contiguous(), wr, self.bias, self.stride, self.padding)
        self.dense_calls += 1
        return super().forward(x)


class EventLinear(nn.Linear):
    """A :class:`torch.nn.Linear` that runs event-driven when the share of non-zero inputs is below
    ``crossover``. Made by :func:`make_event_driven`."""

    crossover: float = CROSSOVER["linear"]
    event_calls: int = 0
    dense_calls: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2 and _usable(x, self) and _density(x) < self.crossover:
            self.event_calls += 1
            wt = _cached(self, "_event_weight", lambda w: w.t())
            with torch.profiler.record_function("lightning_snn::event_linear"):
                return event_linear(x.contiguous(), wt, self.bias)
        self.dense_calls += 1
        return super().forward(x)


def _convertible(m: nn.Module) -> type | None:
    if type(m) is nn.Conv2d and m.groups == 1 and m.dilation == (1, 1) and m.padding_mode == "zeros":
        if isinstance(m.padding, tuple):  # padding="same"/"valid" strings are resolved by F.conv2d only
            return EventConv2d
    if type(m) is nn.Linear:
        return EventLinear
    return None


def make_event_driven(snn: nn.Module, crossover: dict[str, float] | None = None) -> int:
    """Let every ``Conv2d`` (one group, no dilation, zero padding) and ``Linear`` of ``snn`` run
    event-driven below its crossover density (in place: the modules change class, keep their
    parameters and state-dict keys). Builds the kernels first (RuntimeError if it cannot).

    Args:
        snn: a converted SNN (not the ANN: its inputs are not sparse, and it trains).
        crossover: ``{"conv2d": density, "linear": density}`` overriding :data:`CROSSOVER`
            (``1.0``: always event-driven, ``0.0``: never).

    Returns:
        How many layers were switched.
    """
    kernels()
    rates = {**CROSSOVER, **(crossover or {})}
    unknown = set(rates) - set(CROSSOVER)
    if unknown:
        raise ValueError(f"crossover keys must be among {sorted(CROSSOVER)}, got {sorted(unknown)}.")
    switched = 0
    for m in snn.modules():
        cls = _convertible(m) or (type(m) if isinstance(m, (EventConv2d, EventLinear)) else None)
        if cls is None:
            continue
        m.__class__ = cls
        m.crossover = rates["conv2d" if cls is EventConv2d else "linear"]
        if cls is EventLinear and m.out_features < NARROW_LINEAR[0] and "linear" not in (crossover or {}):
            m.crossover = min(m.crossover, NARROW_LINEAR[1])
        m.event_calls = m.dense_calls = 0
        switched += 1
    return switched


def make_dense(snn: nn.Module) -> None:
    """Undo :func:`make_event_driven`: every event-driven layer back to its dense class."""
    for m in snn.modules():
        if isinstance(m, EventConv2d):
            m.__class__ = nn.Conv2d
        elif isinstance(m, EventLinear):
            m.__class__ = nn.Linear
        m.__dict__.pop("_event_weight", None)


def set_sparse_mode(mode: str) -> None:
    """``"off"`` (default: dense layers, bit for bit the engine's results before this module) or
    ``"auto"``: :class:`~lightning_snn.simulation.SpikingEvaluator` (so the conversion callback)
    makes its SNNs event-driven (:func:`make_event_driven`). Also ``$LIGHTNING_SNN_SPARSE``."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"sparse mode must be one of {MODES}, got {mode!r}.")
    _mode = mode


@contextlib.contextmanager
def sparse_mode(mode: str) -> Iterator[None]:
    """Run a block with another sparse mode."""
    previous = _mode
    set_sparse_mode(mode)
    try:
        yield
    finally:
        set_sparse_mode(previous)


def apply_mode(snn: nn.Module) -> bool:
    """Make ``snn`` event-driven if the mode is ``"auto"`` (warning once, and leaving it dense, if
    the kernels cannot be built). Returns whether it did."""
    if _mode == "off":
        return False
    try:
        make_event_driven(snn)
        return True
    except RuntimeError as exc:
        warnings.warn(
            f"lightning_snn: event-driven layers not used (dense instead): {exc}", RuntimeWarning, stacklevel=2
        )
        return False


def event_share(snn: nn.Module) -> dict[str, float]:
    """Per event-driven layer (named as in the ANN): the share of its calls that ran event-driven."""
    root = getattr(snn, "body", snn)  # a ConvertedSNN's layers by their names in the ANN
    return {
        name: m.event_calls / max(1, m.event_calls + m.dense_calls)
        for name, m in root.named_modules()
        if isinstance(m, (EventConv2d, EventLinear))
    }
