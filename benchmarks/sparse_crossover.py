"""Spikes that skip work: below which firing rate does an event-driven layer beat the dense one?

Per layer at VGG-16's sizes, on binary spikes at exact rates: the dense layer against the library's
C kernels (:mod:`lightning_snn.sparse`) and PyTorch's CSR matmul (``--unfold-csr``: im2col + CSR for
the convolutions), median CPU time, interleaved; ``--network-checkpoint`` (with ``--data-dir``) adds
the quickstart's VGG-11 on real test images, dense vs event-driven. Method and results:
docs/BENCHMARKS.md.

    python benchmarks/sparse_crossover.py --json benchmarks/results/sparse_crossover_cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # study.py, also where a test imports this file
from study import cifar_images, interleaved, machine_record, write_json  # noqa: E402  (puts this checkout first on sys.path)

from lightning_snn.activations import set_threshold_enabled  # noqa: E402
from lightning_snn.conversion import calibrate_thresholds, convert  # noqa: E402
from lightning_snn.models import create_model  # noqa: E402
from lightning_snn.neurons import IFNeuron  # noqa: E402
from lightning_snn.simulation import simulate  # noqa: E402
from lightning_snn.sparse import CROSSOVER, event_conv2d, event_linear, event_share, kernels, make_event_driven  # noqa: E402

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
#: VGG-16's classifiers (CIFAR at width 1/4 and 1; ImageNet) and a head; its 3x3 convolutions on CIFAR
#: (stride 1, padding 1): "fc in->out (...)" / "conv C_in->C_out @H=W (...)"
LAYERS = [
    "fc 128->128 (VGG-16 w/4 CIFAR)", "fc 512->512 (VGG-16 CIFAR)", "fc 512->10 (head)",
    "fc 4096->4096 (VGG-16 ImageNet)", "fc 25088->4096 (VGG-16 ImageNet)",
    "conv 16->16 @32 (w/4 block 1)", "conv 32->32 @16 (w/4 block 2)", "conv 64->64 @8 (w/4 block 3)",
    "conv 128->128 @4 (w/4 block 4)", "conv 64->64 @32 (w/1 block 1)", "conv 128->128 @16 (w/1 block 2)",
    "conv 256->256 @8 (w/1 block 3)", "conv 512->512 @4 (w/1 block 4)", "conv 512->512 @2 (w/1 block 5)",
]  # fmt: skip


def median_cpu(methods: dict, repeats: int) -> dict[str, float]:
    """Median process CPU time of each method, the methods interleaved (one warm-up call each first)."""
    return {k: statistics.median(m["cpu"]) for k, m in interleaved(methods, repeats).items()}


def crossover(rates: list[float], ratio: list[float]) -> str | float:
    """The rate where event time / dense time crosses 1 (log-log interpolation); '< r' or '> r' if never."""
    if all(q >= 1 for q in ratio):
        return f"< {rates[0]:g}"
    if all(q < 1 for q in ratio):
        return f"> {rates[-1]:g}"
    for (r0, q0), (r1, q1) in zip(zip(rates, ratio), zip(rates[1:], ratio[1:])):
        if q0 < 1 <= q1:
            f = (0 - math.log(q0)) / (math.log(q1) - math.log(q0))
            return math.exp(math.log(r0) + f * (math.log(r1) - math.log(r0)))
    return f"non-monotone: {[round(q, 3) for q in ratio]}"


def study_layer(name: str, size: tuple[int, ...], args, rates: list[float], gen: torch.Generator) -> dict:
    """Time the dense layer and each event-driven method at every rate; the ratios and crossovers."""
    conv = len(size) == 3
    if conv:
        (c_in, c_out, hw), rows = size, args.conv_rows
        weight = torch.randn(c_out, c_in, 3, 3, generator=gen) / (9 * c_in) ** 0.5
        bias, shape = torch.randn(c_out, generator=gen), (rows, c_in, hw, hw)
        wr, w2 = weight.permute(1, 2, 3, 0).contiguous(), weight.reshape(c_out, -1).t().contiguous()
    else:
        (n_in, n_out), rows = size, args.linear_rows
        weight, bias = torch.randn(n_out, n_in, generator=gen) / n_in**0.5, torch.randn(n_out, generator=gen)
        wt, shape = weight.t().contiguous(), (rows, n_in)

    def unfold_csr(x):  # im2col + CSR x dense matmul, stride 1, same size
        n, _, h, w = x.shape
        cols = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(n * h * w, -1)
        return (torch.sparse.mm(cols.to_sparse_csr(), w2) + bias).view(n, h, w, -1).permute(0, 3, 1, 2).contiguous()

    def methods_at(x: torch.Tensor) -> dict:
        if not conv:
            methods = {"dense": lambda: F.linear(x, weight, bias), "event_c": lambda: event_linear(x, wt, bias)}
            return {**methods, "csr_torch": lambda: torch.sparse.mm(x.to_sparse_csr(), wt) + bias}
        methods = {"dense": lambda: F.conv2d(x, weight, bias, padding=1)}
        methods["event_c"] = lambda: event_conv2d(x, wr, bias, (1, 1), (1, 1))
        return {**methods, "unfold_csr_torch": lambda: unfold_csr(x)} if args.unfold_csr else methods

    result = {"layer": name, "type": "conv3x3" if conv else "linear", "rows": rows, "rates": rates}
    result.update(times={}, max_rel_diff={})
    for rate in rates:  # binary spikes: exactly round(rate x numel) ones at random places
        x = torch.zeros(math.prod(shape))
        x[torch.randperm(x.numel(), generator=gen)[: round(rate * x.numel())]] = 1.0
        x = x.view(shape)
        methods = methods_at(x)
        ref = methods["dense"]()
        for k, t in median_cpu(methods, args.repeats).items():
            result["times"].setdefault(k, []).append(t)
            if k != "dense":
                diff = float((methods[k]() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
                result["max_rel_diff"][k] = max(result["max_rel_diff"].get(k, 0.0), diff)
    dense = result["times"]["dense"]
    ratios = {k: [t / d for t, d in zip(v, dense)] for k, v in result["times"].items() if k != "dense"}
    result["ratio_to_dense"], result["crossover"] = ratios, {k: crossover(rates, q) for k, q in ratios.items()}
    cross = "; ".join(f"{k} {c:.3g}" if isinstance(c, float) else f"{k} {c}" for k, c in result["crossover"].items())
    print(f"{name}: dense {statistics.median(dense) * 1e3:.2f} ms, / dense {json.dumps(ratios)}; crossover {cross}")
    return result


# ---- a real network ------------------------------------------------------------------------------------
def quickstart_network(args) -> tuple[torch.nn.Module, dict]:
    """The quickstart's VGG-11 (width 1/4, threshold ReLU), thresholds calibrated on 1000 training
    images: loaded from ``args.network_checkpoint``, else trained one epoch (Adam 2e-3, batch 128,
    the threshold on throughout) on ``args.network_train`` images and saved there."""
    torch.manual_seed(args.seed)
    model = create_model("vgg11", width=0.25, conv_dropout=0.0, fc_dropout=0.2)
    set_threshold_enabled(model, True)
    path = Path(args.network_checkpoint)
    if not path.is_file():
        x, y = cifar_images(args.data_dir, "train", args.network_train)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        model.train()
        for i in range(0, x.shape[0], 128):
            loss = F.cross_entropy(model(x[i : i + 128]), y[i : i + 128])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            thresholds = calibrate_thresholds(model, [x[:1000]])
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": model.state_dict(), "thresholds": thresholds, "train_images": x.shape[0]}, path)
    saved = torch.load(path)
    model.load_state_dict(saved["state"])
    return model.eval(), saved["thresholds"]


@torch.inference_mode()
def study_network(args, model: torch.nn.Module, thresholds: dict) -> dict:
    """Dense vs event-driven layers in the quickstart's SNN on real images (see the docstring)."""
    x, y = cifar_images(args.data_dir, "test", args.network_images)
    T, chunk = args.network_T, "auto"
    snns = {k: convert(model, thresholds, shift="membrane") for k in ("dense", "event")}
    make_event_driven(snns["event"])
    densities: dict[str, list[float]] = {}
    layers = {n: m for n, m in snns["dense"].body.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}

    def density(_m, inputs, name):
        densities.setdefault(name, []).append(float(torch.count_nonzero(inputs[0])) / inputs[0].numel())

    handles = [m.register_forward_pre_hook(lambda m, i, n=n: density(m, i, n)) for n, m in layers.items()]
    outputs, counts = {}, {}
    for name, snn in snns.items():  # the densities of the dense SNN's layers only
        outputs[name] = simulate(snn, x, [T], chunk, record_spikes=True)[0]
        counts[name] = [m.spike_count.clone() for m in snn.modules() if isinstance(m, IFNeuron)]
    for h in handles:
        h.remove()
    for m in snns["event"].modules():  # count the timed calls only
        if hasattr(m, "event_calls"):
            m.event_calls = m.dense_calls = 0
    methods = {k: (lambda s=s: simulate(s, x, [T], chunk)) for k, s in snns.items()}
    times = median_cpu({**methods, "ann_x_T": lambda: [model(x) for _ in range(T)]}, args.repeats)
    same = [bool(torch.equal(a, b)) for a, b in zip(counts["dense"], counts["event"])]
    flips = sum(int((a != b).sum()) for a, b in zip(counts["dense"], counts["event"]))
    pred = {k: o.argmax(-1) for k, o in outputs.items()}
    out = {"network": "vgg11 width 0.25 (the quickstart's), membrane shift, analog readout"}
    out.update(checkpoint=args.network_checkpoint, images=x.shape[0], T=T, time_chunk=chunk, crossover=CROSSOVER)
    out.update(cpu_time_s=times, event_over_dense=times["event"] / times["dense"])
    out.update({f"{k}_over_ann_x_T": times[k] / times["ann_x_T"] for k in ("dense", "event")})
    out["input_density"] = {n: statistics.mean(v) for n, v in densities.items()}
    out["event_share_of_calls"] = event_share(snns["event"])
    out["accuracy"] = {"ann": float((model(x).argmax(-1) == y).float().mean())}
    out["accuracy"].update({f"snn_{k}": float((p == y).float().mean()) for k, p in pred.items()})
    out.update(predictions_equal=bool(torch.equal(pred["dense"], pred["event"])))
    out.update(max_abs_output_diff=float((outputs["dense"] - outputs["event"]).abs().max()))
    out["layers_with_identical_spike_counts"] = f"{sum(same)} of {len(same)}"
    total = sum(int(a.sum()) for a in counts["dense"])
    out["spike_count_differences"] = {"neurons_x_images_differing_total": flips, "spikes_total": total}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="0.001,0.003,0.01,0.03,0.1,0.3")
    p.add_argument("--linear-rows", type=int, default=256, help="rows (batch x steps folded) of a linear layer")
    p.add_argument("--conv-rows", type=int, default=32, help="rows (batch x steps folded) of a convolution")
    p.add_argument("--layers", default="all", help="'all', 'linear', 'conv', 'none' or comma-separated name parts")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--unfold-csr", action="store_true", help="also time im2col + CSR matmul for the convs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="a folder with train.npz/test.npz (the network test)")
    p.add_argument("--network-checkpoint", default=None, help="the real-network test's weights (trained if missing)")
    p.add_argument("--network-train", type=int, default=8192, help="training images if it must train")
    p.add_argument("--network-images", type=int, default=256, help="test images (one batch)")
    p.add_argument("--network-T", type=int, default=32)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.network_checkpoint and not args.data_dir:
        p.error("--network-checkpoint needs --data-dir (a folder with train.npz/test.npz)")
    torch.set_num_threads(args.threads)
    rates, gen, load_before = [float(r) for r in args.rates.split(",")], torch.Generator(), os.getloadavg()
    gen.manual_seed(args.seed)
    wanted, results = args.layers.split(","), []
    with torch.inference_mode():
        kernels()  # built (or loaded) before any timing
        for name in LAYERS:
            kind, size = name.split()[0].replace("fc", "linear"), re.findall(r"\d+", name.split("(")[0])
            if args.layers in ("all", kind) or (args.layers != "none" and any(w and w in name for w in wanted)):
                results.append(study_layer(name, tuple(map(int, size)), args, rates, gen))
    network = study_network(args, *quickstart_network(args)) if args.network_checkpoint else None  # may train first
    load = {"before": list(load_before), "after": list(os.getloadavg())}
    out = {"config": vars(args), "machine": machine_record(), "load_average": load}
    out.update(results=results, network=network)
    if network:
        print("real network: " + json.dumps(network, indent=1))
    if args.json:
        write_json(Path(args.json), out)
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
