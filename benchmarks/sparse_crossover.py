"""Spikes that skip work: below which firing rate does an event-driven layer beat the dense one?

An SNN layer's input is sparse: each step only a few percent of the neurons fire (the quickstart's
network 7% on average, its deep layers 2%). A dense layer does the same work for any input; an
event-driven one works only for the inputs that are not zero:

* linear layers: ``out[n] = b + sum over the inputs i that fired of x[n, i] * W[:, i]``, either
  as PyTorch's CSR x dense matmul (``torch.sparse.mm``, the input converted to CSR per call) or
  as a small C kernel that walks each row's non-zeros and adds the selected weight rows
  (``W.T`` stored contiguous once);
* convolutions: the same scatter in C, exact (the same products, summed in another order): each
  non-zero input ``x[n, c, y, x]`` adds ``x * W[:, c, ky, kx]`` to every output position its
  window reaches (accumulated channels-last per sample, then written NCHW as the next layer
  expects); and, in plain PyTorch, im2col (``F.unfold``) + CSR matmul.

The C kernels are the library's (:mod:`lightning_snn.sparse`).

Every event-driven time includes finding the non-zeros (a pass over the input) and producing the
output the dense layer would (its layout too): what a layer swap in the engine would pay. Inputs
are binary spikes of amplitude 1 at an exact rate (a random subset), float32, one thread,
``--repeats`` rounds (the methods interleaved), the median of the process CPU time.

The crossover of a method is the rate at which its time equals the dense layer's, interpolated
on the log-log curve between the measured rates; "< r" / "> r" when it is faster / slower at every
rate measured. Outputs are checked against the dense layer (max |difference| relative to the
output's scale; the float sums run in another order, so not bit for bit).

    python benchmarks/sparse_crossover.py --json benchmarks/results/sparse_crossover_cpu.json

``--network-checkpoint PATH`` (with ``--data-dir``) adds the test on a real network: the
quickstart's VGG-11 at width 1/4 (trained for one epoch on ``--network-train`` CIFAR-10 images
and saved to PATH if PATH does not exist), simulated on real test images with the dense layers
and with :func:`lightning_snn.sparse.make_event_driven` (the default crossovers), interleaved:
CPU time, each layer's input density and share of event-driven calls, T x ANN forwards, and
whether the two SNNs agree (predictions, spike counts).

Timings only; nothing here asserts a speed. Results and conclusions: docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from lightning_snn.sparse import event_conv2d, event_linear, kernels

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


def csr_linear(x: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``torch.sparse.mm`` of the input converted to CSR (each call) and ``wt`` = ``W.T``."""
    out = torch.sparse.mm(x.to_sparse_csr(), wt)
    return out + bias if bias is not None else out


def unfold_csr_conv(x: torch.Tensor, w2: torch.Tensor, bias: torch.Tensor | None, k: int, padding: int) -> torch.Tensor:
    """im2col (``F.unfold``) + CSR x dense matmul; ``w2`` = ``W.view(C_out, -1).T``, contiguous."""
    n, _, h, w = x.shape
    cols = F.unfold(x, k, padding=padding).transpose(1, 2).reshape(n * h * w, -1)  # stride 1, same size
    out = torch.sparse.mm(cols.to_sparse_csr(), w2)
    if bias is not None:
        out = out + bias
    return out.view(n, h, w, -1).permute(0, 3, 1, 2).contiguous()


def spikes(shape: tuple[int, ...], rate: float, gen: torch.Generator) -> torch.Tensor:
    """Binary spikes (amplitude 1): exactly ``round(rate x numel)`` ones at random places."""
    numel = math.prod(shape)
    x = torch.zeros(numel)
    x[torch.randperm(numel, generator=gen)[: round(rate * numel)]] = 1.0
    return x.view(shape)


# ---- timing ---------------------------------------------------------------------------------------
def cpu_time(fn: Callable[[], object]) -> float:
    c0 = time.process_time()
    fn()
    return time.process_time() - c0


