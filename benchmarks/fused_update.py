"""The IF update alone: the fused kernel vs the eager update, one layer's chunk, interleaved, per
``BxCxHxW:steps`` shape, IF and signed neuron, spike counting off and on; checks both give the same
spikes, membranes and counts bit for bit. Timings only; method and results: docs/BENCHMARKS.md.

    python benchmarks/fused_update.py --json benchmarks/results/cpu_fused_update.json
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from sections.speed import fused_update as fused_update_table
from study import machine_record, write_json  # (also puts this checkout first on sys.path)

from lightning_snn import fused
from lightning_snn.neurons import IFNeuron, SignedIFNeuron

DEFAULT_SHAPES = "256x16x32x32:1,64x16x32x32:2,8x64x32x32:4,256x128x4x4:1"


def one_call(neuron: IFNeuron, current: torch.Tensor, batch: int, steps: int, record: bool, mode: str):
    """A fresh neuron state, then one chunk in ``mode``: (CPU seconds, output, membrane, counts)."""
    neuron.reset()
    neuron.batch_size, neuron.steps, neuron.record_spikes = batch, steps, record
    with fused.fused_mode(mode):
        t0 = time.process_time()
        out = neuron(current)
        seconds = time.process_time() - t0
    return seconds, out, neuron.v, neuron.spike_count


def measure(shape: tuple[int, ...], steps: int, signed: bool, record: bool, repeats: int, seed: int) -> dict:
    batch = shape[0]
    gen = torch.Generator().manual_seed(seed)
    # from v = 0.5: 7% of the currents cross the threshold in one step (0.5 to 0.6 of it), the rest
    # charge 0 to 0.3; "spike_rate" records the fraction of nonzero outputs the timed chunk produced
    shape_t = (steps * batch, *shape[1:])
    fire = torch.rand(shape_t, generator=gen) < 0.07
    crossing, below = 0.5 + 0.1 * torch.rand(shape_t, generator=gen), 0.3 * torch.rand(shape_t, generator=gen)
    current = torch.where(fire, crossing, below)
    current -= 0.02 if signed else 0.0
    neuron = (SignedIFNeuron if signed else IFNeuron)(1.0, v_init=0.5)
    times: dict[str, list[float]] = {"fused": [], "eager": []}
    results = {}
    with torch.inference_mode():
        for mode in ("on", "off"):  # warm-up (and the fused kernel's build or load)
            one_call(neuron, current, batch, steps, record, mode)
        for i in range(repeats):
            order = (("fused", "on"), ("eager", "off"))
            for name, mode in order if i % 2 == 0 else order[::-1]:
                seconds, out, v, count = one_call(neuron, current, batch, steps, record, mode)
                times[name].append(seconds)
                results[name] = (out.clone(), v.clone(), None if count is None else count.clone())
    f, e = results["fused"], results["eager"]
    identical = torch.equal(f[0], e[0]) and torch.equal(f[1], e[1]) and (f[2] is None or torch.equal(f[2], e[2]))
    fused_s, eager_s = statistics.median(times["fused"]), statistics.median(times["eager"])
    row = {"shape": list(shape), "steps": steps, "neuron": "signed" if signed else "if", "record_spikes": record}
    row["megabytes_per_step"] = batch * current[0].numel() * current.element_size() / 2**20
    row.update(cpu_s={"fused": fused_s, "eager": eager_s}, runs=times, fused_over_eager=fused_s / eager_s)
    return {**row, "spike_rate": float(f[0].ne(0).float().mean()), "bit_identical": bool(identical)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"BxCxHxW:steps, comma separated ({DEFAULT_SHAPES})")
    p.add_argument("--repeats", type=int, default=21, help="timed calls per engine (interleaved); the median")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.repeats <= 0:
        p.error("--repeats must be > 0")
    try:  # "BxCxHxW:steps,..." -> [((B, C, H, W), steps), ...]
        shapes = [
            (tuple(map(int, d.split("x"))), int(n or 1))
            for d, _, n in (i.partition(":") for i in args.shapes.split(","))
        ]
    except ValueError:
        p.error(f"--shapes: {args.shapes!r} is not BxCxHxW:steps,... (e.g. 256x16x32x32:1)")
    torch.set_num_threads(args.threads)
    fused.set_fused_mode("on")  # the fused rows must be fused: raise rather than time eager twice
    load_before = os.getloadavg()
    rows = []
    for (shape, steps), signed, record in itertools.product(shapes, (False, True), (False, True)):
        print(f"{shape} x {steps} steps, {'signed' if signed else 'if'} neuron, counting {record}", flush=True)
        rows.append(measure(shape, steps, signed, record, args.repeats, args.seed))
    config = {"repeats": args.repeats, "threads": args.threads, "seed": args.seed, "argv": sys.argv[1:]}
    load = {"before": list(load_before), "after": list(os.getloadavg())}
    result = {"config": config, "machine": machine_record(), "fused_build": fused.BUILD_INFO, "load_average": load}
    result["rows"] = rows
    print(fused_update_table(None, result))  # the table docs/BENCHMARKS.md renders from this JSON
    if args.json:
        write_json(Path(args.json), result)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
