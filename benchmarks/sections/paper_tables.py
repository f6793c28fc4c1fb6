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
        lines += ["", f"Not run at this scale, so absent below: {', '.join(missing)} (not run yet)."]
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


# ---- docs/REPRODUCE.md's CIFAR-10 tables: the paper's numbers beside ours ----------------------------------

MARK, REDUCED_MARK = "†", "‡"  # CPU scale; a network run at a smaller one (``reduced`` in the JSON)
#: Table 1's rows: label, T, the run it reads.
TABLE1 = [("1-TS", "16", "ts"), ("2-TS", "32", "ts"), ("3-TS", "64", "ts"), ("4-TS", "128", "ts"),
          ("5-T", "400-600", "t"), ("6-S", "512", "s")]  # fmt: skip


def _fit(net: str, run: str) -> str:
    return f"`python train.py fit -c configs/base/cifar10.yaml -c configs/cifar10/{net}_{run}.yaml`"


def _head(*cells: str) -> list[str]:
    return ["| " + " | ".join(cells) + " |", "|" + " --- |" * len(cells)]


def _loss(payload: dict, net: str, r: dict, snn: float) -> str:
    """The loss against the ReLU twin's ANN (and, for a threshold-ReLU run, against its own), marked."""
    mark = REDUCED_MARK if net in payload.get("reduced", {}) else MARK
    outside = get(payload, net, "relu")["ann_acc"] - snn
    own = f" ({r['ann_acc'] - snn:.2f})" if r.get("threshold_clip_on") is True else ""
    return f"{outside:.2f}{own}{mark}"


def _table1_ours(payload: dict, net: str, run: str, t: str) -> tuple[str, str]:
    r = get(payload, net, run)
    if r is None or get(payload, net, "relu") is None:
        return "—", "—"
    mark = REDUCED_MARK if net in payload.get("reduced", {}) else MARK
    if t == "400-600":
        a = r.get("average_over")
        return (f"{average(r)}{mark}", _loss(payload, net, r, a["mean_acc"])) if a else ("—", "—")
    snn = r["snn_acc"].get(t)
    return (f"{snn:.2f}{mark}", _loss(payload, net, r, snn)) if snn is not None else ("—", "—")


def reproduce_table1(page, payload: dict, refs: dict) -> str:
    """Table 1's CIFAR-10 sections, one per network: the paper's accuracy and loss, ours beside them."""
    lines = []
    for net, name in NETWORKS.items():
        lines += ["", f"### CIFAR-10 + {name}", ""]
        lines += _head("row", "T", "command (`fit`; then read at T)", "paper accuracy (%)",
                       "paper loss vs ReLU (vs threshold) ANN (%)", "ours: accuracy", "ours: loss")  # fmt: skip
        for (row, t, run), paper in zip(TABLE1, refs["table1_cifar10"]["rows"][net], strict=True):
            note = " (mean over 400..600)" if t == "400-600" else ""
            cells = [*paper, *_table1_ours(payload, net, run, t)]
            lines.append(f"| Our Work-{row} | {t} | {_fit(net, run)}{note} | {' | '.join(cells)} |")
    return "\n".join(lines[1:])


def reproduce_table2(page, payload: dict, refs: dict) -> str:
    """Table 2 (CIFAR-10): the paper's mean ± std over T = 400..600 beside ours."""
    lines = _head("network", "column", "command (`average_over`: mean ± std of `snn_acc` over every T of 400..600)",
                  "paper (%)", "ours (%)")  # fmt: skip
    columns = {"relu": "ReLU", "t": "ReLU+threshold", "ts_constant": "ReLU+threshold+shift"}
    for net, name in NETWORKS.items():
        for (run, column), paper in zip(columns.items(), refs["table2_cifar10"]["rows"][net], strict=True):
            ours = average(get(payload, net, run))
            ours += "" if ours == "—" else REDUCED_MARK if net in payload.get("reduced", {}) else MARK
            lines.append(f"| {name} | {column} | {_fit(net, run)} | {paper} | {ours} |")
    return "\n".join(lines)


def reproduce_table4(page, payload: dict, refs: dict) -> str:
    """Table 4 (VGG-16 and ResNet-20 on CIFAR-10): the paper's loss at T beside ours."""
    lines = []
    for net in ("vgg16", "resnet20"):
        paper = refs[f"{net}_cifar10_table4"]
        lines += ["", f"### Table 4: {NETWORKS[net]} on CIFAR-10", "", *_head("row", "T", "command", "paper loss (%)",
                  "ours (%)")]  # fmt: skip
        for row, losses in paper["rows"].items():
            r = get(payload, net, row.lower())
            for t, p in zip(paper["timesteps"], losses, strict=True):
                ours = "—" if r is None or t not in r["snn_acc"] else _loss(payload, net, r, r["snn_acc"][t])
                lines.append(f"| Our Work-{row} | {t} | {_fit(net, row.lower())} | {p} | {ours} |")
    return "\n".join(lines[1:])
