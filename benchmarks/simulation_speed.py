"""How fast is the SNN simulation? One model, one batch, one machine, every engine side by side.

Rows (each warmed up once, then timed ``--repeats`` times round-robin with the others; the
median and minimum wall time and the median process CPU time are reported):

* ``ours_auto`` / ``ours_chunk_<c>``: :class:`lightning_snn.simulation.SpikingEvaluator` (the
  engine the conversion callback uses), membrane shift, ``time_chunk="auto"`` and a sweep.
  ``time_chunk=1`` is our per-step loop (the whole network once per step, in-place neurons).
* ``reference_naive``: the textbook per-step simulator :func:`lightning_snn.reference.simulate_reference`
  (the SNN's graph walked node by node once per step, IF neurons as plain out-of-place tensor ops),
  the same one the tests use.
* ``spikingjelly_single_step`` / ``spikingjelly_multi_step``: SpikingJelly's ann2snn converter
  (``mode="max"``) on a same-weight copy of the model with ``nn.ReLU``; single-step = a loop
  over T calling the converted net, multi-step = ``set_step_mode(net, "m")`` fed ``[T, B, ...]``.
* ``ann_forward_x_T``: T plain ANN forward passes on the same batch (the dense bound);
  ``ann_forward`` = that / T.
* ``curve_one_pass``: the accuracy-vs-T curve (T = 16, 32, ..., T_max) from one simulation to
  T_max (membrane mode); ``curve_per_T_runs``: the same curve as one simulation per T (summed).
* ``ours_signed_auto``: ``ours_auto`` with signed IF neurons (``neuron="signed"``: negative
  spikes; a longer per-step recurrence).
* ``ours_eager_auto`` / ``ours_signed_eager_auto``: the same with the eager IF update (four
  element-wise passes per step, eight for signed) instead of the fused kernel
  (:mod:`lightning_snn.fused`); ``ours_before``: the engine before issue 22, i.e. the eager update,
  the old batch-only "auto" (chunk 1 at batch >= 128, else 8; 32 on CUDA) and the first layer
  run every chunk (:mod:`lightning_snn.constant_input` off). Method ``eager`` (in the default list).

Every ``ours*`` row except these runs the fused update (``--fused on``: it must be available);
the build or compile time of the kernel is measured apart (``fused_build``), never in a timed row.

Run from the repository root, e.g.::

    python benchmarks/simulation_speed.py --width 0.25 --batch-size 64 --T 64 --repeats 3 --threads 1 \
        --profile --json benchmarks/results/cpu_vgg16_w0.25_b64_T64.json

Timings only; nothing here asserts a speed. Results and conclusions: docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lightning_snn import fused
from lightning_snn.activations import CONVERTIBLE_ACTIVATIONS, set_threshold_enabled
from lightning_snn.chunking import auto_time_chunk, largest_activation_bytes
from lightning_snn.constant_input import constant_prefix
from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.heap import heap_kept, keep_freed_memory
from lightning_snn.models import create_model
from lightning_snn.reference import simulate_reference
from lightning_snn.simulation import SpikingEvaluator, simulate

ALL_METHODS = ("ours", "eager", "reference", "spikingjelly", "ann", "curve", "signed")
#: "auto" before issue 22 (batch size only), for the ``ours_before`` row
OLD_AUTO_TIME_CHUNK = {"cpu": lambda batch: 1 if batch >= 128 else 8, "cuda": lambda batch: 32}


# ---- set-up ----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arch", default="vgg16", help="registered model name (default vgg16)")
    p.add_argument("--width", type=float, default=0.25, help="channel multiplier (default 0.25)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--T", type=int, default=128, help="simulation length T (= T_max of the curve)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row; the median is reported")
    p.add_argument("--chunks", default="1,2,4,8,16,32", help="time_chunk sweep, comma separated")
    p.add_argument(
        "--methods",
        default=",".join(ALL_METHODS),
        help=f"rows to run, comma separated, from {','.join(ALL_METHODS)} (default: all)",
    )
    p.add_argument("--curve-min", type=int, default=16, help="smallest T of the accuracy-vs-T curve (default 16)")
    p.add_argument(
        "--sj-time-chunk",
        type=int,
        default=0,
        help="SpikingJelly multi-step: feed T in chunks of this many steps (0 = the whole [T, B, ...] at once)",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--fused",
        default="on",
        choices=["on", "auto"],
        help="fused IF update of the ours* rows: on (must be available; default) or auto (eager if not)",
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument(
        "--build-time",
        action="store_true",
        help="CPU: also time the fused kernel's build from an empty cache and its load from the cache, "
        "each in a fresh process (~2 x 5-10 s)",
    )
    p.add_argument(
        "--heap",
        default="keep",
        choices=["keep", "trim"],
        help="keep (default): freed memory stays in the process (lightning_snn.heap.keep_freed_memory, as "
        "train.py does), so no row pays page faults for memory another row freed, and time_chunk auto "
        "aims at 64 MB; trim: glibc's defaults (minor page faults counted per row; auto aims at 8 MB)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave as is)")
    p.add_argument("--calib-size", type=int, default=64, help="calibration batch (random or CIFAR train images)")
    p.add_argument("--data-dir", default=None, help="a folder with train.npz/test.npz: use real CIFAR images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="torch.profiler top ops of ours (auto) and T x ANN")
    p.add_argument("--json", default=None, help="write every number to this JSON file")
    args = p.parse_args(argv)
    args.chunk_list = [int(c) for c in args.chunks.split(",") if c.strip()]
    args.method_set = {m.strip() for m in args.methods.split(",") if m.strip()}
    unknown = args.method_set - set(ALL_METHODS)
    if unknown:
        p.error(f"unknown method(s) {sorted(unknown)}; choose from {list(ALL_METHODS)}")
    if args.T <= 0 or args.batch_size <= 0 or args.repeats <= 0:
        p.error("--T, --batch-size and --repeats must be > 0")
    return args


def curve_timesteps(t_max: int, t_min: int = 16) -> list[int]:
    """Powers of two from ``t_min`` up to ``t_max`` (plus ``t_max``); shorter for tiny T."""
    start = t_min if t_max >= 2 * t_min else max(1, t_max // 4)
    ts, t = [], start
    while t <= t_max:
        ts.append(t)
        t *= 2
    return sorted(set(ts) | {t_max})


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "spikingjelly": spikingjelly_version(),
        # which checkout was measured: a script run without PYTHONPATH imports the installed package
        "lightning_snn": str(Path(fused.__file__).resolve().parent),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return info


def spikingjelly_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("spikingjelly")
    except Exception:
        return None


def load_images(data_dir: str, split: str, n: int) -> torch.Tensor:
    from lightning_snn.data import CIFAR10_MEAN, CIFAR10_STD, load_npz_split

    images, _ = load_npz_split(Path(data_dir), split)
    images = images[:n].float() / 255.0
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, -1, 1, 1), torch.tensor(CIFAR10_STD).view(1, -1, 1, 1)
    return (images - mean) / std


def build(args: argparse.Namespace, device: torch.device, dtype: torch.dtype):
    """The ANN (threshold ReLU on), its thresholds, the calibration batch and the input batch."""
    torch.manual_seed(args.seed)
    model = create_model(args.arch, width=args.width).eval()
    set_threshold_enabled(model, True)
    model = model.to(device=device, dtype=dtype)
    if args.data_dir:
        calib = load_images(args.data_dir, "train", args.calib_size)
        x = load_images(args.data_dir, "test", args.batch_size)
    else:
        gen = torch.Generator().manual_seed(args.seed + 1)
        calib = torch.randn(args.calib_size, 3, 32, 32, generator=gen)
        x = torch.randn(args.batch_size, 3, 32, 32, generator=gen)
    calib, x = calib.to(device=device, dtype=dtype), x.to(device=device, dtype=dtype)
    thresholds = calibrate_thresholds(model, [calib])
    return model, thresholds, calib, x


# ---- the engines that are not ours -------------------------------------------------------------
def relu_copy(model: nn.Module) -> nn.Module:
    """A deep copy with every convertible activation replaced by ``nn.ReLU`` (same weights)."""
    net = copy.deepcopy(model)
    for name, m in list(net.named_modules()):
        if isinstance(m, CONVERTIBLE_ACTIVATIONS) and type(m) is not nn.ReLU:
            parent_name, _, attr = name.rpartition(".")
            setattr(net.get_submodule(parent_name) if parent_name else net, attr, nn.ReLU())
    return net


def spikingjelly_convert(model: nn.Module, calib: torch.Tensor, device: torch.device) -> nn.Module:
    """SpikingJelly's ann2snn (``mode="max"``) on the ReLU copy, calibrated on the same batch."""
    from spikingjelly.activation_based import ann2snn

    ann = relu_copy(model)
    if hasattr(ann2snn, "RateCodingRecipe"):  # spikingjelly >= 2.0: a recipe object
        converter = ann2snn.Converter(ann2snn.RateCodingRecipe(dataloader=[calib], mode="max"), device=device)
    else:  # spikingjelly 0.0.0.0.14: Converter(mode=..., dataloader=...)
        converter = ann2snn.Converter(mode="max", dataloader=[(calib, None)], device=device)
    return converter.convert(ann).eval()


