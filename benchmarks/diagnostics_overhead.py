"""What do the diagnostics cost? Their unit costs against one simulation step, same batch (CPU).

The minimum over ``--repeats`` runs of one simulation step, one read of the counts at a T, the ANN
pass with its per-layer statistics (once per batch) and the spiking max-pools' per-step output sums;
the extra time for a T list is ``(len(T) x read + ANN pass + T_max x pool sums) / (T_max x step)``.
Timings only; the result is quoted in docs/DIAGNOSTICS.md.

    python benchmarks/diagnostics_overhead.py --arch vgg11 --width 0.25 --batch-size 256 --T 512 \
        --json benchmarks/results/diagnostics_unit_costs_cpu_vgg11_w0.25_b256.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # study.py, also where a test imports this file
from study import machine_record, write_json  # noqa: E402  (puts this checkout first on sys.path)

from lightning_snn.activations import set_threshold_enabled  # noqa: E402
from lightning_snn.chunking import largest_activation_bytes  # noqa: E402
from lightning_snn.conversion import calibrate_thresholds, convert  # noqa: E402
from lightning_snn.diagnostics import DiagnosticsProbe, _PoolSum, synapse_map  # noqa: E402
from lightning_snn.models import create_model  # noqa: E402
from lightning_snn.simulation import resolve_time_chunk, simulate  # noqa: E402

PARTS = ("reads", "ann_statistics", "max_pool_sums")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="vgg11")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--T", type=int, default=512, help="T_max; the curve reads 16, 32, ..., T_max")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    chunk = "auto"  # as the conversion callback: one step, then the memory rule
    torch.manual_seed(0)
    model = create_model(args.arch, width=args.width).eval()
    set_threshold_enabled(model, True)
    x = torch.randn(args.batch_size, 3, 32, 32)
    snn = convert(model, calibrate_thresholds(model, [torch.randn(64, 3, 32, 32)]))
    ts = sorted({args.T} | {16 << k for k in range(64) if 16 << k <= args.T})
    spent = dict.fromkeys(PARTS, 0.0)  # wall time in the probe's own work, by part

    def timed(name: str, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            spent[name] += time.perf_counter() - t0
            return out

        return wrapper

    steps = 8
    probe = DiagnosticsProbe(snn, model, [steps], chunk)
    probe.synapses = synapse_map(snn, x)
    # the probe's private parts, wrapped to time them: no public hook reports them (a benchmark's need only)
    probe._read, probe._ann_targets = timed("reads", probe._read), timed("ann_statistics", probe._ann_targets)
    _PoolSum.__call__ = timed("max_pool_sums", _PoolSum.__call__)
    step, parts = [], {k: [] for k in PARTS}
    simulate(snn, x, [steps], chunk)  # warm-up
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        simulate(snn, x, [steps], chunk)
        step.append((time.perf_counter() - t0) / steps)
        spent.update(dict.fromkeys(PARTS, 0.0))
        probe(x)
        for k, v in spent.items():
            parts[k].append(v)
    s, read, ann = min(step), min(parts["reads"]), min(parts["ann_statistics"])
    pools = min(parts["max_pool_sums"]) / steps
    extra = (len(ts) * read + ann + ts[-1] * pools) / (ts[-1] * s)
    chunk_used = resolve_time_chunk(chunk, torch.device("cpu"), args.batch_size, largest_activation_bytes(model, x))
    result = {"arch": args.arch, "width": args.width, "batch_size": args.batch_size, "timesteps": ts}
    result.update(time_chunk=chunk_used, machine=machine_record(), step_s=s, read_s=read, ann_statistics_s=ann)
    result.update(max_pool_sums_per_step_s=pools, read_in_steps=read / s, ann_statistics_in_steps=ann / s)
    result["overhead"] = extra
    print(
        f"{args.arch} width {args.width}, batch {args.batch_size}, chunk {chunk_used}: step {1e3 * s:.1f} ms; a read "
        f"{1e3 * read:.1f} ms ({read / s:.2f} steps); the ANN pass with its statistics {1e3 * ann:.1f} ms "
        f"({ann / s:.2f} steps); max-pool sums {1e3 * pools:.2f} ms per step -> {100 * extra:.1f}% for T = {ts}"
    )
    if args.json:
        write_json(Path(args.json), result)
    return result


if __name__ == "__main__":
    main()
