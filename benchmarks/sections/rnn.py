"""docs/RNN.md from docs/rnn_study.json (benchmarks/rnn_study.py), docs/rnn_error_sources.json
(benchmarks/rnn_error_sources.py) and the paper's appendix A.4 numbers in docs/paper_numbers.json.
Mean ± sample std over the seeds each label has."""

from __future__ import annotations

import math
from pathlib import Path

from sections import table

#: The labels of the paper's comparison, in the paper's order.
COLUMNS = {"rnn_t": "threshold-ReLU RNN -> SNN", "spiking_rnn": "surrogate-gradient SNN", "rnn_relu": "ReLU-RNN -> SNN"}
#: The paper-layout table's columns: (label, readout) each, "ann" the source network.
LAYOUT = {
    "RNN": ("rnn_t", "ann"),
    "converted SNN": ("rnn_t", "spiking"),
    "surrogate SNN": ("spiking_rnn", "spiking"),
    "ReLU-RNN -> SNN": ("rnn_relu", "spiking"),
    "ReLU-RNN (its source)": ("rnn_relu", "ann"),
}


def _runs(data: dict, label: str) -> list[dict]:
    return [data["runs"][label][s] for s in sorted(data["runs"].get(label, {}), key=int)]


def _ms(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{m:.2f} ± {s:.2f}" if len(values) > 1 else f"{m:.2f}"


def _axes(data: dict) -> tuple[list[str], list[str]]:
    """The steps per word K and loop counts L measured (those of the first run)."""
    run = next(iter(next(iter(data["runs"].values())).values()))
    ks = sorted(run["test"]["analog_acc"], key=int)
    return ks, sorted(run["test"]["spiking_acc"][ks[0]], key=int)


def paper_k(data: dict) -> str:
    """The K of the paper-layout row: the surrogate SNN's trained steps per word (4, its config's, if it was
    not run; the same simulation length for every column, as A.4 asks), or the largest K measured below it
    where it was not measured (a tiny run)."""
    runs = _runs(data, "spiking_rnn")
    k = int(runs[0]["trained_steps_per_word"]) if runs else 4
    measured = [int(x) for x in _axes(data)[0]]
    return str(k if k in measured else max([x for x in measured if x < k], default=measured[0]))


def _seeds(data: dict, label: str) -> str:
    seeds = sorted(data["runs"].get(label, {}), key=int)
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(seeds)})" if seeds else "not run"


def commands(page, data: dict) -> str:
    lines = []
    for label in data["runs"]:
        runs = _runs(data, label)
        sets = "".join(f" --set {s}" for s in runs[0]["set"])
        config = runs[0]["config"].removeprefix("configs/sst/").removesuffix(".yaml")
        named = f" --label {label}" if label != config else ""
        seeds = " ".join(sorted(data["runs"][label], key=int))
        lines.append(f"python benchmarks/rnn_study.py --config {config}{named} --seeds {seeds} --threads 1{sets}")
    example = _runs(data, next(iter(data["runs"])))[0]["command"]
    return (
        "```bash\n"
        + "\n".join(lines)
        + "\npython benchmarks/rnn_study.py --summary     # prints the grids, draws docs/rnn_study.png"
        + "\npython benchmarks/render.py docs/RNN.md      # these tables\n```\n\n"
        + f"Each (config, seed) is one CLI run, e.g. `{example}`, then its last checkpoint on the dev split. "
        + f"Machine: {data['machine']}."
    )


def paper_layout(page, data: dict, refs: dict) -> str:
    """At K = :func:`paper_k` and the largest L measured (rule 4: the looped output layer closest to the
    fully connected readout)."""
    k, loops = paper_k(data), _axes(data)[1][-1]
    paper = refs["a4_rnn"]  # the first four columns, under the same names
    rows = [
        [f"paper (A.4, {paper['split']})", *(f"{100 * float(paper[c]):.2f}" for c in list(LAYOUT)[:4]), "not given"]
    ]
    for split in ("dev", "test"):
        rows.append([f"ours, {split} (sentences)", *(_cell(data, *c, split, k, loops) for c in LAYOUT.values())])
    said = ", ".join(f"{COLUMNS[label]} {_seeds(data, label)}" for label in COLUMNS)
    return (
        f"Accuracy (%) at K = {k} steps per word (the surrogate SNN's training length) and L = {loops} loops of "
        f"the spiking output layer; mean ± std over seeds: {said}.\n\n" + table(["", *LAYOUT], rows)
    )


def _cell(data: dict, label: str, readout: str, split: str, k: str, loops: str) -> str:
    runs = _runs(data, label)
    return _ms([grid(r, split, readout, k, loops) for r in runs]) if runs else "not run"


def loss(page, data: dict) -> str:
    """The conversion loss (source minus SNN, points), paired per seed, at every K (largest L and analog)."""
    ks, loops = _axes(data)
    rows = []
    for label in ("rnn_t", "rnn_relu"):
        runs = _runs(data, label)
        if not runs:
            rows.append([label, "", "", "not run"])
            continue
        for split in ("dev", "test"):
            for readout, name, lp in (("spiking", f"spiking, L = {loops[-1]}", loops[-1]), ("analog", "analog", None)):
                cells = [_ms([r[split]["ann_acc"] - grid(r, split, readout, k, lp) for r in runs]) for k in ks]
                rows.append([label, split, name, *cells])
    return table(["source", "split", "readout", *(f"K={k}" for k in ks)], rows)