def measure(methods: dict[str, Callable[[], torch.Tensor]], repeats: int) -> dict[str, float]:
    """Median CPU time of each method, the methods interleaved (one warm-up call each first)."""
    for fn in methods.values():
        fn()
    runs: dict[str, list[float]] = {k: [] for k in methods}
    for i in range(repeats):
        names = list(methods)
        names = names[i % len(names) :] + names[: i % len(names)]
        for k in names:
            runs[k].append(cpu_time(methods[k]))
    return {k: statistics.median(v) for k, v in runs.items()}


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


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


# ---- the study ------------------------------------------------------------------------------------
LINEAR_SIZES = {  # (in, out): VGG-16's classifiers (CIFAR at width 1/4 and 1; ImageNet), and a head
    "fc 128->128 (VGG-16 w/4 CIFAR)": (128, 128),
    "fc 512->512 (VGG-16 CIFAR)": (512, 512),
    "fc 512->10 (head)": (512, 10),
    "fc 4096->4096 (VGG-16 ImageNet)": (4096, 4096),
    "fc 25088->4096 (VGG-16 ImageNet)": (25088, 4096),
}
CONV_SIZES = {  # (C_in, C_out, H = W), 3x3, stride 1, padding 1: VGG-16's layers on CIFAR
    "conv 16->16 @32 (w/4 block 1)": (16, 16, 32),
    "conv 32->32 @16 (w/4 block 2)": (32, 32, 16),
    "conv 64->64 @8 (w/4 block 3)": (64, 64, 8),
    "conv 128->128 @4 (w/4 block 4)": (128, 128, 4),
    "conv 64->64 @32 (w/1 block 1)": (64, 64, 32),
    "conv 128->128 @16 (w/1 block 2)": (128, 128, 16),
    "conv 256->256 @8 (w/1 block 3)": (256, 256, 8),
    "conv 512->512 @4 (w/1 block 4)": (512, 512, 4),
    "conv 512->512 @2 (w/1 block 5)": (512, 512, 2),
}


def study_linear(name: str, size: tuple[int, int], rows: int, rates: list[float], args, gen) -> dict:
    n_in, n_out = size
    weight, bias = torch.randn(n_out, n_in, generator=gen) / n_in**0.5, torch.randn(n_out, generator=gen)
    wt = weight.t().contiguous()
    result: dict = {"layer": name, "type": "linear", "rows": rows, "rates": rates, "times": {}, "max_rel_diff": {}}
    for rate in rates:
        x = spikes((rows, n_in), rate, gen)
        methods = {
            "dense": lambda x=x: F.linear(x, weight, bias),
            "event_c": lambda x=x: event_linear(x, wt, bias),
            "csr_torch": lambda x=x: csr_linear(x, wt, bias),
        }
        record(result, methods, args.repeats)
    return finish(result)


def study_conv(name: str, size: tuple[int, int, int], rows: int, rates: list[float], args, gen) -> dict:
    c_in, c_out, hw = size
    weight = torch.randn(c_out, c_in, 3, 3, generator=gen) / (9 * c_in) ** 0.5
    bias = torch.randn(c_out, generator=gen)
    wr, w2 = weight.permute(1, 2, 3, 0).contiguous(), weight.reshape(c_out, -1).t().contiguous()
    result: dict = {"layer": name, "type": "conv3x3", "rows": rows, "rates": rates, "times": {}, "max_rel_diff": {}}
    for rate in rates:
        x = spikes((rows, c_in, hw, hw), rate, gen)
        methods = {
            "dense": lambda x=x: F.conv2d(x, weight, bias, padding=1),
            "event_c": lambda x=x: event_conv2d(x, wr, bias, (1, 1), (1, 1)),
        }
        if args.unfold_csr:
            methods["unfold_csr_torch"] = lambda x=x: unfold_csr_conv(x, w2, bias, 3, 1)
        record(result, methods, args.repeats)
    return finish(result)


