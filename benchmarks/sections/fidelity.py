"""docs/RESULTS.md's fidelity tables and plots from the JSON of benchmarks/fidelity.py: the ReLU-vs-threshold
study (docs/results.json), the width studies (docs/width_study*.json) with their setup checks
(docs/width_check_*.json, each a block ``fidelity.check from <study>.json <check>.json``), the full-width GPU
run (docs/gpu_full_width.json, benchmarks/collect_gpu.py) and the paper's numbers (docs/paper_numbers.json).
The claims, trends and conclusions read from these tables are hand text in the page."""

from __future__ import annotations

from pathlib import Path

from sections import table

# ---- what a stored JSON means (the study script reads these too) ------------------------------------------

TIMESTEPS = [8, 16, 32, 64, 128, 256, 512]
#: (source ANN, shift mode) -> label of the ReLU-vs-threshold study; the paper's names where they exist.
VARIANTS = {
    ("relu", "none"): "ReLU, no shift (threshold balancing)",
    ("relu", "bias"): "S: ReLU + V_th/(2T) bias shift",
    ("relu", "membrane"): "ReLU + membrane shift",
    ("threshold", "none"): "T: threshold ReLU, no shift",
    ("threshold", "bias"): "TS: threshold + V_th/(2T) bias shift",
    ("threshold", "membrane"): "TS-membrane: threshold + V_th/2 membrane",
}
WIDTH_VARIANTS = {
    "none": "T: threshold alone",
    "bias": "TS: threshold + V_th/(2T) bias shift",
    "membrane": "TS-membrane: threshold + V_th/2 membrane",
}
SUMMARY_T = (16, 32, 64)
# Which VGG-16 a result was measured on. Until issue 24 the registered vgg16 had a fifth average pool
# (after block 5) and a 512 w -> 4096 w first FC: not the paper's network. A JSON written since records
# "network": "paper"; one without the key was measured on the five-pool network.
NETWORK = "paper"
NETWORK_WORDS = {
    "paper": "the paper's VGG-16 (four average pools, none after block 5; first FC 2048 w -> 4096 w; 39.9 M "
    "parameters at width 1)",
    "five_pool": "the earlier five-pool VGG-16 (a fifth pool after block 5, first FC 512 w -> 4096 w; 33.6 M "
    "parameters at width 1), not the paper's network",
}
#: The last commit whose vgg16 was the five-pool network: check it out to rerun a five-pool result.
FIVE_POOL_COMMIT = "51baa16"
# The optimisers a study may train with: Adam (no weight decay), or the paper's SGD (its appendix A.1:
# momentum 0.9, weight decay 5e-4; the paper's lr is 0.01). Both with a cosine schedule over the epochs.
OPTIMIZERS = {"adam": "Adam (no weight decay)", "sgd": "SGD (momentum 0.9, weight decay 5e-4)"}
# Settings that must not change between the sittings of one width study, in the order a command names them.
RECIPE_KEYS = (
    "epochs", "warmup", "lr", "test_samples", "optimizer", "seed", "train_samples", "calibration_samples",
    "batch_size", "conv_dropout", "fc_dropout", "timesteps", "bias_timesteps",
)  # fmt: skip
# Recipe keys added after a study may have started: a stored recipe without them had these values. They
# are also the study's argparse defaults, and a command printed for the doc names only the keys that differ
# (the keys without a default it always names).
RECIPE_DEFAULTS = {
    "conv_dropout": 0.0, "fc_dropout": 0.2, "timesteps": TIMESTEPS, "bias_timesteps": [8, 16, 32, 64],
    "optimizer": "adam", "seed": 0, "train_samples": None, "calibration_samples": 5000, "batch_size": 250,
}  # fmt: skip
# What a setup check may change, in the words of its section title.
CHECK_KEYS = (
    "epochs", "warmup", "optimizer", "lr", "seed", "train_samples", "conv_dropout", "fc_dropout", "calibration_samples",
)  # fmt: skip


def network_of(payload: dict) -> str:
    """``"paper"`` or ``"five_pool"``: the VGG-16 a results JSON was measured on."""
    return payload.get("network", "five_pool")


def _recipe(payload: dict) -> dict:
    return {**RECIPE_DEFAULTS, **payload["recipe"]}


