"""What do the diagnostics cost? The accuracy-vs-T simulation with and without them, same batch.

Two measurements (``--mode``):

* ``unit-costs`` (default; steady on a shared machine): the minimum over ``--repeats`` runs of
  (a) one simulation step, (b) one read of the counts at a T (:class:`~lightning_snn.diagnostics.DiagnosticsProbe`
  runs the graph once on time averages and reduces every layer), (c) the ANN pass with its
  per-layer statistics (once per batch), and (d) the spiking max-pools' per-step output sums (none
  in a network with average pooling). The diagnostics' extra time for a T list is then
  ``(len(T) x read + ANN pass + T_max x pool sums) / (T_max x step)``.
* ``end-to-end``: the whole curve, :func:`lightning_snn.simulation.simulate` to ``T_max`` with a
  read at every T (``plain``) against the probe on the same SNN and batch (``diagnostics``),
  round-robin, medians of wall and process CPU time; the probe's own parts are also timed inside
  the run. On a machine shared with other jobs this difference is noisier than the effect.

The fan-out maps are built once per evaluation before the first batch (0.1-1 s on CPU): not timed.
Run from the repository root, e.g. (the quickstart's network and evaluation batch)::

    python benchmarks/diagnostics_overhead.py --arch vgg11 --width 0.25 --batch-size 256 --T 512 \
        --json benchmarks/results/diagnostics_unit_costs_cpu_vgg11_w0.25_b256.json

Timings only; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lightning_snn.activations import set_threshold_enabled
from lightning_snn.chunking import largest_activation_bytes
from lightning_snn.conversion import calibrate_thresholds, convert
from lightning_snn.diagnostics import DiagnosticsProbe, _PoolSum, synapse_map
from lightning_snn.models import create_model
from lightning_snn.simulation import resolve_time_chunk, simulate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", default="unit-costs", choices=["unit-costs", "end-to-end"])
    p.add_argument("--arch", default="vgg11")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--T", type=int, default=512, help="T_max; the curve reads 16, 32, ..., T_max")
    p.add_argument("--time-chunk", default="auto")
    p.add_argument("--repeats", type=int, default=5)
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


class PartTimer:
    """Wall time spent in the probe's own work, by part (wraps its methods and the pool hook)."""

    PARTS = ("reads", "ann_statistics", "max_pool_sums")

    def __init__(self, probe: DiagnosticsProbe, device: torch.device) -> None:
        self.device, self.spent = device, dict.fromkeys(self.PARTS, 0.0)
        probe._read = self.wrap("reads", probe._read)
        probe._ann_targets = self.wrap("ann_statistics", probe._ann_targets)
        _PoolSum.__call__ = self.wrap("max_pool_sums", _PoolSum.__call__)

    def wrap(self, name: str, fn: Callable) -> Callable:
        def wrapper(*a, **k):
            sync(self.device)
            t0 = time.perf_counter()
            out = fn(*a, **k)
            sync(self.device)
            self.spent[name] += time.perf_counter() - t0
            return out

        return wrapper

    def run(self, fn: Callable) -> dict[str, float]:
        self.spent = dict.fromkeys(self.PARTS, 0.0)
        fn()
        return dict(self.spent)


def unit_costs(args, snn, model, x, ts, device) -> dict:
    """Minimum over repeats of a step, a read, the ANN pass, and the pool sums per step."""
    steps = 8
    probe = DiagnosticsProbe(snn, model, [steps], args.time_chunk)
    probe.synapses = synapse_map(snn, x)
    timer = PartTimer(probe, device)
    step, parts = [], {k: [] for k in PartTimer.PARTS}
    simulate(snn, x, [steps], args.time_chunk)  # warm-up
    for _ in range(args.repeats):
        sync(device)
        t0 = time.perf_counter()
        simulate(snn, x, [steps], args.time_chunk)
        sync(device)
        step.append((time.perf_counter() - t0) / steps)
        for k, v in timer.run(lambda: probe(x)).items():
            parts[k].append(v)
    s, read, ann = min(step), min(parts["reads"]), min(parts["ann_statistics"])
    pools = min(parts["max_pool_sums"]) / steps
    extra = (len(ts) * read + ann + ts[-1] * pools) / (ts[-1] * s)
    return {
        "step_s": s,
        "read_s": read,
        "ann_statistics_s": ann,
        "max_pool_sums_per_step_s": pools,
        "read_in_steps": read / s,
        "ann_statistics_in_steps": ann / s,
        "overhead": extra,
        "summary": (
            f"step {1e3 * s:.1f} ms; a read {1e3 * read:.1f} ms ({read / s:.2f} steps); the ANN pass with its "
            f"statistics {1e3 * ann:.1f} ms ({ann / s:.2f} steps); max-pool sums {1e3 * pools:.2f} ms per step "
            f"-> {100 * extra:.1f}% for T = {ts}"
        ),
    }


def end_to_end(args, snn, model, x, ts, device) -> dict:
    probe = DiagnosticsProbe(snn, model, ts, args.time_chunk)
    probe.synapses = synapse_map(snn, x)
    timer = PartTimer(probe, device)
    parts = {k: [] for k in PartTimer.PARTS}

    def diagnose():
        for k, v in timer.run(lambda: probe(x)).items():
            parts[k].append(v)

    rows = {"plain": lambda: simulate(snn, x, ts, args.time_chunk), "diagnostics": diagnose}
    wall: dict[str, list[float]] = {k: [] for k in rows}
    cpu: dict[str, list[float]] = {k: [] for k in rows}
    simulate(snn, x, [16], args.time_chunk)  # warm-up
    for _ in range(args.repeats):
        for name, fn in rows.items():
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    plain, diag = statistics.median(wall["plain"]), statistics.median(wall["diagnostics"])
    plain_cpu, diag_cpu = statistics.median(cpu["plain"]), statistics.median(cpu["diagnostics"])
    inside = {k: statistics.median(v) / plain for k, v in parts.items()}
    return {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "parts_seconds": parts,
        "overhead": diag / plain - 1.0,
        "overhead_cpu_time": diag_cpu / plain_cpu - 1.0,
        "parts_over_plain": inside,
        "summary": (
            f"plain {plain:.3f}s, with diagnostics {diag:.3f}s -> {100 * (diag / plain - 1):+.1f}% (CPU time "
            f"{100 * (diag_cpu / plain_cpu - 1):+.1f}%); timed inside: "
            + ", ".join(f"{k} {100 * v:.1f}%" for k, v in inside.items())
            + " of the plain simulation"
        ),
    }


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
    measure = unit_costs if args.mode == "unit-costs" else end_to_end
    result = {
        "mode": args.mode,
        "arch": args.arch,
        "width": args.width,
        "batch_size": args.batch_size,
        "timesteps": ts,
        # "auto": one step, then this (the memory rule on the largest activation of a sample)
        "time_chunk": resolve_time_chunk(args.time_chunk, device, args.batch_size, largest_activation_bytes(model, x)),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        **measure(args, snn, model, x, ts, device),
    }
    print(f"{args.arch} width {args.width}, batch {args.batch_size}, chunk {result['time_chunk']}, {device.type}: ")
    print("  " + result["summary"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