def sj_single_step(net: nn.Module, x: torch.Tensor, T: int) -> torch.Tensor:
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    total = None
    for _t in range(T):
        out = net(x)
        total = out if total is None else total + out
    functional.reset_net(net)
    return total / T


def sj_multi_step(net: nn.Module, x: torch.Tensor, T: int, chunk: int = 0) -> torch.Tensor:
    """``net`` in step mode "m"; input ``x`` repeated to ``[T, B, ...]`` (in chunks if ``chunk``)."""
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    chunk = T if chunk <= 0 else chunk
    total, done = None, 0
    while done < T:
        steps = min(chunk, T - done)
        out = net(x.unsqueeze(0).repeat(steps, *([1] * x.dim()))).sum(0)
        total = out if total is None else total + out
        done += steps
    functional.reset_net(net)
    return total / T


# ---- timing ------------------------------------------------------------------------------------
def make_sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


class Row:
    """One timed row: ``fn`` runs the whole simulation; ``warm`` (default ``fn``) warms it up."""

    def __init__(self, key: str, fn: Callable[[], object], warm: Callable[[], object] | None = None, **info) -> None:
        self.key, self.fn, self.warm, self.info = key, fn, warm or fn, info
        self.runs: list[float] = []
        self.cpu_runs: list[float] = []  # process CPU time: robust to other processes when 1 thread
        self.faults: list[int] = []  # minor page faults (fresh pages the kernel zeroed) per run
        self.out = None  # the last timed run's output, for the agreement checks


