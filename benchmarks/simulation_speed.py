"""How fast is the SNN simulation? One model, one batch, one machine, every engine side by side.

The rows (ours at a sweep of ``time_chunk``, eager and signed variants, the engine before issue 22,
the naive reference, SpikingJelly, T ANN forwards, the accuracy curve), the method and the results:
docs/BENCHMARKS.md. Timings only; every number goes to ``--json``.

    python benchmarks/simulation_speed.py --width 0.25 --batch-size 64 --T 64 --repeats 3 --threads 1 \
        --profile --json benchmarks/results/cpu_vgg16_w0.25_b64_T64.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # study.py, also where a test imports this file
from sections import table  # noqa: E402
from study import cifar_images, interleaved, machine_record, write_json  # noqa: E402  (puts this checkout first on sys.path)

from lightning_snn import fused  # noqa: E402
from lightning_snn.activations import CONVERTIBLE_ACTIVATIONS, set_threshold_enabled  # noqa: E402
from lightning_snn.chunking import auto_time_chunk, largest_activation_bytes  # noqa: E402
from lightning_snn.constant_input import constant_prefix  # noqa: E402
from lightning_snn.conversion import calibrate_thresholds, convert  # noqa: E402
from lightning_snn.graph import set_submodule  # noqa: E402
from lightning_snn.heap import heap_kept, keep_freed_memory  # noqa: E402
from lightning_snn.models import create_model  # noqa: E402
from lightning_snn.reference import simulate_reference  # noqa: E402
from lightning_snn.simulation import SpikingEvaluator, simulate  # noqa: E402

ALL_METHODS = ("ours", "eager", "reference", "spikingjelly", "ann", "curve", "signed")
SJ_ROWS = ("spikingjelly_single_step", "spikingjelly_multi_step")
#: "auto" before issue 22 (batch size only), for the ``ours_before`` row
OLD_AUTO_TIME_CHUNK = {"cpu": lambda batch: 1 if batch >= 128 else 8, "cuda": lambda batch: 32}
#: torch.profiler op names (substrings, lower case) -> family; the first family that matches counts
FAMILIES = {
    "dense (conv/linear/pool)": "conv mkldnn addmm aten::mm avg_pool gemm cudnn cutlass xmma sm90 sm80 event_".split(),
    # fused_if: our fused IF kernel (CPU: named by record_function; CUDA: the Triton kernel if_kernel)
    "elementwise (IF neuron, clamp)": "aten::add aten::sub aten::mul aten::ge aten::clamp aten::relu elementwise "
    "fused_if if_kernel".split(),
    "readout": "aten::cumsum aten::div aten::stack scan".split(),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="vgg16", help="registered model name")
    p.add_argument("--width", type=float, default=0.25, help="channel multiplier")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--T", type=int, default=128, help="simulation length (= T_max of the curve)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds; the median is reported")
    p.add_argument("--chunks", default="1,2,4,8,16,32", help="time_chunk sweep, comma separated")
    p.add_argument("--methods", default=",".join(ALL_METHODS), help=f"rows, comma separated, from {ALL_METHODS}")
    p.add_argument("--sj-time-chunk", type=int, default=0, help="feed SpikingJelly's multi-step mode N steps at once")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--fused", default="on", choices=["on", "auto"], help="auto: eager where no fused kernel")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--build-time", action="store_true", help="CPU: time the kernel's build and load in new processes")
    p.add_argument("--heap", default="keep", choices=["keep", "trim"], help="keep freed memory (as train.py) or not")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave as is)")
    p.add_argument("--data-dir", default=None, help="a folder with train.npz/test.npz: real CIFAR images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="torch.profiler top ops of ours (auto) and T x ANN")
    p.add_argument("--json", default=None, help="write every number to this JSON file")
    args = p.parse_args(argv)
    args.chunk_list = [int(c) for c in args.chunks.split(",") if c.strip()]
    args.method_set = {m.strip() for m in args.methods.split(",") if m.strip()}
    if unknown := args.method_set - set(ALL_METHODS):
        p.error(f"unknown method(s) {sorted(unknown)}; choose from {list(ALL_METHODS)}")
    if min(args.T, args.batch_size, args.repeats) <= 0:
        p.error("--T, --batch-size and --repeats must be > 0")
    return args


def curve_timesteps(t_max: int, t_min: int = 16) -> list[int]:
    """Powers of two from ``t_min`` up to ``t_max`` (plus ``t_max``); from ``t_max // 4`` for tiny T."""
    t = t_min if t_max >= 2 * t_min else max(1, t_max // 4)
    return sorted({t_max} | {t << k for k in range(64) if t << k <= t_max})


def build(args: argparse.Namespace, device: torch.device, dtype: torch.dtype):
    """The ANN (threshold ReLU on), its thresholds, the calibration batch (64 images) and the input batch."""
    torch.manual_seed(args.seed)
    model = create_model(args.arch, width=args.width).eval()
    set_threshold_enabled(model, True)
    model = model.to(device=device, dtype=dtype)
    sizes, gen = (("train", 64), ("test", args.batch_size)), torch.Generator().manual_seed(args.seed + 1)
    if args.data_dir:
        calib, x = (cifar_images(args.data_dir, split, n)[0] for split, n in sizes)
    else:
        calib, x = (torch.randn(n, 3, 32, 32, generator=gen) for _, n in sizes)
    calib, x = calib.to(device=device, dtype=dtype), x.to(device=device, dtype=dtype)
    return model, calibrate_thresholds(model, [calib]), calib, x


# ---- SpikingJelly -------------------------------------------------------------------------------
def spikingjelly_convert(model: nn.Module, calib: torch.Tensor, device: torch.device) -> nn.Module:
    """SpikingJelly 2's ann2snn (``mode="max"``) on a copy with ``nn.ReLU`` activations, calibrated on one batch."""
    from spikingjelly.activation_based import ann2snn

    ann = copy.deepcopy(model)
    for name, m in list(ann.named_modules()):
        if isinstance(m, CONVERTIBLE_ACTIVATIONS) and type(m) is not nn.ReLU:
            set_submodule(ann, name, nn.ReLU())
    converter = ann2snn.Converter(ann2snn.RateCodingRecipe(dataloader=[calib], mode="max"), device=device)
    return converter.convert(ann).eval()


def sj_run(net: nn.Module, x: torch.Tensor, T: int, chunk: int | None = None) -> torch.Tensor:
    """Mean output over T steps: single-step (``chunk=None``, a loop over T) or multi-step, the input
    repeated to ``[steps, B, ...]`` in chunks of ``chunk`` steps (0: all T at once)."""
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    total, done, chunk = 0, 0, None if chunk is None else (chunk if chunk > 0 else T)
    while done < T:
        steps = 1 if chunk is None else min(chunk, T - done)
        total = total + (net(x) if chunk is None else net(x.unsqueeze(0).repeat(steps, *([1] * x.dim()))).sum(0))
        done += steps
    functional.reset_net(net)
    return total / T


def spikingjelly_rows(args, model, calib, x, device, result) -> dict:
    """SpikingJelly's single-step row and, if its converted graph runs multi-step, its multi-step row."""
    notes, T, sc = result["notes"], args.T, args.sj_time_chunk

    def note(text: str) -> dict:
        notes.append(text)
        print("NOTE: " + text)
        return {}

    if result["machine"]["spikingjelly"] is None:
        return note("spikingjelly is not installed (pip install -e '.[bench]'): its rows are skipped")
    from spikingjelly.activation_based import functional

    try:
        with torch.inference_mode(False), torch.no_grad():  # its calibration hooks keep state
            sj = spikingjelly_convert(model, calib, device)
    except Exception as exc:  # report, do not hide: the other rows still count
        return note(f"spikingjelly ann2snn conversion failed: {type(exc).__name__}: {exc}")
    result["spikingjelly_modules"] = sorted({type(m).__name__ for m in sj.modules()})
    functional.set_step_mode(sj, "s")
    rows = {"spikingjelly_single_step": (lambda: sj_run(sj, x, T), lambda: sj_run(sj, x, min(T, 2)), {})}
    sj_m = copy.deepcopy(sj)  # its own copy: the two modes never share a step-mode switch
    try:
        functional.set_step_mode(sj_m, "m")
        if not torch.allclose(sj_run(sj_m, x, min(T, 4), sc), sj_run(sj, x, min(T, 4)), atol=1e-4, rtol=1e-4):
            raise RuntimeError("its multi-step output differs from its single-step output")
    except Exception as exc:
        note(f"spikingjelly multi-step mode not measured: {type(exc).__name__}: {exc}")
        return rows
    warm_t = T if sc <= 0 else min(T, 2 * sc)
    multi = (lambda: sj_run(sj_m, x, T, sc), lambda: sj_run(sj_m, x, warm_t, sc))
    rows["spikingjelly_multi_step"] = (*multi, {"time_chunk": sc if sc > 0 else T})
    return rows


# ---- measuring ----------------------------------------------------------------------------------
def agreement(a: torch.Tensor, b: torch.Tensor, bits: bool = False) -> dict:
    pa, pb = a.argmax(-1), b.argmax(-1)
    out = {"predictions_equal": bool(torch.equal(pa, pb)), "prediction_agreement": float((pa == pb).float().mean())}
    out["max_abs_diff"] = float((a - b).abs().max())
    return {**out, "bit_identical": bool(torch.equal(a, b))} if bits else out


def profile_top_ops(fn, device: torch.device, rows: int = 12) -> dict:
    """Run ``fn`` once under torch.profiler; the top ops by self time, and time per op family."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize(device)
    averages = prof.key_averages()
    sort_key, attr = ("self_cuda_time_total", "self_device_time_total") if cuda else ("self_cpu_time_total",) * 2
    families = dict.fromkeys([*FAMILIES, "other"], 0.0)
    for e in averages:
        family = next((f for f, keys in FAMILIES.items() if any(k in e.key.lower() for k in keys)), "other")
        families[family] += float(getattr(e, attr, getattr(e, "self_cuda_time_total", 0.0)))
    return {
        "table": averages.table(sort_by=sort_key, row_limit=rows),
        "self_time_s": {k: v / 1e6 for k, v in families.items()},  # profiler times are in microseconds
    }


def with_modes(fn, before: bool = False):
    """``fn`` run with the eager IF update; ``before``: also every layer every chunk (the engine before issue 22)."""

    def run():
        with fused.fused_mode("off"), constant_prefix(False) if before else contextlib.nullcontext():
            return fn()

    return run


def fused_build_info(device: torch.device, dtype: torch.dtype, fresh_processes: bool = False) -> dict:
    """What the fused kernel costs before the first simulation: on the CPU the C library's build
    from an empty cache and its load from the cache, each in a fresh process; on CUDA the Triton
    compile of each variant, launched once on a tiny neuron here."""
    info: dict = {"unavailable_reason": fused.unavailable_reason(device, dtype), "this_process": fused.BUILD_INFO}
    if device.type == "cpu" and fresh_processes:
        code = "from lightning_snn import fused; fused.cpu_kernels(); import json; print(json.dumps(fused.BUILD_INFO))"
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "LIGHTNING_SNN_CACHE": cache}
            for key in ("cold", "cached"):  # the second process finds the first one's library
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
                info[f"{key}_process_s"] = time.perf_counter() - t0  # with Python and torch's import
                out = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else None
                info[key] = json.loads(out).get("cpu") if out else {"error": proc.stderr[-500:]}
    elif device.type == "cuda" and info["unavailable_reason"] is None:  # each Triton variant, once
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
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    load_before, T, B, methods = os.getloadavg(), args.T, args.batch_size, args.method_set
    model, thresholds, calib, x = build(args, device, dtype)
    ts = curve_timesteps(T)
    bytes_per_sample = largest_activation_bytes(model, x)
    auto_chunk = auto_time_chunk(device, B, bytes_per_sample)  # after a first chunk of one step
    old_chunk = OLD_AUTO_TIME_CHUNK[device.type](B)
    fused.set_fused_mode(args.fused)
    config = dict(arch=args.arch, width=args.width, batch_size=B, T=T, repeats=args.repeats)
    config.update(time_chunks=args.chunk_list, auto_time_chunk=auto_chunk)
    config.update(largest_activation_bytes_per_sample=bytes_per_sample, old_auto_time_chunk=old_chunk)
    config.update(fused_mode=args.fused, curve_timesteps=ts, device=str(device), dtype=args.dtype)
    config["input"] = f"CIFAR test images from {args.data_dir}" if args.data_dir else "random normal"
    config.update(shift="membrane", heap=heap, parameters=sum(p.numel() for p in model.parameters()), argv=sys.argv[1:])
    result: dict = {"config": config, "machine": {**machine_record(device), "spikingjelly": None}}
    with contextlib.suppress(PackageNotFoundError):  # None: not installed, its rows are skipped with a note
        result["machine"]["spikingjelly"] = version("spikingjelly")
    result.update(fused_build=fused_build_info(device, dtype, args.build_time), times_s={}, checks={}, notes=[])
    times, checks = result["times_s"], result["checks"]
    print(f"# {args.arch} width {args.width}, batch {B}, T {T}, {device} {args.dtype}, repeats {args.repeats}")
    rows: dict = {}  # key -> (timed fn, warm-up fn, info recorded with its times)
    with torch.inference_mode():

        def evaluator(timesteps: list[int], chunk: int | str, neuron: str = "if") -> SpikingEvaluator:
            return SpikingEvaluator(model, thresholds, timesteps, shift="membrane", time_chunk=chunk, neuron=neuron)

        ev = evaluator([T], "auto")
        snn = convert(model, thresholds, shift="membrane")  # for warm-ups and checks, same network

        def warm(c: int, net=snn):
            return lambda: simulate(net, x, [min(T, 2 * c + 1)], c)  # every chunk shape, shorter T

        auto = {"time_chunk": auto_chunk}
        rows["ours_auto"] = (lambda: ev(x), warm(auto_chunk), auto)  # always timed: every ratio is relative to it
        if "eager" in methods:
            rows["ours_eager_auto"] = (with_modes(lambda: ev(x)), with_modes(warm(auto_chunk)), auto)
            old = evaluator([T], old_chunk)
            before = (with_modes(lambda: old(x), True), with_modes(warm(old_chunk), True))
            rows["ours_before"] = (*before, {"time_chunk": old_chunk})
        if "ours" in methods:
            for c in args.chunk_list:
                e = evaluator([T], c)
                rows[f"ours_chunk_{c}"] = (lambda e=e: e(x), warm(c), {"time_chunk": c})
        if "signed" in methods:
            signed = evaluator([T], "auto", "signed")
            warm_s = lambda: simulate(signed.snns[0], x, [min(T, 2 * auto_chunk)], auto_chunk)  # noqa: E731
            rows["ours_signed_auto"] = (lambda: signed(x), warm_s, auto)
            if "eager" in methods:
                rows["ours_signed_eager_auto"] = (with_modes(lambda: signed(x)), with_modes(warm_s), auto)
        if "reference" in methods:
            rows["reference_naive"] = (lambda: simulate_reference(snn, x, T), lambda: simulate_reference(snn, x, 2), {})
        if "spikingjelly" in methods:
            rows.update(spikingjelly_rows(args, model, calib, x, device, result))
        if "ann" in methods:
            rows["ann_forward_x_T"] = (lambda: [model(x) for _ in range(T)], lambda: model(x), {})
        if "curve" in methods:
            curve_ev, per_t = evaluator(ts, "auto"), [evaluator([t], "auto") for t in ts]
            rows["curve_one_pass"] = (lambda: curve_ev(x), warm(auto_chunk), {"timesteps": ts})
            rows["curve_per_T_runs"] = (lambda: [e(x) for e in per_t], warm(auto_chunk), {"timesteps": ts})

        print("timing: " + ", ".join(rows), flush=True)
        skipped: dict[str, str] = {}
        fns, warms = {k: r[0] for k, r in rows.items()}, {k: r[1] for k, r in rows.items()}
        measured = interleaved(fns, args.repeats, sync, warms, lambda m: print(m, flush=True), skipped)
        for k, m in measured.items():
            times[k] = {"median": statistics.median(m["wall"]), "min": min(m["wall"]), "runs": m["wall"]}
            times[k].update(cpu_median=statistics.median(m["cpu"]), cpu_runs=m["cpu"])
            times[k].update(minor_faults_median=statistics.median(m["faults"]), **rows[k][2])
        result["notes"] += [f"row {k} dropped: {v}" for k, v in skipped.items()]
        # --- do the engines agree? (on the timed runs' own outputs) -----------------------------
        out = {k: m["out"] for k, m in measured.items() if m["out"] is not None}
        ours_out = out["ours_auto"][0] if "ours_auto" in out else ev(x)[0]
        per_step = out["ours_chunk_1"][0] if "ours_chunk_1" in out else simulate(snn, x, [T], 1)[0]
        checks["ours_chunked_vs_per_step"] = agreement(ours_out, per_step)
        if "ours_eager_auto" in out:  # the fused update is exact: the same spikes, so the same outputs
            checks["fused_vs_eager"] = agreement(ours_out, out["ours_eager_auto"][0], bits=True)
        if "ours_before" in out:  # bit-identical where both run the same chunks (else float rounding)
            checks["ours_vs_before"] = agreement(ours_out, out["ours_before"][0], bits=True)
        if "ours_signed_eager_auto" in out and "ours_signed_auto" in out:
            signed_out = out["ours_signed_auto"][0], out["ours_signed_eager_auto"][0]
            checks["signed_fused_vs_eager"] = agreement(*signed_out, bits=True)
        if "reference_naive" in out:
            checks["ours_vs_reference"] = agreement(ours_out, out["reference_naive"])
        if "spikingjelly_single_step" in out:  # SpikingJelly's IF starts at v = 0: our no-shift SNN, same thresholds
            ours_noshift = simulate(convert(model, thresholds, shift="none"), x, [T], "auto")[0]
            checks["spikingjelly_vs_ours_noshift"] = agreement(out["spikingjelly_single_step"], ours_noshift)
        if "curve_one_pass" in out and "curve_per_T_runs" in out:
            curve, per_t_out = out["curve_one_pass"], out["curve_per_T_runs"]
            checks["curve_equals_per_T_runs"] = all(torch.allclose(curve[i], o[0]) for i, o in enumerate(per_t_out))
        if "ann_forward_x_T" in times:
            times["ann_forward"] = {k: times["ann_forward_x_T"][k] / T for k in ("median", "min", "cpu_median")}
        if args.profile:
            result["profile"] = {
                "ours_auto": profile_top_ops(lambda: ev(x), device),
                "ann_forward_x_T": profile_top_ops(lambda: [model(x) for _ in range(T)], device),
            }
            for key in [k for k in rows if k.startswith("spikingjelly")]:  # its own overhead or the dense layers?
                result["profile"][key] = profile_top_ops(rows[key][0], device)
            for name, prof in result["profile"].items():
                print(f"\n## torch.profiler: {name} (self time, s: {prof['self_time_s']})\n{prof['table']}")

    result["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    result["ratios"] = ratios(times, "median")
    result["ratios_of_cpu_time"] = ratios(times, "cpu_median")  # one thread: hardly depends on other jobs
    return result


#: ratio -> (row a, row b): a's time / b's time ("throughput_ours_over_<b>": > 1, ours is faster)
RATIOS = {
    **{f"throughput_ours_over_{k}": (k, "ours_auto") for k in SJ_ROWS + ("reference_naive",)},
    "throughput_ours_over_ours_per_step": ("ours_chunk_1", "ours_auto"),
    "ours_over_T_x_ann_forward": ("ours_auto", "ann_forward_x_T"),
    "curve_one_pass_over_one_T_max_run": ("curve_one_pass", "ours_auto"),
    "signed_over_if_time": ("ours_signed_auto", "ours_auto"),
    "fused_over_eager_time": ("ours_auto", "ours_eager_auto"),  # < 1: the fused update is faster
    "ours_over_before_time": ("ours_auto", "ours_before"),  # < 1: faster than the engine before
    "signed_fused_over_eager_time": ("ours_signed_auto", "ours_signed_eager_auto"),
    "curve_one_pass_over_per_T_runs": ("curve_one_pass", "curve_per_T_runs"),
}


def ratios(times: dict, stat: str) -> dict:
    """Every ratio of :data:`RATIOS` whose rows ran, and the best chunk of the sweep, from each row's ``stat``."""
    r = {k: times[a][stat] / times[b][stat] for k, (a, b) in RATIOS.items() if a in times and b in times}
    sweep = [k for k in times if k.startswith("ours_chunk_")]
    if sweep and "ours_auto" in times:
        best = min(sweep, key=lambda k: times[k][stat])
        r["best_time_chunk"] = times[best]["time_chunk"]
        r["best_over_auto_time"] = times[best][stat] / times["ours_auto"][stat]
    if sj := [times[k][stat] for k in SJ_ROWS if k in times and "ours_auto" in times]:
        r["throughput_ours_over_spikingjelly_best"] = min(sj) / times["ours_auto"][stat]
    return r


def report(result: dict) -> str:
    """What a run prints: each row's times, the ratios, the checks and notes (docs/BENCHMARKS.md renders the JSON)."""
    times, rows = result["times_s"], []
    ours = times.get("ours_auto", {}).get("cpu_median")
    for k, v in ((k, v) for k, v in times.items() if k != "ann_forward"):
        cells = [f"{v[stat]:.3f}" for stat in ("median", "min", "cpu_median")]
        relative = f"{v['cpu_median'] / ours:.2f}x" if ours else ""
        rows.append([k, str(v.get("time_chunk", "")), *cells, relative, f"{v['minor_faults_median']:,.0f}"])
    header = ["row", "chunk", "median s", "min s", "CPU s (median)", "CPU time / ours_auto", "minor faults"]
    lines = [table(header, rows), "", f"ratios of medians: {json.dumps(result['ratios'])}"]
    lines += [f"ratios of CPU time: {json.dumps(result['ratios_of_cpu_time'])}", ""]
    lines += [f"fused kernel build: {json.dumps(result['fused_build'])}", f"checks: {json.dumps(result['checks'])}"]
    return "\n".join(lines + [f"note: {n}" for n in result["notes"]])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = run(args)
    print("\n" + report(result))
    if args.json:
        write_json(Path(args.json), result)  # no machine paths in a committed file
        print(f"\nwrote {args.json}")
    return result


if __name__ == "__main__":
    main()