def record(result: dict, methods: dict[str, Callable[[], torch.Tensor]], repeats: int) -> None:
    """Time ``methods`` at one rate into ``result``, and how far each output is from the dense one's."""
    ref = methods["dense"]()
    for k, t in measure(methods, repeats).items():
        result["times"].setdefault(k, []).append(t)
        if k != "dense":
            result["max_rel_diff"][k] = max(result["max_rel_diff"].get(k, 0.0), rel_diff(methods[k](), ref))


def finish(result: dict) -> dict:
    dense = result["times"]["dense"]
    result["ratio_to_dense"] = {
        k: [t / d for t, d in zip(v, dense)] for k, v in result["times"].items() if k != "dense"
    }
    result["crossover"] = {k: crossover(result["rates"], q) for k, q in result["ratio_to_dense"].items()}
    return result


def fmt(c) -> str:
    return f"{c:.3g}" if isinstance(c, float) else str(c)


def report(results: list[dict]) -> str:
    lines = [
        "| layer | rows | dense ms | event-driven / dense at each rate | crossover rate |",
        "|---|---:|---:|---|---|",
    ]
    for r in results:
        ratios = "; ".join(
            f"{k}: " + " ".join(f"{q:.2f}" for q in v) for k, v in r["ratio_to_dense"].items()
        )  # one line per method
        cross = "; ".join(f"{k} {fmt(c)}" for k, c in r["crossover"].items())
        dense_ms = statistics.median(r["times"]["dense"]) * 1e3
        lines.append(f"| {r['layer']} | {r['rows']} | {dense_ms:.2f} | {ratios} | {cross} |")
    lines.append("")
    lines.append("rates: " + ", ".join(f"{x:g}" for x in results[0]["rates"]) if results else "")
    return "\n".join(lines)


# ---- a real network ------------------------------------------------------------------------------------
def cifar(data_dir: str, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from lightning_snn.data import CIFAR10_MEAN, CIFAR10_STD, load_npz_split

    images, labels = load_npz_split(Path(data_dir), split)
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, -1, 1, 1), torch.tensor(CIFAR10_STD).view(1, -1, 1, 1)
    return (images[:n].float() / 255.0 - mean) / std, labels[:n]


def quickstart_network(args) -> tuple[torch.nn.Module, dict]:
    """The quickstart's VGG-11 (width 1/4, threshold ReLU), thresholds calibrated on 1000 training
    images: loaded from ``args.network_checkpoint``, else trained one epoch (Adam 2e-3, batch 128,
    the threshold on throughout) on ``args.network_train`` images and saved there."""
    from lightning_snn.activations import set_threshold_enabled
    from lightning_snn.conversion import calibrate_thresholds
    from lightning_snn.models import create_model

    torch.manual_seed(args.seed)
    model = create_model("vgg11", width=0.25, conv_dropout=0.0, fc_dropout=0.2)
    set_threshold_enabled(model, True)
    path = Path(args.network_checkpoint)
    if not path.is_file():
        x, y = cifar(args.data_dir, "train", args.network_train)
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


def study_network(args) -> dict:
    """Dense vs event-driven layers in the quickstart's SNN on real images (see the docstring)."""
    model, thresholds = quickstart_network(args)  # may train: outside inference mode
    with torch.inference_mode():
        return _study_network(args, model, thresholds)


