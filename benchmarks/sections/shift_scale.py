"""docs/RESULTS.md's shift-size section (the paper's Fig. 3B-D) from docs/shift_scale.json
(benchmarks/shift_scale.py). The findings' verdicts are in the JSON, computed from each image's
outcome (paired standard errors), which the JSON does not keep."""

from __future__ import annotations

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
    (drawn by the study, which holds each image's outcome)."""
    lines = []
    for net, r in payload["networks"].items():
        ts = payload["setup"]["timesteps"]
        lines += [f"{NETWORKS[net]} (ANN {r['ann_acc']:.2f}%):", ""]
        lines.append("| shift | scale | " + " | ".join(f"T={t}" for t in ts) + " |")
        lines.append("|---|---|" + "---|" * len(ts))
        for mode, by_scale in r["snn_acc"].items():
            for scale, accs in by_scale.items():
                cells = " | ".join(f"{accs[str(t)]:.2f}" if str(t) in accs else "pending" for t in ts)
                lines.append(f"| {mode} | {scale} | {cells} |")
        se = payload["paired_se"].get(net, {})
        lines += [
            "",
            "Paired standard error of (scale 1 - scale 0), points: "
            + "; ".join(f"{mode} " + ", ".join(f"T={t} {v:.2f}" for t, v in d.items()) for mode, d in se.items())
            + ".",
            "",
        ]
    return "\n".join([*lines, f"![SNN accuracy against the shift scale]({page.names[0].removesuffix('.json')}.png)"])


def findings(page, payload: dict) -> str:
    return "\n".join(payload["findings"]).strip("\n")
