"""docs/LOW_LATENCY.md from docs/low_latency.json (benchmarks/low_latency.py) and the issue-8
targets and published anchors in docs/paper_numbers.json."""

from __future__ import annotations

from sections import by_t, table


def _ts(data: dict) -> list[str]:
    accs = [v["snn_acc"] for v in data["results"]["variants"].values() if "snn_acc" in v]
    return sorted(accs[0], key=int)


def _head(data: dict) -> list[str]:
    return [f"T={t}" for t in _ts(data)]


def _converted(data: dict) -> dict:
    """The variants that could be converted (a dead layer makes max calibration fail)."""
    return {k: v for k, v in data["results"]["variants"].items() if "error" not in v}


def _loss(data: dict, v: dict, t: str) -> float:
    return data["results"]["sources"][v["source"]]["ann_acc"] - v["snn_acc"][t]


def _targets_met(data: dict, v: dict, targets: dict) -> str:
    src = data["results"]["sources"][v["source"]]
    met = [f"ANN >= {targets['ann_acc']:.0f}%"] if src["ann_acc"] >= targets["ann_acc"] else []
    met += [f"T={t} (<= {m} pt)" for t, m in targets["max_loss"].items() if _loss(data, v, t) <= m + 1e-9]
    return ", ".join(met) if met else "none"


def _against(data: dict, suffix: str) -> list[list[str]]:
    """Rows ``label | acc - acc of the same key without suffix`` per T, for the keys ending in it."""
    ok = _converted(data)
    pairs = [(v, ok[k[: -len(suffix)]]) for k, v in ok.items() if k.endswith(suffix) and k[: -len(suffix)] in ok]
    return [[v["label"], *(f"{v['snn_acc'][t] - b['snn_acc'][t]:+.2f}" for t in _ts(data))] for v, b in pairs]


def command(page, data: dict) -> str:
    a = data["args"]
    keys = ("width", "epochs", "calibration_samples", "test_samples", "correction_t")
    return f"    python benchmarks/low_latency.py --data-dir {a['data_dir']} " + " ".join(
        f"--{k.replace('_', '-')} {a[k]}" for k in keys
    )


def setup(page, data: dict) -> str:
    a = data["args"]
    return "\n".join(
        [
            f"- VGG-11 (8 convs, average pooling) at **width {a['width']}**, "
            f"{'with' if a['batch_norm'] else 'without'} batch norm (folded into the convs at conversion), "
            "conv dropout 0, FC dropout 0.2: the quickstart's network"
            + (" plus batch norm (see Recipe below)." if a["batch_norm"] else "."),
            f"- **{a['epochs']} epochs** (unless the table below says otherwise) of Adam (lr {a['lr']}, cosine), "
            f"batch 128, random crop + flip, seed {a['seed']}. Threshold ReLU: {a['warmup']} epochs of plain ReLU, "
            "then `clamp(x, 0, 1)` (the paper's recipe, as the quickstart). QCFS: quantized from the first step (Bu "
            "et al. train it from scratch too) unless a ReLU warm-up is listed, trainable lambda per layer "
            f"initialised at {a['qcfs_lambda']}.",
            "- One training per source ANN; every conversion variant of a source uses the same weights. Thresholds "
            f"from a fixed, seeded, un-augmented subset of **{a['calibration_samples']} training images**; the light "
            f"correction runs on the same images (no labels), targeting **T = {a['correction_t']}**.",
        ]
    )


def measured_on(page, data: dict) -> str:
    n = data["args"]["test_samples"]
    return (
        f"- SNN and ANN accuracy on the **first {n} CIFAR-10 test images** (one image = {100 / n:.2f} points).\n"
        f"- Machine: {data['machine']}, shared with other jobs: wall times are indicative only."
    )


def sources(page, data: dict) -> str:
    header = ["source ANN", "epochs (ReLU warm-up)", "test acc (same images)", "training time"]
    header += ["trained lambda per layer", "weights sha256"]
    rows = [
        [
            r["label"],
            f"{r['epochs']} ({r['relu_warmup_epochs']})",
            f"{r['ann_acc']:.2f}%",
            f"{r['train_seconds'] / 60:.1f} min",
            ", ".join(f"{x:.2f}" for x in r.get("lambdas", [])) or "-",
            f"`{r['sha256'][:16]}`",
        ]
        for r in data["results"]["sources"].values()
    ]
    return table(header, rows)


def alive_at_init(page, data: dict) -> str:
    labels = {k: r["label"] for k, r in data["results"]["sources"].items()}
    rows = [
        [
            labels[r["source"]],
            "yes" if r["batch_norm"] else "no",
            ", ".join(f"{x:.3f}" for x in r["nonzero"]),
            str(sum(x == 0 for x in r["nonzero"])),
        ]
        for r in data["results"].get("alive_at_init", [])
    ]
    return table(["source", "batch norm", "non-zero fraction per layer", "dead layers"], rows)