def time_rows(
    rows: list[Row], repeats: int, sync: Callable[[], None], log: Callable[[str], None], skipped: dict
) -> dict:
    """Warm every row up once, then time the rows round-robin, ``repeats`` rounds.

    Round-robin (row 1, row 2, ..., then again, the order rotated by one each round) rather
    than row by row: on a shared machine a change of load then hits every row alike, so the
    ratios between rows stay fair. A row
    whose warm-up fails (out of memory) is dropped and its error put in ``skipped``.
    """
    kept = []
    for row in rows:
        try:
            row.warm()
            sync()
            kept.append(row)
        except (RuntimeError, MemoryError) as exc:  # e.g. CUDA out of memory at a large chunk
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            skipped[row.key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            log(f"NOTE: row {row.key} dropped: {skipped[row.key]}")
    rows = kept
    for i in range(repeats):
        # rotate the order each round: no row always runs first (after a print, a different shape)
        k = i % len(rows) if rows else 0
        for row in rows[k:] + rows[:k]:
            sync()
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0, c0 = time.perf_counter(), time.process_time()
            row.out = row.fn()
            sync()
            row.runs.append(time.perf_counter() - t0)
            row.cpu_runs.append(time.process_time() - c0)
            row.faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        log(f"  round {i + 1}/{repeats}: " + ", ".join(f"{r.key} {r.runs[-1]:.3f}s" for r in rows))
    return {
        r.key: {
            "median": statistics.median(r.runs),
            "min": min(r.runs),
            "runs": r.runs,
            "cpu_median": statistics.median(r.cpu_runs),
            "cpu_runs": r.cpu_runs,
            "minor_faults_median": statistics.median(r.faults),
            **r.info,
        }
        for r in rows
    }


def outputs(rows: list[Row]) -> dict:
    return {r.key: r.out for r in rows if r.out is not None}


def agreement(a: torch.Tensor, b: torch.Tensor) -> dict:
    pa, pb = a.argmax(-1), b.argmax(-1)
    return {
        "predictions_equal": bool(torch.equal(pa, pb)),
        "prediction_agreement": float((pa == pb).float().mean()),
        "max_abs_diff": float((a - b).abs().max()),
    }


def profile_top_ops(fn: Callable[[], object], device: torch.device, rows: int = 12) -> dict:
    """Run ``fn`` once under torch.profiler; the top ops by self time, and time per op family."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    averages = prof.key_averages()
    use_cuda = device.type == "cuda"
    sort_key = "self_cuda_time_total" if use_cuda else "self_cpu_time_total"
    table = averages.table(sort_by=sort_key, row_limit=rows)

    def self_time(e) -> float:
        if use_cuda:
            return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)))
        return float(e.self_cpu_time_total)

    families = {"dense (conv/linear/pool)": 0.0, "elementwise (IF neuron, clamp)": 0.0, "readout": 0.0, "other": 0.0}
    dense = (
        "conv",
        "mkldnn",
        "addmm",
        "aten::mm",
        "avg_pool",
        "gemm",
        "cudnn",
        "cutlass",
        "xmma",
        "sm90",
        "sm80",
        "event_",
    )
    elementwise = (
        "aten::add",
        "aten::sub",
        "aten::mul",
        "aten::ge",
        "aten::clamp",
        "aten::relu",
        "elementwise",
        "fused_if",  # our fused IF kernel (CPU: named by record_function; CUDA: the Triton kernel if_kernel)
        "if_kernel",
    )
    readout = ("aten::cumsum", "aten::div", "aten::stack", "scan")
    total = 0.0
    for e in averages:
        t = self_time(e)
        total += t
        key = e.key.lower()
        for family, patterns in (
            ("dense (conv/linear/pool)", dense),
            ("elementwise (IF neuron, clamp)", elementwise),
            ("readout", readout),
        ):
            if any(k in key for k in patterns):
                families[family] += t
                break
        else:
            families["other"] += t
    share = {k: (v / total if total else 0.0) for k, v in families.items()}
    seconds = {k: v / 1e6 for k, v in families.items()}  # profiler times are in microseconds
    return {"table": table, "self_time_share": share, "self_time_s": seconds, "sorted_by": sort_key}


def spikingjelly_rows(args, model, calib, x, device, result) -> list[Row]:
    """SpikingJelly's single-step row and, if its converted graph runs multi-step, its multi-step row."""
    notes, T = result["notes"], args.T
    if result["machine"]["spikingjelly"] is None:
        notes.append("spikingjelly is not installed (pip install -e '.[bench]'): its rows are skipped")
        print("NOTE: " + notes[-1])
        return []
    from spikingjelly.activation_based import functional

    try:
        with torch.inference_mode(False), torch.no_grad():  # its calibration hooks keep state
            sj = spikingjelly_convert(model, calib, device)
    except Exception as exc:  # report, do not hide: the other rows still count
        notes.append(f"spikingjelly ann2snn conversion failed: {type(exc).__name__}: {exc}")
        print("NOTE: " + notes[-1])
        return []
    result["spikingjelly_modules"] = sorted({type(m).__name__ for m in sj.modules()})
    functional.set_step_mode(sj, "s")
    rows = [Row("spikingjelly_single_step", lambda: sj_single_step(sj, x, T), lambda: sj_single_step(sj, x, min(T, 2)))]
    # multi-step: its own deep copy, so the two modes never share a step-mode switch
    sj_m = copy.deepcopy(sj)
    sc = args.sj_time_chunk
    try:
        functional.set_step_mode(sj_m, "m")
        small = min(T, 4)
        if not torch.allclose(sj_multi_step(sj_m, x, small, sc), sj_single_step(sj, x, small), atol=1e-4, rtol=1e-4):
            raise RuntimeError("its multi-step output differs from its single-step output")
    except Exception as exc:
        notes.append(f"spikingjelly multi-step mode not measured: {type(exc).__name__}: {exc}")
        print("NOTE: " + notes[-1])
        return rows
    warm_t = T if sc <= 0 else min(T, 2 * sc)
    rows.append(
        Row(
            "spikingjelly_multi_step",
            lambda: sj_multi_step(sj_m, x, T, sc),
            lambda: sj_multi_step(sj_m, x, warm_t, sc),
            time_chunk=sc if sc > 0 else T,
        )
    )
    return rows


def eager(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with the eager IF update (four element-wise passes per step)."""

    def run_eager():
        with fused.fused_mode("off"):
            return fn()

    return run_eager


def before(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run as the engine before issue 22: the eager IF update, and the layers that see only
    the constant input run every chunk (the old "auto" chunk is chosen by the row itself)."""

    def run_before():
        with fused.fused_mode("off"), constant_prefix(False):
            return fn()

    return run_before


def fused_build_info(device: torch.device, dtype: torch.dtype, fresh_processes: bool = False) -> dict:
    """What the fused kernel costs before the first simulation: on the CPU the C library's build
    with an empty cache (in a fresh process, so nothing is shared) and its load from the cache; on
    CUDA the Triton compile of each variant, launched once on a tiny neuron here."""
    info: dict = {"unavailable_reason": fused.unavailable_reason(device, dtype), "this_process": fused.BUILD_INFO}
    if device.type == "cpu" and fresh_processes:
        code = "from lightning_snn import fused; fused.cpu_kernels(); import json; print(json.dumps(fused.BUILD_INFO))"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        with tempfile.TemporaryDirectory() as cache:
            for key in ("cold", "cached"):  # the second process finds the first one's library
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-c", code],
                    env={**env, "LIGHTNING_SNN_CACHE": cache},
                    capture_output=True,
                    text=True,
                )
                info[f"{key}_process_s"] = time.perf_counter() - t0  # with Python and torch's import
                if proc.returncode == 0:
                    info[key] = json.loads(proc.stdout.strip().splitlines()[-1]).get("cpu")
                else:
                    info[key] = {"error": proc.stderr[-500:]}
    elif (
        device.type == "cuda" and info["unavailable_reason"] is None
    ):  # every Triton variant once: (IF, signed) x (bias, none), recorded
        from lightning_snn.neurons import IFNeuron, SignedIFNeuron

        t0 = time.perf_counter()
        for signed, bias, record in ((False, 0.0, False), (False, 0.1, False), (True, 0.0, False), (True, 0.1, True)):
            n = (SignedIFNeuron if signed else IFNeuron)(1.0, bias_current=bias).to(device)
            n.batch_size, n.steps, n.record_spikes = 2, 2, record
            with fused.fused_mode("on"):
                n(torch.ones(4, 8, device=device, dtype=dtype))
        torch.cuda.synchronize(device)
        info["triton_compile_s"] = time.perf_counter() - t0
    return info


# ---- the benchmark -----------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if args.heap == "keep" and not keep_freed_memory():
        raise SystemExit(
            "--heap keep: freed memory cannot be kept here (not glibc, or LIGHTNING_SNN_HEAP=trim): "
            "pass --heap trim to measure with this allocator's defaults"
        )
    heap = "kept (lightning_snn.heap: no trimming, mmap from 1 GiB)" if heap_kept() else "glibc defaults (trimmed)"
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch.cuda.is_available() is False")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    sync = make_sync(device)
    load_before = os.getloadavg()
    T, B = args.T, args.batch_size
    model, thresholds, calib, x = build(args, device, dtype)
    ts = curve_timesteps(T, args.curve_min)
    bytes_per_sample = largest_activation_bytes(model, x)
    auto_chunk = auto_time_chunk(device, B, bytes_per_sample)  # after a first chunk of one step
    old_chunk = OLD_AUTO_TIME_CHUNK[device.type](B)
    fused.set_fused_mode(args.fused)
    build_info = fused_build_info(device, dtype, args.build_time)
    result: dict = {
        "config": {
            "arch": args.arch,
            "width": args.width,
            "batch_size": B,
            "T": T,
            "repeats": args.repeats,
            "time_chunks": args.chunk_list,
            "auto_time_chunk": auto_chunk,
            "largest_activation_bytes_per_sample": bytes_per_sample,
            "old_auto_time_chunk": old_chunk,
            "fused_mode": args.fused,
            "curve_timesteps": ts,
            "device": str(device),
            "dtype": args.dtype,
            "input": f"CIFAR test images from {args.data_dir}" if args.data_dir else "random normal",
            "shift": "membrane",
            "heap": heap,
            "parameters": sum(p.numel() for p in model.parameters()),
            "argv": sys.argv[1:],
        },
        "machine": machine_info(device),
        "fused_build": build_info,
        "times_s": {},
        "checks": {},
        "notes": [],
    }
    times, checks = result["times_s"], result["checks"]

    def log(msg: str) -> None:
        print(msg, flush=True)

    log(f"# {args.arch} width {args.width}, batch {B}, T {T}, {device} {args.dtype}, repeats {args.repeats}")
    rows: list[Row] = []
    with torch.inference_mode():
        # --- ours: the callback's engine, membrane shift, auto + a sweep of time_chunk ---------
        def evaluator(timesteps: list[int], chunk: int | str, neuron: str = "if") -> SpikingEvaluator:
            return SpikingEvaluator(model, thresholds, timesteps, shift="membrane", time_chunk=chunk, neuron=neuron)

        ev = evaluator([T], "auto")
        snn = convert(model, thresholds, shift="membrane")  # for warm-ups and checks, same network

        def warm_ours(c: int) -> Callable[[], object]:
            return lambda: simulate(snn, x, [min(T, 2 * c + 1)], c)  # every chunk shape, shorter T

        # "ours_auto" is always timed: every ratio is relative to it
        rows.append(Row("ours_auto", lambda: ev(x), warm_ours(auto_chunk), time_chunk=auto_chunk))
        if "eager" in args.method_set:  # the same chunks with the eager IF update; and the engine before
            rows.append(
                Row("ours_eager_auto", eager(lambda: ev(x)), eager(warm_ours(auto_chunk)), time_chunk=auto_chunk)
            )
            old = evaluator([T], old_chunk)
            rows.append(Row("ours_before", before(lambda: old(x)), before(warm_ours(old_chunk)), time_chunk=old_chunk))
        if "ours" in args.method_set:
            for c in args.chunk_list:
                e = evaluator([T], c)
                rows.append(Row(f"ours_chunk_{c}", lambda e=e: e(x), warm_ours(c), time_chunk=c))

        if "signed" in args.method_set:
            signed = evaluator([T], "auto", "signed")
            warm = lambda: simulate(signed.snns[0], x, [min(T, 2 * auto_chunk)], auto_chunk)  # noqa: E731
            rows.append(Row("ours_signed_auto", lambda: signed(x), warm, time_chunk=auto_chunk))
            if "eager" in args.method_set:
                rows.append(Row("ours_signed_eager_auto", eager(lambda: signed(x)), eager(warm), time_chunk=auto_chunk))

        # --- the textbook per-step reference ------------------------------------------------------
        if "reference" in args.method_set:
            rows.append(
                Row("reference_naive", lambda: simulate_reference(snn, x, T), lambda: simulate_reference(snn, x, 2))
            )

        # --- SpikingJelly ann2snn ---------------------------------------------------------------
        if "spikingjelly" in args.method_set:
            rows += spikingjelly_rows(args, model, calib, x, device, result)

        # --- the dense bound: T x one ANN forward -------------------------------------------------
        if "ann" in args.method_set:
            rows.append(Row("ann_forward_x_T", lambda: [model(x) for _ in range(T)], lambda: model(x)))

        # --- the whole accuracy-vs-T curve: one pass vs one run per T ----------------------------
        if "curve" in args.method_set:
            curve_ev = evaluator(ts, "auto")
            rows.append(Row("curve_one_pass", lambda: curve_ev(x), warm_ours(auto_chunk), timesteps=ts))
            per_t = [evaluator([t], "auto") for t in ts]
            rows.append(Row("curve_per_T_runs", lambda: [e(x) for e in per_t], warm_ours(auto_chunk), timesteps=ts))

        log("timing: " + ", ".join(r.key for r in rows))
        skipped: dict[str, str] = {}
        times.update(time_rows(rows, args.repeats, sync, log, skipped))
        result["notes"] += [f"row {k} dropped: {v}" for k, v in skipped.items()]
        # --- do the engines agree? (on the timed runs' own outputs) -----------------------------
        out = outputs(rows)
        ours_out = out["ours_auto"][0] if "ours_auto" in out else ev(x)[0]
        per_step = out["ours_chunk_1"][0] if "ours_chunk_1" in out else simulate(snn, x, [T], 1)[0]
        checks["ours_chunked_vs_per_step"] = agreement(ours_out, per_step)
        if "ours_eager_auto" in out:  # the fused update is exact: the same spikes, so the same outputs
            checks["fused_vs_eager"] = agreement(ours_out, out["ours_eager_auto"][0])
            checks["fused_vs_eager"]["bit_identical"] = bool(torch.equal(ours_out, out["ours_eager_auto"][0]))
        if "ours_before" in out:  # bit-identical where both run the same chunks (else float rounding)
            checks["ours_vs_before"] = {
                **agreement(ours_out, out["ours_before"][0]),
                "bit_identical": bool(torch.equal(ours_out, out["ours_before"][0])),
            }
        if "ours_signed_eager_auto" in out and "ours_signed_auto" in out:
            a, b = out["ours_signed_auto"][0], out["ours_signed_eager_auto"][0]
            checks["signed_fused_vs_eager"] = {**agreement(a, b), "bit_identical": bool(torch.equal(a, b))}
        if "reference_naive" in out:
            checks["ours_vs_reference"] = agreement(ours_out, out["reference_naive"])
        if "spikingjelly_single_step" in out:
            # SpikingJelly's IF starts at v = 0: compare with our no-shift SNN, same thresholds
            ours_noshift = simulate(convert(model, thresholds, shift="none"), x, [T], "auto")[0]
            checks["spikingjelly_vs_ours_noshift"] = agreement(out["spikingjelly_single_step"], ours_noshift)
        if "curve_one_pass" in out and "curve_per_T_runs" in out:
            curve, per_t_out = out["curve_one_pass"], out["curve_per_T_runs"]
            checks["curve_equals_per_T_runs"] = all(torch.allclose(curve[i], o[0]) for i, o in enumerate(per_t_out))
        for name, check in checks.items():
            log(f"check {name}: {check}")
        if "ann_forward_x_T" in times:
            times["ann_forward"] = {k: times["ann_forward_x_T"][k] / T for k in ("median", "min", "cpu_median")}

        if args.profile:
            result["profile"] = {
                "ours_auto": profile_top_ops(lambda: ev(x), device),
                "ann_forward_x_T": profile_top_ops(lambda: [model(x) for _ in range(T)], device),
            }
            for row in rows:  # what bounds SpikingJelly: the same dense layers, or its own overhead?
                if row.key.startswith("spikingjelly"):
                    result["profile"][row.key] = profile_top_ops(row.fn, device)
            for name, prof in result["profile"].items():
                log(f"\n## torch.profiler: {name} (self-time share {prof['self_time_share']})\n{prof['table']}")

    result["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    result["ratios"] = ratios(times)
    # on a shared machine the fastest run is the least disturbed one: its ratios too
    result["ratios_of_min"] = ratios(times, "min")
    # with one torch thread, process CPU time hardly depends on what else runs on the machine
    result["ratios_of_cpu_time"] = ratios(times, "cpu_median")
    result["throughput_sample_steps_per_s"] = {
        k: B * T / v["median"] for k, v in times.items() if k.startswith(("ours", "reference", "spikingjelly", "ann_f"))
    }
    if "ann_forward" in result["throughput_sample_steps_per_s"]:
        del result["throughput_sample_steps_per_s"]["ann_forward"]
    return result


def ratios(times: dict, stat: str = "median") -> dict:
    """Every ratio the targets talk about, from each row's ``stat`` (median or min)."""

    def med(k: str) -> float | None:
        return times[k].get(stat, times[k]["median"]) if k in times else None

    r: dict = {}
    ours = med("ours_auto")
    sweep = {k: med(k) for k in times if k.startswith("ours_chunk_")}
    if sweep:
        best = min(sweep, key=sweep.get)
        r["best_time_chunk"] = times[best]["time_chunk"]
        r["best_over_auto_time"] = sweep[best] / ours if ours else None
    sj = {k: med(k) for k in ("spikingjelly_single_step", "spikingjelly_multi_step") if med(k)}
    if ours:
        for k, v in sj.items():
            r[f"throughput_ours_over_{k}"] = v / ours  # > 1: ours is faster
        if sj:
            r["throughput_ours_over_spikingjelly_best"] = min(sj.values()) / ours
        if med("reference_naive"):
            r["throughput_ours_over_reference_naive"] = med("reference_naive") / ours
        if med("ours_chunk_1"):
            r["throughput_ours_over_ours_per_step"] = med("ours_chunk_1") / ours
        if med("ann_forward_x_T"):
            r["ours_over_T_x_ann_forward"] = ours / med("ann_forward_x_T")
        if med("curve_one_pass"):
            r["curve_one_pass_over_one_T_max_run"] = med("curve_one_pass") / ours
        if med("ours_signed_auto"):
            r["signed_over_if_time"] = med("ours_signed_auto") / ours
        if med("ours_eager_auto"):
            r["fused_over_eager_time"] = ours / med("ours_eager_auto")  # < 1: the fused update is faster
        if med("ours_before"):
            r["ours_over_before_time"] = ours / med("ours_before")  # < 1: faster than the engine before
    if med("ours_signed_auto") and med("ours_signed_eager_auto"):
        r["signed_fused_over_eager_time"] = med("ours_signed_auto") / med("ours_signed_eager_auto")
    if med("curve_one_pass") and med("curve_per_T_runs"):
        r["curve_one_pass_over_per_T_runs"] = med("curve_one_pass") / med("curve_per_T_runs")
    return r


TARGETS = (
    ("throughput_ours_over_spikingjelly_best", ">=", 2.0, "ours >= 2x SpikingJelly throughput (its best mode)"),
    ("ours_over_T_x_ann_forward", "<=", 1.05, "ours <= 1.05x of T x ANN forward (issue 22: by CPU time)"),
    ("ours_over_before_time", "<", 1.0, "ours (fused) faster than the engine before it"),
    ("curve_one_pass_over_one_T_max_run", "<=", 1.1, "whole T curve <= 1.1x of one T_max run"),
)


def report(result: dict) -> str:
    """The human-readable tables (markdown), as printed and pasted into docs/BENCHMARKS.md."""
    cfg, times, r, r_min = result["config"], result["times_s"], result["ratios"], result.get("ratios_of_min", {})
    T, B = cfg["T"], cfg["batch_size"]
    m, load = result["machine"], result["load_average"]
    lines = [
        f"**{cfg['arch']} width {cfg['width']}, batch {B}, T {T}, {cfg['device']} {cfg['dtype']}, "
        f"{cfg['repeats']} rounds** -- {m['cpu_model']}, {m['torch_num_threads']} torch thread(s)"
        + (f", {m['gpu']}" if "gpu" in m else "")
        + f"; torch {m['torch']}, python {m['python']}, spikingjelly {m['spikingjelly']}; "
        f"load avg (1 min) before {load['before'][0]:.2f}, after {load['after'][0]:.2f}; heap: {cfg.get('heap', '?')}",
        "",
        "| row | median s | min s | CPU s (median) | sample-steps/s (median) | time / ours_auto (median) "
        "| minor faults |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    ours = times.get("ours_auto", {}).get("median")
    for k, v in times.items():
        if k == "ann_forward":
            continue  # = ann_forward_x_T / T
        label = k + (f" (chunk {v['time_chunk']})" if "time_chunk" in v else "")
        if "timesteps" in v:
            label += f" (T = {','.join(map(str, v['timesteps']))})"
        tp = f"{B * T / v['median']:,.0f}" if not k.startswith("curve") else ""
        rel = f"{v['median'] / ours:.2f}x" if ours else ""
        cpu = f"{v['cpu_median']:.3f}" if "cpu_median" in v else ""
        faults = f"{v['minor_faults_median']:,.0f}" if "minor_faults_median" in v else ""
        lines.append(
            f"| {label} | {v['median']:.3f} | {v.get('min', v['median']):.3f} | {cpu} | {tp} | {rel} | {faults} |"
        )
    r_cpu = result.get("ratios_of_cpu_time", {})
    lines += ["", "| ratio | from medians | from minima | from CPU time |", "|---|---:|---:|---:|"]
    for k, v in r.items():
        fmt = (lambda z: f"{z:.3f}") if isinstance(v, float) else str
        cells = [fmt(d[k]) if d.get(k) is not None else "" for d in (r, r_min, r_cpu)]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "| target | medians | CPU time | met (by CPU time) |", "|---|---:|---:|:---:|"]
    compare = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}
    for key, op, bound, text in TARGETS:
        if r.get(key) is not None:
            by_cpu = r_cpu.get(key)
            ok = compare[op](by_cpu if by_cpu is not None else r[key], bound)
            cpu = f"{by_cpu:.3f}" if by_cpu is not None else ""
            lines.append(f"| {text} | {r[key]:.3f} | {cpu} | {'yes' if ok else 'NO'} |")
    build = result.get("fused_build", {})
    if build:
        lines += ["", "fused kernel build: " + json.dumps(build)]
    lines += ["", "checks: " + json.dumps(result["checks"])]
    for n in result["notes"]:
        lines.append(f"note: {n}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = run(args)
    print()
    print(report(result))
    if args.json:
        sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when imported by a test
        from study import write_json  # no machine paths in a committed file

        write_json(Path(args.json), result)
        print(f"\nwrote {args.json}")
    return result


if __name__ == "__main__":
    main()