def accuracy_grid(page, data: dict) -> str:
    """Test accuracy of each label's SNN at every K and L (and the analog readout), mean ± std."""
    ks, loops = _axes(data)
    parts = []
    for label in data["runs"]:
        runs = _runs(data, label)
        readouts = [("analog", None), *(("spiking", lp) for lp in loops)]
        rows = [[k, *(_ms([grid(r, "test", ro, k, lp) for r in runs]) for ro, lp in readouts)] for k in ks]
        source = _ms([r["test"]["ann_acc"] for r in runs])
        title = f"**{label}** ({_seeds(data, label)}; source network on test: {source})"
        parts.append(title + "\n\n" + table(["K", "analog", *(f"L={lp}" for lp in loops)], rows))
    return "\n\n".join(parts)


def cost(page, data: dict) -> str:
    """Minutes per run, and the firing rate and synaptic operations at the paper-layout K."""
    k = paper_k(data)
    rows = []
    for label in data["runs"]:
        runs = _runs(data, label)
        minutes = [_ms([r[key] / 60 for r in runs]) for key in ("wall_s", "cpu_s")]
        at_k = []  # absent where K was not simulated
        for key, unit in (("firing_rates", 1), ("sops_per_sentence", 1e6)):
            at_k.append(_ms([r[key][k] / unit for r in runs]) if all(k in r[key] for r in runs) else "")
        rows.append([label, _seeds(data, label), *minutes, *at_k])
    header = ["label", "seeds", "wall min per run", "CPU min per run", f"firing rate K={k}", f"M SOPs/sentence K={k}"]
    return table(header, rows)


def figure(page, data: dict) -> str:
    name = "rnn_study.png"
    if page.figures is not None:
        draw(data, page.figures / name)
    return f"![test accuracy against steps per word K and loops L]({name})"


def error_sources(page, errors: dict) -> str:
    """Where the converted recurrent layer departs from its RNN (benchmarks/rnn_error_sources.py, dev split)."""
    rows = [
        [
            k,
            *(f"{e['relative_error'][n]:.3f}" for n in ("snn", "signed", "quantised_rnn", "even_current")),
            *(f"{e[n]:.1f}%" for n in ("count_mismatch_pct", "signed_mismatch_pct", "remaining_outside_pct")),
            *(f"{e[n]:.2f}" for n in ("snn_analog_dev_acc", "signed_analog_dev_acc")),
        ]
        for k, e in sorted(errors["per_k"].items(), key=lambda kv: int(kv[0]))
    ]
    header = ["K", "error: IF SNN", "signed SNN", "quantised RNN", "even current", "counts != q_K: IF", "signed"]
    header += ["r outside [0, theta/K)", "dev acc: IF (analog)", "signed (analog)"]
    intro = (
        f"`{errors['checkpoint']}` (theta = {errors['theta']:.4g}, tau = {errors['tau']}), on the "
        f"{errors['dev_sentences']} dev sentences, no shift; the RNN's dev accuracy {errors['rnn_dev_acc']:.2f}%. "
        f"A word's own input current lies beyond [-theta, theta] at {errors['input_current_beyond_theta_pct']:.1f}% "
        "of neuron-words. Error = mean |x - min(o, theta)| per neuron-word over the mean min(o, theta):\n\n"
    )
    return intro + table(header, rows)


def mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
    return m, s


def grid(run: dict, split: str, readout: str, k: str, loops: str | None) -> float:
    """The run's accuracy on ``split``: the source's (``readout`` "ann"), or its SNN's at K (and L)."""
    acc = run[split][f"{readout}_acc"]
    if readout == "ann":
        return acc
    return acc[k][loops] if loops is not None else acc[k]


def draw(data: dict, png: Path) -> None:
    """Test accuracy against K, one panel per label (analog, and spiking at every L)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (ks, loops), labels = _axes(data), list(data["runs"])
    x = [int(k) for k in ks]
    fig, axes = plt.subplots(1, len(labels), figsize=(5 * len(labels), 4), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        runs = _runs(data, label)
        src = mean_std([r["test"]["ann_acc"] for r in runs])[0]
        ax.axhline(src, color="k", ls="--", lw=1, label=f"source {src:.1f}%")
        ys = [mean_std([grid(r, "test", "analog", k, None) for r in runs])[0] for k in ks]
        ax.plot(x, ys, "o-", color="k", label="SNN, analog readout")
        for i, lp in enumerate(loops):
            ys = [mean_std([grid(r, "test", "spiking", k, lp) for r in runs])[0] for k in ks]
            ax.plot(x, ys, ".-", color=plt.cm.viridis(i / max(len(loops) - 1, 1)), label=f"SNN, spiking, L={lp}")
        ax.set(xscale="log", xlabel="SNN steps per word K", ylabel="test accuracy (%)", title=label)
        ax.set_xticks(x, [str(v) for v in x])
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"\nwrote {png}")