def accuracy(page, data: dict) -> str:
    rows = []
    for v in data["results"]["variants"].values():
        ann = f"{data['results']['sources'][v['source']]['ann_acc']:.2f}"
        if "error" in v:
            rows.append([v["label"], ann, f"not convertible: {v['error'].split(':')[0]}"])
        else:
            rows.append([v["label"], ann, *by_t(v["snn_acc"], _ts(data), ".2f")])
    return table(["variant", "ANN", *_head(data)], rows)


def loss(page, data: dict, refs: dict) -> str:
    targets = refs["issue8_targets"]
    says = ", ".join(f"<= {m} point at T = {t}" for t, m in targets["max_loss"].items())
    rows = []
    for v in data["results"]["variants"].values():
        if "error" in v:
            rows.append([v["label"], v["error"].split(":")[0], *[""] * (len(_ts(data)) - 1), "not convertible"])
        else:
            losses = [f"{_loss(data, v, t):+.2f}" for t in _ts(data)]
            rows.append([v["label"], *losses, _targets_met(data, v, targets)])
    intro = f"Targets (issue 8): ANN >= {targets['ann_acc']:.0f}%, loss {says}."
    return intro + "\n\n" + table(["variant", *_head(data), "targets met"], rows)


def correction(page, data: dict) -> str:
    intro = f"Accuracy with the correction (target T = {data['args']['correction_t']}) minus without (points), "
    return intro + "same source and thresholds:\n\n" + table(["variant", *_head(data)], _against(data, "+corr"))


def signed(page, data: dict) -> str:
    return table(["variant", *_head(data)], _against(data, "+signed"))


def anchors(page, data: dict, refs: dict) -> str:
    rows = [[r["label"], *(r["snn_acc"].get(t, "") for t in _ts(data))] for r in refs["low_latency_anchors"]["rows"]]
    return table(["method (full width, hundreds of epochs, whole test set)", *_head(data)], rows)


def cost(page, data: dict) -> str:
    rows = [
        [v["label"], *(f"{v['seconds'].get(k, 0.0):.1f}" for k in ("calibration", "correction", "simulation"))]
        for v in _converted(data).values()
    ]
    intro = f"Seconds per variant (calibration / correction / simulation of the {len(_ts(data))} T on the test "
    return intro + "images, one pass):\n\n" + table(["variant", "calibration", "correction", "simulation"], rows)


def figure(page, data: dict, refs: dict) -> str:
    """Accuracy and conversion loss vs T, one line per variant (colour: source; line: calibration;
    marker: correction or signed neurons); the issue-8 targets as triangles."""
    name = "low_latency_acc_vs_T.png"
    if page.figures is not None:
        _plot(data, refs["issue8_targets"], page.figures / name)
    return f"![accuracy and conversion loss vs T]({name})"


def _plot(data: dict, targets: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = _ts(data)
    x = [int(t) for t in ts]
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5))
    colors = {"threshold": "C0", "qcfs2": "C1", "qcfs4": "C2", "qcfs8": "C3"}
    styles = {"max": "-", "lambda": "-", "channel": "-.", 99.99: ":", 99.9: (0, (5, 2))}
    for v in _converted(data).values():
        ls = styles[v["percentile"] if v["calibration"] == "percentile" else v["calibration"]]
        corr, signed_ = bool(v["correction"]), v.get("neuron", "if") == "signed"
        style = dict(color=colors.get(v["source"], "C7"), ls="--" if corr and ls == "-" else ls)
        style.update(marker="s" if corr else "^" if signed_ else "o", ms=6 if signed_ else 4 if corr else 3)
        if signed_:
            style.update(lw=2.2)
        axes[0].plot(x, [v["snn_acc"][t] for t in ts], label=v["label"], **style)
        axes[1].plot(x, [_loss(data, v, t) for t in ts], **style)
    for src, r in data["results"]["sources"].items():
        axes[0].axhline(r["ann_acc"], color=colors.get(src, "C7"), lw=0.8, alpha=0.6)
    for t, m in targets["max_loss"].items():
        axes[1].plot([int(t)], [m], marker="v", color="black", ms=8)
    for ax, title in zip(axes, ("SNN accuracy (%); thin lines: each source ANN", "conversion loss (points)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, ts)
        ax.set(xlabel="simulation length T", title=title)
        ax.grid(alpha=0.3)
    axes[1].axhline(0, color="black", lw=0.8)
    ok = _converted(data).values()
    axes[1].set_ylim(min(-1.0, min(_loss(data, v, t) for v in ok for t in ts) - 0.5), 15)
    axes[0].set_ylim(max(0, min(min(v["snn_acc"].values()) for v in ok) - 2), None)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7)
    width = data["args"]["width"]
    fig.suptitle(f"VGG-11 width {width}, real CIFAR-10 (first test images); triangles: the issue-8 targets")
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
