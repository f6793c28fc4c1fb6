"""docs/RESULTS.md's sections in the paper's layouts (Tables 2 and 4 at CPU scale) from docs/reproduce.json
(collected by benchmarks/paper_tables.py from the runs' snn_results.json) and the paper's Table 2 in
docs/paper_numbers.json. The loss tables are :func:`lightning_snn.results_tables.losses_table`."""

from __future__ import annotations

NETWORKS = {"cifarnet": "CIFARNet", "vgg16": "VGG-16", "resnet20": "ResNet-20"}


def get(payload: dict, net: str, run: str) -> dict | None:
    """The run ``<net>_<run>`` of ``payload`` (with its name in ``_path``), or ``None``."""
    r = payload["runs"].get(f"{net}_{run}")
    if r is not None:
        r = {**r, "_path": f"{net}_{run}"}
    return r


def average(r: dict | None) -> str:
    """A run's mean ± std over T = 400..600, or a dash."""
    if r is None or not r.get("average_over"):
        return "—"
    a = r["average_over"]
    return f"{a['mean_acc']:.2f} ± {a['std_acc']:.2f}"


def setup(page, payload: dict) -> str:
    s = payload["scale"]
    lines = [
        f"Setup: width {s['width']}, {s['epochs']} epochs of the paper's SGD (lr 0.01, momentum 0.9, "
        f"weight decay 5e-4), {s['schedule']}, plain ReLU for the first {s['relu_warmup_epochs']} epochs of the "
        f"threshold-ReLU networks, dropout {s['dropout']}; thresholds from {s['calibration_images']} training "
        f"images, SNN and ANN on the first {s['test_images']} test images (one image = "
        f"{100 / s['test_images']:.1f} points); analog readout. The paper: full width, 300 epochs, all 10,000 "
        "test images." + (f" Data-loader workers: {s['loader_workers']}." if s.get("loader_workers") else ""),
    ]
    for net, reduced in payload.get("reduced", {}).items():
        r = {**s, **reduced}
        lines += [
            "",
            f"**{NETWORKS[net]} at a smaller scale** (CPU time): {r['epochs']} epochs ({r['relu_warmup_epochs']} of "
            f"plain ReLU in the threshold network), cosine over them, SNN and ANN on the first {r['test_images']} "
            f"test images (one image = {100 / r['test_images']:.1f} points).",
        ]
    missing = [name for net, name in NETWORKS.items() if not any(k.startswith(f"{net}_") for k in payload["runs"])]
    if missing:
        why = payload.get("not_run_why") or "not run yet"
        lines += ["", f"Not run at this scale, so absent below: {', '.join(missing)} ({why})."]
    return "\n".join(lines)


def table2(page, payload: dict, refs: dict) -> str:
    paper = refs["table2_cifar10"]["rows"]
    lines = [
        "| network | ANN (ReLU / threshold) | ReLU | ReLU+threshold | ReLU+threshold+shift (V_th/1600 per step) | "
        "the paper (ReLU / threshold / threshold+shift) |",
        "|---|---|---|---|---|---|",
    ]
    for net, name in NETWORKS.items():
        relu, t, tsc = (get(payload, net, r) for r in ("relu", "t", "ts_constant"))
        if relu is None and t is None:
            continue
        anns = " / ".join(f"{r['ann_acc']:.2f}" if r else "—" for r in (relu, t))
        row = f"| {name} | {anns} | {average(relu)} | {average(t)} | {average(tsc)} | {' / '.join(paper[net])} |"
        lines.append(row)
    return "\n".join(lines)


def table4(page, payload: dict) -> str:
    from lightning_snn.results_tables import losses_table  # here: importing this module must not need the library

    lines = []
    for net, name in NETWORKS.items():
        relu = get(payload, net, "relu")
        rows = [r for r in (get(payload, net, v) for v in ("s", "t", "ts", "ts_constant")) if r is not None]
        if relu is None or not rows:
            continue
        lines += ["", f"**{name}**", "", *losses_table(relu, rows, [32, 64, 128, 256, 512])[2:]]
    return "\n".join(lines).strip("\n")