def _study_network(args, model, thresholds) -> dict:
    from lightning_snn.conversion import convert
    from lightning_snn.neurons import IFNeuron
    from lightning_snn.simulation import simulate
    from lightning_snn.sparse import CROSSOVER, event_share, make_event_driven

    x, y = cifar(args.data_dir, "test", args.network_images)
    T, chunk = args.network_T, "auto"
    dense_snn = convert(model, thresholds, shift="membrane")
    event_snn = convert(model, thresholds, shift="membrane")
    make_event_driven(event_snn)
    densities: dict[str, list[float]] = {}

    def record(name):
        def hook(_m, inputs):
            densities.setdefault(name, []).append(float(torch.count_nonzero(inputs[0])) / inputs[0].numel())

        return hook

    layers = {n: m for n, m in dense_snn.body.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    handles = [m.register_forward_pre_hook(record(n)) for n, m in layers.items()]
    outputs, counts = {}, {}
    for name, snn in (("dense", dense_snn), ("event", event_snn)):
        outputs[name] = simulate(snn, x, [T], chunk, record_spikes=True)[0]
        counts[name] = [m.spike_count.clone() for m in snn.modules() if isinstance(m, IFNeuron)]
        if name == "dense":
            for h in handles:
                h.remove()
    methods = {
        "dense": lambda: simulate(dense_snn, x, [T], chunk),
        "event": lambda: simulate(event_snn, x, [T], chunk),
        "ann_x_T": lambda: [model(x) for _ in range(T)],
    }
    for m in event_snn.modules():  # count the timed calls only
        if hasattr(m, "event_calls"):
            m.event_calls = m.dense_calls = 0
    times = measure(methods, args.repeats)
    same = [bool(torch.equal(a, b)) for a, b in zip(counts["dense"], counts["event"])]
    flips = sum(int((a != b).sum()) for a, b in zip(counts["dense"], counts["event"]))
    total = sum(int(a.sum()) for a in counts["dense"])
    pred = {k: o.argmax(-1) for k, o in outputs.items()}
    return {
        "network": "vgg11 width 0.25 (the quickstart's), membrane shift, analog readout",
        "checkpoint": args.network_checkpoint,
        "images": x.shape[0],
        "T": T,
        "time_chunk": chunk,
        "crossover": CROSSOVER,
        "cpu_time_s": times,
        "event_over_dense": times["event"] / times["dense"],
        "dense_over_ann_x_T": times["dense"] / times["ann_x_T"],
        "event_over_ann_x_T": times["event"] / times["ann_x_T"],
        "input_density": {n: statistics.mean(v) for n, v in densities.items()},
        "event_share_of_calls": event_share(event_snn),
        "accuracy": {
            "ann": float((model(x).argmax(-1) == y).float().mean()),
            **{f"snn_{k}": float((p == y).float().mean()) for k, p in pred.items()},
        },
        "predictions_equal": bool(torch.equal(pred["dense"], pred["event"])),
        "max_abs_output_diff": float((outputs["dense"] - outputs["event"]).abs().max()),
        "layers_with_identical_spike_counts": f"{sum(same)} of {len(same)}",
        "spike_count_differences": {"neurons_x_images_differing_total": flips, "spikes_total": total},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="0.001,0.003,0.01,0.03,0.1,0.3")
    p.add_argument("--linear-rows", type=int, default=256, help="rows (batch x steps folded) of a linear layer")
    p.add_argument("--conv-rows", type=int, default=32, help="rows (batch x steps folded) of a convolution")
    p.add_argument(
        "--layers", default="all", help="'all', 'linear', 'conv', 'none' or comma-separated substrings of names"
    )
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rates = [float(r) for r in args.rates.split(",")]
    gen = torch.Generator().manual_seed(args.seed)
    load_before = os.getloadavg()
    results = []
    wanted = args.layers.split(",")

    def selected(name: str, kind: str) -> bool:
        if args.layers == "none":
            return False
        return args.layers == "all" or args.layers == kind or any(w and w in name for w in wanted)

    if args.network_checkpoint and not args.data_dir:
        raise SystemExit("--network-checkpoint needs --data-dir (a folder with train.npz/test.npz)")

    with torch.inference_mode():
        kernels()  # built (or loaded) before any timing
        for name, size in LINEAR_SIZES.items():
            if selected(name, "linear"):
                results.append(study_linear(name, size, args.linear_rows, rates, args, gen))
                print(report(results[-1:]).splitlines()[2], flush=True)
        for name, size in CONV_SIZES.items():
            if selected(name, "conv"):
                results.append(study_conv(name, size, args.conv_rows, rates, args, gen))
                print(report(results[-1:]).splitlines()[2], flush=True)
    network = study_network(args) if args.network_checkpoint else None
    out = {
        "config": vars(args),
        "machine": {
            "cpu": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "results": results,
        "network": network,
    }
    print()
    if results:
        print(report(results))
    if network:
        print("real network: " + json.dumps(network, indent=1))
    print(f"load average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
