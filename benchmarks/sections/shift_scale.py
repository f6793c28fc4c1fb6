"""docs/RESULTS.md's shift-size section (the paper's Fig. 3B-D) from docs/shift_scale.json
(benchmarks/shift_scale.py), and its figure; the findings read from them are hand text in the page."""

from __future__ import annotations

from sections import table

NETWORKS = {"relu": "plain-ReLU source ANN", "threshold": "threshold-ReLU source ANN"}
MODES = {
    "bias": "bias shift: scale x V_th/(2T) per step, one SNN per (scale, T) (the paper's)",
    "membrane": "membrane shift: initial membrane scale x V_th/2, one simulation per scale for every T",
}


def command(page, payload: dict) -> str:
    a = payload["args"]
    parts = ["python benchmarks/shift_scale.py"]
    for k in ("relu_ckpt", "threshold_ckpt"):
        if a.get(k):
            parts.append(f"--{k.replace('_', '-')} {a[k]}")
    parts.append(f"--test-samples {a['test_samples']}")
    if a.get("tiny"):
        parts.append("--tiny")
    return "    " + " ".join(parts)


def setup(page, payload: dict) -> str:
    setup = payload["setup"]
    lines = [
        f"- Shift scales {', '.join(f'{s:g}' for s in setup['scales'])} at T = "
        f"{', '.join(map(str, setup['timesteps']))}; scale 1 is the paper's `V_th/(2T)`, 0 no shift "
        "(`snn.shift_scale`). Two ways to apply it: " + "; ".join(MODES.values()) + ".",
        f"- Max thresholds over {setup['calibration_samples']} fixed training images; SNN and ANN accuracy on the "
        f"first {setup['test_samples']} test images (one image = {100 / setup['test_samples']:.2f} points"
        + (
            "; fewer than the paper's 10,000 and the REPRODUCE runs' 1000 for CPU time"
            if setup["test_samples"] < 1000
            else ""
        )
        + "); analog "
        "readout. A difference between two settings is read against its paired standard error (the images on "
        "which they disagree; s.e. below); 'within noise' = within two of them.",
        "- The paper sweeps ResNet-20 on CIFAR-100 (full width, 300 epochs); here CIFAR-10 networks at CPU scale:",
    ]
    for net, r in payload["networks"].items():
        m = r.get("meta", {})
        lines.append(
            f"  - {NETWORKS[net]}: `{m.get('arch')}` width {m.get('width')}, {m.get('epochs')} epochs "
            f"(checkpoint `{m.get('checkpoint')}`, sha256 `{setup['sha256'][net][:16]}...`): ANN "
            f"{r['ann_acc']:.2f}% on the test images."
        )
    return "\n".join(lines)


def accuracy(page, payload: dict) -> str:
    """Per network: accuracy by (shift, scale) and T, the paired standard errors; then the figure
    (``<json stem>.png``)."""
    lines, ts = [], payload["setup"]["timesteps"]
    for net, r in payload["networks"].items():
        rows = [[mode, scale, *(f"{accs[str(t)]:.2f}" if str(t) in accs else "pending" for t in ts)]
                for mode, by_scale in r["snn_acc"].items() for scale, accs in by_scale.items()]  # fmt: skip
        se = payload["paired_se"].get(net, {})
        lines += [
            f"{NETWORKS[net]} (ANN {r['ann_acc']:.2f}%):",
            "",
            table(["shift", "scale", *(f"T={t}" for t in ts)], rows),
            "",
            "Paired standard error of (scale 1 - scale 0), points: "
            + "; ".join(f"{mode} " + ", ".join(f"T={t} {v:.2f}" for t, v in d.items()) for mode, d in se.items())
            + ".",
            "",
        ]
    name = f"{page.names[0].removesuffix('.json')}.png"
    if page.figures is not None and payload["networks"]:
        _plot(payload, page.figures / name)
    return "\n".join([*lines, f"![SNN accuracy against the shift scale]({name})"])


def _plot(payload: dict, path) -> None:
    """SNN accuracy against the shift scale, one panel per (network, T), both shift modes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales, timesteps = payload["setup"]["scales"], payload["setup"]["timesteps"]
    nets = [n for n in NETWORKS if n in payload["networks"]]
    fig, axes = plt.subplots(len(nets), len(timesteps), figsize=(3.6 * len(timesteps), 3.2 * len(nets)),
                             squeeze=False)  # fmt: skip
    for i, net in enumerate(nets):
        r = payload["networks"][net]
        for j, t in enumerate(timesteps):
            ax = axes[i, j]
            for mode, style in (("bias", "-o"), ("membrane", "--s")):
                accs = {s: r["snn_acc"].get(mode, {}).get(f"{s:g}", {}).get(str(t)) for s in scales}
                pts = [(s, a) for s, a in accs.items() if a is not None]
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, label=mode, ms=4)
            ax.axhline(r["ann_acc"], color="gray", ls=":", lw=1, label="ANN")
            ax.axvline(1.0, color="black", lw=0.5)
            ax.set_title(f"{net} ANN, T = {t}", fontsize=9)
            ax.set_xlabel("shift scale (1 = V_th/(2T))")
            ax.grid(alpha=0.3)
        axes[i, 0].set_ylabel("SNN accuracy (%)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