def _int_keys(payload: dict) -> dict:
    """A results JSON's ``snn_acc`` with int T keys (JSON stores them as strings)."""
    for r in payload["results"].values():
        r["snn_acc"] = {s: ({int(t): v for t, v in a.items()} if a is not None else None)
                        for s, a in r["snn_acc"].items()}  # fmt: skip
    return payload


def _paper(refs: dict) -> tuple[dict, float]:
    """Table 4 against the threshold-ReLU ANN (shift -> {T: loss}) and that ANN's accuracy."""
    t4 = refs["vgg16_cifar10_table4"]
    full = {shift: {int(t): v for t, v in d.items()} for shift, d in t4["against_threshold_ann"].items()}
    return full, t4["threshold_ann_acc"]


def network(page, payload: dict) -> str:
    """The line that says which VGG-16 a section's numbers come from (from the JSON: a rerun of a
    five-pool study on today's code changes it)."""
    net = network_of(payload)
    if net == NETWORK:
        return f"Measured on {NETWORK_WORDS[net]}."
    return (
        f"**Measured on {NETWORK_WORDS[net]}.** Kept as that network's record; the commands here now build the "
        f"paper's network (commit `{FIVE_POOL_COMMIT}` and earlier built the five-pool one)."
    )


# ---- the ReLU-vs-threshold study (results.json) ------------------------------------------------------------


def command(page, payload: dict) -> str:
    a = payload["args"]
    return "    python benchmarks/fidelity.py " + " ".join(
        f"--{k.replace('_', '-')} {a[k]}" for k in ("width", "epochs", "test_samples")
    )


def setup(page, payload: dict) -> str:
    a = payload["args"]
    return "\n".join(
        [
            f"- {NETWORK_WORDS[network_of(payload)]}, no BN, at **width {a['width']}** (the paper: 1.0), conv "
            f"dropout {a.get('conv_dropout', 0.0):g}, FC dropout {a.get('fc_dropout', 0.2):g} (paper: 0.2 / 0.5).",
            f"- **{a['epochs']} epochs** of {OPTIMIZERS[a.get('optimizer', 'adam')]}, lr {a['lr']}, cosine, "
            f"batch 128, random crop + flip, seed {a['seed']}, "
            f"{a['train_samples'] or 50000} training images (the paper: 300 epochs of SGD with step decay).",
            f"- Both source ANNs are trained identically; the threshold ANN uses plain ReLU for the first "
            f"{a['warmup']} epochs, then `clamp(x, 0, 1)` (the paper: 20 of 300 epochs, y_th = 1).",
            f"- Thresholds: max activation over a fixed, seeded, un-augmented subset of "
            f"{a['calibration_samples']} training images.",
            f"- SNN accuracy on the **first {a['test_samples']} test images** (fixed subset); the ANN accuracy is on "
            "the same images. Analog readout.",
            f"- Machine: {payload['machine']}. Wall times below were taken with other jobs on the machine: "
            "they are not benchmarks (see docs/BENCHMARKS.md for those).",
        ]
    )


def sources(page, payload: dict) -> str:
    rows = []
    for src in ("relu", "threshold"):
        r = payload["results"][src]
        rows.append([src, f"{r['ann_acc']:.2f}%", f"{r['train_seconds'] / 60:.1f} min", f"`{r['sha256']}`"])
    return table(["source ANN", "test acc (same images)", "training time", "checkpoint sha256"], rows)


def _ts(results: dict) -> list[str]:
    return sorted(results["relu"]["snn_acc"]["none"], key=int)


def accuracy(page, payload: dict, loss: bool = False) -> str:
    """Every variant's SNN accuracy by T (with ``loss``: its conversion loss, ANN - SNN accuracy)."""
    res, ts = payload["results"], _ts(payload["results"])
    rows = []
    for (src, shift), label in VARIANTS.items():
        r = res[src]
        accs = r["snn_acc"][shift]
        rows.append([label, *(f"{r['ann_acc'] - accs[t]:+.2f}" if loss else f"{accs[t]:.2f}" for t in ts)])
    return table(["variant", *(f"T={t}" for t in ts)], rows)


def loss(page, payload: dict) -> str:
    """The loss table and the figure (accuracy and loss against T), drawn as ``<json stem>_acc_vs_T.png``."""
    name = f"{Path(page.names[0]).stem}_acc_vs_T.png"
    if page.figures is not None:
        _plot(payload["results"], page.figures / name)
    return accuracy(page, payload, loss=True) + f"\n\n![accuracy and conversion loss vs T]({name})"


