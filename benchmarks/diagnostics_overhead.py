"""What do the diagnostics cost? The accuracy-vs-T simulation with and without them, same batch.

Rows (each warmed up once, then timed ``--repeats`` times round-robin; medians of the wall time
and of the process CPU time reported: on a shared machine the CPU time is the steadier measure):

* ``plain``: :func:`lightning_snn.simulation.simulate` to ``T_max`` with reads at every T of the
  curve (what the conversion callback runs without diagnostics);
* ``diagnostics``: :class:`lightning_snn.diagnostics.DiagnosticsProbe` on the same SNN and batch:
  the same simulation with the per-T reads, plus the ANN forward pass that gives the per-layer
  activations (the fan-out maps are built once per evaluation, before the first batch: not timed;
  0.1-1 s on CPU).

The overhead is ``diagnostics / plain - 1`` (the issue's budget: at most 10%), by wall and by CPU time.
On a busy machine that difference is within the noise, so the diagnostics' own work is also timed
directly inside the run (``parts``): the per-T reads, the ANN pass with its per-layer statistics;
and the spiking max-pools' per-step output sums (on CUDA each timed part adds a synchronisation). Run from the
repository root, e.g. (the quickstart's network and evaluation batch)::

    python benchmarks/diagnostics_overhead.py --arch vgg11 --width 0.25 --batch-size 256 --T 512 \
        --repeats 3 --threads 2 --json benchmarks/results/diagnostics_overhead_cpu.json

Timings only; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from lightning_snn.activations import set_threshold_enabled
from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.diagnostics import DiagnosticsProbe, _PoolSum, synapse_map
from lightning_snn.models import create_model
from lightning_snn.simulation import resolve_time_chunk, simulate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="vgg11")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--T", type=int, default=512, help="T_max; the curve reads 16, 32, ..., T_max")
    p.add_argument("--time-chunk", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave as is)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--data-dir", default=None, help="a folder with test.npz: real CIFAR images instead of noise")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.time_chunk != "auto":
        args.time_chunk = int(args.time_chunk)
    return args


def images(args: argparse.Namespace, n: int, device: torch.device) -> torch.Tensor:
    if args.data_dir is None:
        return torch.randn(n, 3, 32, 32, device=device)
    import numpy as np

    data = np.load(Path(args.data_dir) / "test.npz")
    x = torch.from_numpy(data["images"][:n]).float().div(255).permute(0, 3, 1, 2)
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
    return ((x - mean.view(3, 1, 1)) / std.view(3, 1, 1)).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = create_model(args.arch, width=args.width).to(device).eval()
    set_threshold_enabled(model, True)
    x = images(args, args.batch_size, device)
    snn = convert(model, calibrate_thresholds(model, [images(args, 64, device)]))
    ts, t = [], 16
    while t <= args.T:
        ts.append(t)
        t *= 2
    ts = sorted(set(ts) | {args.T})
    probe = DiagnosticsProbe(snn, model, ts, args.time_chunk)
    parts: dict[str, list[float]] = {"reads": [], "ann_statistics": [], "max_pool_sums": []}
    spent = dict.fromkeys(parts, 0.0)

    def timed(name: str, fn):
        def wrapper(*a, **k):
            sync(device)
            t0 = time.perf_counter()
            out = fn(*a, **k)
            sync(device)
            spent[name] += time.perf_counter() - t0
            return out

        return wrapper

    probe._read = timed("reads", probe._read)
    probe._ann_targets = timed("ann_statistics", probe._ann_targets)
    _PoolSum.__call__ = timed("max_pool_sums", _PoolSum.__call__)

    def diagnose():
        spent.update(dict.fromkeys(parts, 0.0))
        probe(x)
        for k in parts:
            parts[k].append(spent[k])

    rows = {
        "plain": lambda: simulate(snn, x, ts, args.time_chunk),
        "diagnostics": diagnose,
    }
    times: dict[str, list[float]] = {k: [] for k in rows}
    cpu: dict[str, list[float]] = {k: [] for k in rows}
    probe.synapses = synapse_map(snn, x)  # once per evaluation, before the first batch: not timed
    simulate(snn, x, [16], args.time_chunk)  # warm-up
    for _ in range(args.repeats):
        for name, fn in rows.items():
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    plain, diag = statistics.median(times["plain"]), statistics.median(times["diagnostics"])
    plain_cpu, diag_cpu = statistics.median(cpu["plain"]), statistics.median(cpu["diagnostics"])
    result = {
        "arch": args.arch,
        "width": args.width,
        "batch_size": args.batch_size,
        "timesteps": ts,
        "time_chunk": resolve_time_chunk(args.time_chunk, device, args.batch_size),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "wall_seconds": times,
        "cpu_seconds": cpu,
        "median_plain_s": plain,
        "median_diagnostics_s": diag,
        "overhead": diag / plain - 1.0,
        "overhead_cpu_time": diag_cpu / plain_cpu - 1.0,
        "parts_seconds": parts,
        "parts_over_plain": {k: statistics.median(v) / plain for k, v in parts.items()},
    }
    print(
        f"{args.arch} width {args.width}, batch {args.batch_size}, T {ts}, chunk {result['time_chunk']}, "
        f"{device.type}: plain {plain:.3f}s, with diagnostics {diag:.3f}s -> overhead {100 * result['overhead']:+.1f}% "
        f"(CPU time: {plain_cpu:.3f}s vs {diag_cpu:.3f}s, {100 * result['overhead_cpu_time']:+.1f}%); timed inside: "
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in result["parts_over_plain"].items())
        + " of the plain simulation"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