def paper_table4(page, refs: dict) -> str:
    t4 = refs["vgg16_cifar10_table4"]
    return table(["method", *(f"T={t}" for t in t4["timesteps"])], [[k, *row] for k, row in t4["rows"].items()])


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [int(t) for t in _ts(results)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for (src, shift), label in VARIANTS.items():
        r = results[src]
        accs = [r["snn_acc"][shift][str(t)] for t in ts]
        style = "-" if src == "threshold" else "--"
        axes[0].plot(ts, accs, style, marker="o", label=label)
        axes[1].plot(ts, [r["ann_acc"] - a for a in accs], style, marker="o", label=label)
    for src, color in (("relu", "gray"), ("threshold", "black")):
        axes[0].axhline(results[src]["ann_acc"], color=color, lw=0.8, ls=":", label=f"ANN ({src})")
    for ax, title in zip(axes, ("SNN accuracy (%)", "conversion loss (points)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("simulation length T")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].axhline(0, color="black", lw=0.8)
    axes[1].set_ylim(-1.5, 10)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- the width study (width_study*.json) and its setup checks (width_check_*.json) --------------------------


def _loss(r: dict, shift: str, t: int) -> float | None:
    accs = r["snn_acc"].get(shift)
    if r["ann_acc"] is None or accs is None or t not in accs:
        return None
    return r["ann_acc"] - accs[t]


def _rows(payload: dict) -> list[dict]:
    return sorted(_int_keys(payload)["results"].values(), key=lambda r: r["width"])


def _cell(r: dict, shift: str, t: int, loss: bool = True) -> str:
    """A width study's loss (or SNN accuracy) cell: '-' where that T was not run, or why there is no number."""
    accs = r["snn_acc"].get(shift)
    if accs is None:
        return "not convertible" if r.get("error") else "pending"
    x = _loss(r, shift, t) if loss else accs.get(t)
    return "-" if x is None else f"{x:+.2f}" if loss else f"{x:.2f}"


def width_loss(page, payload: dict, loss: bool = True) -> str:
    rows = [[f"{r['width']:g}", label, *(_cell(r, shift, t, loss) for t in TIMESTEPS)]
            for r in _rows(payload) for shift, label in WIDTH_VARIANTS.items()]  # fmt: skip
    return table(["width", "variant", *(f"T={t}" for t in TIMESTEPS)], rows)


def width_accuracy(page, payload: dict) -> str:
    return width_loss(page, payload, loss=False)


def _arg(value) -> str:
    """A recipe value as the command line takes it: a list space-separated, a float in its shortest form."""
    if isinstance(value, list):
        return " ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def width_command_line(payload: dict) -> str:
    """The command that reproduces a width study (or check) JSON: every recipe setting that
    differs from the script's defaults, the study name and work dir of a check."""
    a, recipe = payload["args"], _recipe(payload)
    parts = [f"python benchmarks/fidelity.py --widths {' '.join(f'{w:g}' for w in a['widths'])}"]
    parts += [f"--{k.replace('_', '-')} {_arg(recipe[k])}" for k in RECIPE_KEYS
              if k not in RECIPE_DEFAULTS or recipe[k] != RECIPE_DEFAULTS[k]]  # fmt: skip
    if a.get("study_name", "width_study") != "width_study":
        parts.append(f"--study-name {a['study_name']} --work-dir {a['work_dir']}")
    return " ".join(parts)


def width_command(page, payload: dict) -> str:
    return f"    {width_command_line(payload)}"


def width_setup(page, payload: dict) -> str:
    recipe, rows = _recipe(payload), _rows(payload)
    n, bias_ts = recipe["test_samples"], recipe["bias_timesteps"]
    return "\n".join(
        [
            f"- {NETWORK_WORDS[network_of(payload)]}, no BN, **threshold ReLU** (y_th = 1) "
            f"after {recipe['warmup']} epochs of plain ReLU, at each width below; one recipe for all: "
            f"{recipe['epochs']} epochs of {OPTIMIZERS[recipe['optimizer']]}, lr {recipe['lr']:g}, cosine, "
            f"batch 128, random crop + flip, seed {recipe['seed']}, {recipe['train_samples'] or 50000} training "
            f"images, conv dropout {recipe['conv_dropout']:g}, FC dropout {recipe['fc_dropout']:g}.",
            f"- Max thresholds over {recipe['calibration_samples']} fixed training images; SNN and ANN accuracy on "
            f"the **first {n} test images** (one image = {100 / n:.2f} points); analog readout.",
            *_where_lines(rows),
            f"- Variants: threshold alone (no shift); threshold + the paper's V_th/(2T) bias shift (one simulation "
            f"per T, so only at T = {', '.join(map(str, bias_ts))}: the other T would cost "
            f"{sum(t for t in TIMESTEPS if t not in bias_ts) / max(TIMESTEPS):.2f} one-pass simulations more at "
            "every width); threshold + V_th/2 membrane shift (one simulation for all T).",
        ]
    )


def _where_lines(rows: list[dict]) -> list[str]:
    """Where the numbers were computed: the simulations' processors, and where the thresholds and ANN
    accuracies were (a study may train and calibrate on a CPU and simulate on a GPU: fidelity.py's docstring
    says how; the page says so in hand text where a study did)."""
    sims = sorted({d for r in rows for ds in (r.get("sim_devices") or {}).values() for d in ds})
    prep = sorted({r["prepared_on"] for r in rows if r.get("prepared_on")})
    if not sims:
        return []
    text = f"- Simulations ran on {' and '.join(sims)} (float32; on a GPU with TF32 off)"
    return [text + (f"; thresholds and ANN accuracies on {' and '.join(prep)}." if prep else ".")]


def width_sources(page, payload: dict) -> str:
    rows = []
    for r in _rows(payload):
        acc = f"{r['ann_acc']:.2f}%" if r["ann_acc"] is not None else "pending"
        tt = f"{r['train_seconds'] / 60:.0f} min" if r.get("train_seconds") else "pending"
        resumed = r.get("resumed_at_epoch")
        resumed = f" (resumed at epoch {', '.join(map(str, resumed))})" if resumed else ""
        sha = f"`{r['sha256']}`" if r.get("sha256") else "pending"
        params = f"{r['parameters'] / 1e6:.2f} M" if r.get("parameters") else "?"
        rows.append([f"{r['width']:g}", params, acc, f"{tt}{resumed}", sha])
    return table(["width", "parameters", "ANN test acc", "training time", "checkpoint sha256"], rows)


def width_against(page, payload: dict, refs: dict) -> str:
    """The loss at the summary T by width beside the paper's full-width numbers, and the figure
    (``<json stem>.png``: the same losses against width and against the ANN's accuracy)."""
    rows, (full, paper_acc) = _rows(payload), _paper(refs)
    out = []
    for r in rows:
        acc = f"{r['ann_acc']:.1f}%" if r["ann_acc"] is not None else "pending"
        out += [[f"{r['width']:g}", acc, label, *(_cell(r, shift, t) for t in SUMMARY_T)]
                for shift, label in WIDTH_VARIANTS.items()]  # fmt: skip
    for shift, paper in full.items():
        out.append(["1 (paper)", f"{paper_acc:.1f}%", WIDTH_VARIANTS[shift], *(f"{paper[t]:+.2f}" if t in paper
                    else "-" for t in SUMMARY_T)])  # fmt: skip
    name = f"{Path(page.names[0]).stem}.png"
    if page.figures is not None:
        _plot_widths(rows, full, page.figures / name)
    text = table(["width", "ANN acc", "variant", *(f"T={t}" for t in SUMMARY_T)], out)
    return text + f"\n\n![conversion loss against width and ANN accuracy]({name})"


def width_differs(page, payload: dict) -> str:
    """What else differs from the paper's setup (its appendix A.1), as a table."""
    recipe, rows, n = _recipe(payload), _rows(payload), _recipe(payload)["test_samples"]
    return table(
        ["", "the paper (VGG-16, CIFAR-10)", "this study"],
        [
            ["width", "1", ", ".join(f"{r['width']:g}" for r in rows)],
            ["epochs (plain-ReLU warm-up)", "300 (20)", f"{recipe['epochs']} ({recipe['warmup']})"],
            ["optimiser", "SGD, lr 0.01, momentum 0.9, weight decay 5e-4, x0.1 at 180/240/270",
             f"{OPTIMIZERS[recipe['optimizer']]}, lr {recipe['lr']:g}, cosine"],
            ["dropout (conv / FC)", "0.2 / 0.5", f"{recipe['conv_dropout']:g} / {recipe['fc_dropout']:g}"],
            ["conv init", "normal, std sqrt(2 / (k^2 n))", "the same"],
            ["thresholds", "max over the training set", f"max over {recipe['calibration_samples']} training images"],
            ["test images", "10,000", f"the first {n}"],
        ],
    )  # fmt: skip


def _plot_widths(rows: list[dict], paper_full_width: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(SUMMARY_T), figsize=(4 * len(SUMMARY_T), 7), sharey="row")
    for j, t in enumerate(SUMMARY_T):
        for shift, label in WIDTH_VARIANTS.items():
            pts = [(r["width"], r["ann_acc"], _loss(r, shift, t)) for r in rows]
            pts = [p for p in pts if p[2] is not None]
            if not pts:
                continue
            line = axes[0, j].plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=label)[0]
            axes[1, j].plot([p[1] for p in pts], [p[2] for p in pts], marker="o", color=line.get_color())
            if t in paper_full_width.get(shift, {}):
                axes[0, j].plot([1.0], [paper_full_width[shift][t]], marker="*", ms=14, ls="", color=line.get_color())
        axes[0, j].set_xscale("log", base=2)
        axes[0, j].set_xlabel("width (stars: the paper at width 1, Table 4)")
        axes[1, j].set_xlabel("the source ANN's test accuracy (%)")
        for ax in axes[:, j]:
            ax.set_title(f"conversion loss at T = {t}")
            ax.axhline(0, color="black", lw=0.8)
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("ANN acc - SNN acc (points)")
    axes[1, 0].set_ylabel("ANN acc - SNN acc (points)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pairs(before: dict, after: dict):
    """For each width both studies trained (in order): its key, both results, and the conversion loss
    ``(variant label, T, before, after)`` at the summary T where both have a number."""
    for w in sorted(set(before["results"]) & set(after["results"]), key=float):
        b, a = before["results"][w], after["results"][w]
        losses = [(label, t, _loss(b, s, t), _loss(a, s, t)) for s, label in WIDTH_VARIANTS.items() for t in SUMMARY_T]
        yield w, b, a, [x for x in losses if x[2] is not None and x[3] is not None]


def check(page, main: dict, check: dict) -> str:
    """A setup check beside the width study: the same widths trained with one setting changed
    (``width_check_<what>.json``, the block's second file), their conversion loss at the summary T side by side."""
    main, check, json_name = _int_keys(main), _int_keys(check), page.names[1]
    rm, rc = _recipe(main), _recipe(check)
    changed = [k for k in CHECK_KEYS if rm[k] != rc[k]]
    what = ", ".join(f"{k} {rm[k]} -> {rc[k]}" for k in changed) or "nothing (same recipe)"
    lines = [
        f"### Setup check: {what}",
        "",
        f"Generated from `docs/{json_name}`: the width-study recipe with only {what}; same "
        f"{'' if 'seed' in changed else 'seed, '}data, calibration and test images. Rerun with:",
        "",
        f"    {width_command_line(check)}",
        "",
        "| width | variant | T | loss, width-study recipe | loss, the check | change |",
        "|---|---|---|---|---|---|",
    ]
    for w, a, b, losses in _pairs(main, check):
        if a["ann_acc"] is None or b["ann_acc"] is None:
            continue
        lines.append(f"| {w} | ANN test accuracy | | {a['ann_acc']:.2f}% | {b['ann_acc']:.2f}% | "
                     f"{b['ann_acc'] - a['ann_acc']:+.2f} |")  # fmt: skip
        lines += [f"| {w} | {label} | {t} | {x:+.2f} | {y:+.2f} | {y - x:+.2f} |" for label, t, x, y in losses]
    return "\n".join(lines)


def network_change(page, paper: dict, five_pool: dict) -> str:
    """What changed when the width study was rerun on the paper's network: the widths both studies
    trained, with the same recipe, side by side (ANN accuracy and the loss at the summary T)."""
    lines = [
        "| width | parameters (paper / five-pool) | | five-pool | paper's | change |",
        "|---|---|---|---|---|---|",
    ]
    for w, b, a, losses in _pairs(_int_keys(five_pool), _int_keys(paper)):
        if a["ann_acc"] is None or b["ann_acc"] is None:
            lines.append(f"| {w} | | pending | | | |")
            continue
        params = f"{(a.get('parameters') or 0) / 1e6:.2f} M / {(b.get('parameters') or 0) / 1e6:.2f} M"
        lines.append(f"| {w} | {params} | ANN test acc | {b['ann_acc']:.2f}% | {a['ann_acc']:.2f}% | "
                     f"{a['ann_acc'] - b['ann_acc']:+.2f} |")  # fmt: skip
        lines += [
            f"| {w} | | {label}, loss at T = {t} | {x:+.2f} | {y:+.2f} | {y - x:+.2f} |" for label, t, x, y in losses
        ]
    return "\n".join(lines)


def _on(flag) -> str:
    return "on" if flag else "off"


def gpu(page, g: dict) -> str:
    """The full-width VGG-16 trained and converted on a GPU (``benchmarks/gpu.sh``, collected by
    ``benchmarks/collect_gpu.py`` into docs/gpu_full_width.json)."""
    m, r, tr, sub = g.get("machine", {}), g.get("recipe", {}), g.get("training", {}), g.get("subset", {})
    n_train = sub.get("train_images", "?")
    conv, diag = g.get("conversion"), g.get("diagnostics")
    lines = [
        network(page, g),
        "",
        "Generated from `docs/gpu_full_width.json`: the training step of `benchmarks/gpu.sh` on one "
        f"**{m.get('gpu', '?')}** (torch {m.get('torch', '?')}, cuDNN TF32 {_on(m.get('cudnn_allow_tf32'))}, "
        f"matmul TF32 {_on(m.get('matmul_allow_tf32'))}), collected with `python benchmarks/collect_gpu.py <its "
        "output folder>`. The GPU machine has no network and takes 64 MiB of files, so it trains on the first "
        f"{n_train} training images (`benchmarks/prepare_gpu_payload.sh`) and tests on the first "
        f"{sub.get('test_images', '?')} test images, the width study's test images.",
        "",
        f"- Recipe: VGG-16 as above, threshold ReLU after {r.get('model.relu_warmup_epochs', '?')} "
        f"plain-ReLU epochs, SGD lr {r.get('model.optimizer.lr', '?')}, "
        f"momentum {r.get('model.optimizer.momentum', '?')}, "
        f"weight decay {r.get('model.optimizer.weight_decay', '?')}, cosine over {r.get('trainer.max_epochs', '?')} "
        f"epochs (at most {r.get('trainer.max_time', '?')} of training), batch 128, conv dropout 0, FC dropout 0.2; "
        f"thresholds: max over {r.get('snn.calibration_samples', '?')} training images; membrane shift.",
    ]
    if tr:
        lines.append(
            f"- Trained {tr['epochs_done']} epochs: train accuracy {tr['train_acc']:.1f}% (augmented), "
            f"test accuracy {tr['val_acc']:.1f}% on the 2000 test images (the validation curve of the run)."
        )
    if conv is None:
        steps = "; ".join(f"{x['step']}: exit {x['exit']} after {x['seconds']} s" for x in g.get("steps", []))
        note = g.get("note") or "The conversion did not finish in its time limit."
        return "\n".join([*lines, "", f"**No conversion result at full width yet.** {note} Steps: {steps}."])
    ts = sorted(conv["snn_acc"], key=int)
    per_t = (diag or {}).get("per_t", {})
    lines += [
        f"- ANN (threshold ReLU) test accuracy **{conv['ann_acc']:.2f}%** on {conv['num_test_images']} images; "
        f"simulation of all T in one pass: {conv['seconds']['simulation']:.1f} s.",
        "",
        "| T | SNN acc | loss (points) | firing rate | synaptic ops / image | energy SNN / ANN |",
        "|---|---|---|---|---|---|",
    ]
    for t in ts:
        d = per_t.get(t)
        extra = (
            f"{d['firing_rate']:.3f} | {d['sops_per_image'] / 1e6:.1f} M | {d['snn_over_ann']:.2f}"
            if d else "- | - | -"
        )  # fmt: skip
        lines.append(f"| {t} | {conv['snn_acc'][t]:.2f}% | {conv['conversion_loss'][t]:+.2f} | {extra} |")
    if diag:
        em = diag.get("energy_model") or {}
        lines += [
            "",
            "Firing rate, synaptic operations and energy from `test --snn.diagnostics true` on the same checkpoint "
            f"(its accuracy: {diag['ann_acc']:.2f}% ANN, the same test images); energy with {em.get('ac_pj')} pJ per "
            f"accumulate and {em.get('mac_pj')} pJ per MAC ({em.get('source')}).",
        ]
    return "\n".join(lines)
