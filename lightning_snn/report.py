"""The conversion dashboard: one PNG of a run's ``snn_results.json`` (and the same plots for W&B).

Six panels, from the keys :class:`lightning_snn.diagnostics.Diagnostics` adds to the results:

1. **Accuracy vs T**: the SNN at every simulation length, the ANN as a dashed line.
2. **Accuracy vs energy per image** (the Pareto curve): each point one T; the ANN as a star.
3. **Energy per image vs T**: the SNN's accumulates (SOPs) and its first layer's MACs on the
   analog input, stacked, against the ANN's MACs.
4. **Per-layer conversion error vs T**: ``mean |rate x V_th - min(a, V_th)| / mean min(a, V_th)``
   per IF layer (solid, coloured by depth) beside the quantisation error the paper's eq. (14)-(15)
   predict for that layer alone (dashed, same colour).
5. **Firing rate per layer** at the largest T (spikes per neuron per step).
6. **SOPs per layer** at the largest T: which layer's spikes drive the synapses.

Regenerate the picture of a finished run::

    python -m lightning_snn.report runs/.../snn_results.json            # -> snn_report.png beside it
    python -m lightning_snn.report runs/.../snn_results.json -o out.png

A missing, damaged or foreign results file (:func:`lightning_snn.results.read_results`) or an
unwritable picture exits with status 1 and one line that says what is wrong.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_snn.neurons import quantisation_factor
from lightning_snn.results import (
    RESULTS_SCHEMA_VERSION,
    SCHEMA_KEY,
    ResultsError,
    check_results,
    dashboard_name,
    read_results,
)

#: Keys a results dict needs for the dashboard (``Diagnostics.to_json()`` plus the accuracies).
REQUIRED_KEYS = ("snn_acc", "ann_acc", "firing_rates", "synaptic_ops", "energy", "layer_errors")


def _check(results: Mapping[str, Any]) -> list[str]:
    missing = [k for k in REQUIRED_KEYS if k not in results] if isinstance(results, Mapping) else []
    if missing and results.get(SCHEMA_KEY, RESULTS_SCHEMA_VERSION) == RESULTS_SCHEMA_VERSION:
        raise ValueError(
            f"the results have no {missing}: the dashboard needs a run with snn.diagnostics: true "
            "(the default), whose snn_results.json holds firing_rates, synaptic_ops, energy and layer_errors."
        )
    check_results(results)  # another version, or a damaged or foreign dict
    return sorted(results["firing_rates"], key=int)


def _predicted_step(results: Mapping[str, Any]) -> str:
    """The legend's words for the theory overlay: the mean quantisation error per neuron that the
    run's shift predicts (:func:`~lightning_snn.neurons.quantisation_factor` of the offset it gives
    the charge, in steps of ``V_th / T``; the dashed lines are each layer's own)."""
    shift, scale = results.get("shift"), results.get("shift_scale", 1.0)
    if shift == "constant":
        return "a floor offset by\nT x the constant shift"
    if shift not in ("none", "membrane", "bias"):
        return "per layer"
    offset = 0.0 if shift == "none" else scale / 2  # in steps of V_th / T
    named = {0.0: "V_th/(2T), a floor", 0.5: "V_th/(4T), a rounding"}
    return named.get(offset, f"{quantisation_factor(offset):.3g}·V_th/T\n(shift x {scale:g})")


def _short(name: str) -> str:
    return name if len(name) <= 14 else "…" + name[-13:]


def write_dashboard(results: Mapping[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Draw the six-panel dashboard of ``results`` (a ``snn_results.json`` dict) into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    keys = _check(results)
    ts = [int(k) for k in keys]
    t_max = keys[-1]
    acc = [results["snn_acc"][k] for k in keys]
    energy = [results["energy"][k]["snn_uj"] for k in keys]
    layers = list(results["firing_rates"][t_max]["layers"])
    err_layers = [n for n in layers if n in results["layer_errors"][t_max]]
    colours = plt.cm.viridis([i / max(len(err_layers) - 1, 1) for i in range(len(err_layers))])

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    (a_acc, a_pareto, a_energy), (a_err, a_rate, a_sops) = axes

    a_acc.plot(ts, acc, "o-", color="C0", label="SNN")
    a_acc.axhline(results["ann_acc"], color="k", ls="--", lw=1, label=f"ANN {results['ann_acc']:.2f}%")
    a_acc.set(xscale="log", xlabel="simulation length T (steps)", ylabel="test accuracy (%)", title="Accuracy vs T")
    a_acc.set_xticks(ts, [str(t) for t in ts])
    a_acc.legend(loc="best")

    ann_uj = results["energy"][t_max]["ann_uj"]
    a_pareto.plot(energy, acc, "o-", color="C0", label="SNN (one point per T)")
    for t, e, a in zip(ts, energy, acc, strict=True):
        a_pareto.annotate(f"T={t}", (e, a), textcoords="offset points", xytext=(4, -10), fontsize=8)
    a_pareto.plot([ann_uj], [results["ann_acc"]], "*", ms=14, color="k", label=f"ANN ({ann_uj:.3g} µJ)")
    a_pareto.set(
        xscale="log" if min([*energy, ann_uj]) > 0 else "linear",  # 0 J: a net that never fires and has no input
        xlabel="energy per image (µJ)",
        ylabel="test accuracy (%)",
        title="Accuracy vs energy (Pareto)",
    )
    a_pareto.legend(loc="best")

    sop_uj = [results["energy"][k]["sop_uj"] for k in keys]
    mac_uj = [results["energy"][k]["input_mac_uj"] for k in keys]
    a_energy.stackplot(ts, sop_uj, mac_uj, labels=["SNN: SOPs x E_AC", "SNN: input-layer MACs x E_MAC"], alpha=0.8)
    a_energy.axhline(ann_uj, color="k", ls="--", lw=1, label="ANN: MACs x E_MAC")
    model = results.get("energy_model", {})
    a_energy.set(
        xscale="log",
        xlabel="simulation length T (steps)",
        ylabel="energy per image (µJ)",
        title=f"Energy per image (E_AC {model.get('ac_pj', 0.9)} pJ, E_MAC {model.get('mac_pj', 4.6)} pJ)",
    )
    a_energy.set_xticks(ts, [str(t) for t in ts])
    a_energy.legend(loc="upper left", fontsize=8)

    positive = False
    for colour, name in zip(colours, err_layers, strict=True):
        rows = [results["layer_errors"][k][name] for k in keys]
        rel = [r["relative"] if r["relative"] is not None else float("nan") for r in rows]
        mean = [r["mean_activation"] or float("nan") for r in rows]
        # None: not predicted (a neuron model without a quantisation error): not drawn
        predicted = [
            float("nan") if r["predicted_mae"] is None else r["predicted_mae"] / m
            for r, m in zip(rows, mean, strict=True)
        ]
        positive = positive or any(v > 0 for v in rel + predicted)
        a_err.plot(ts, rel, "o-", color=colour, ms=3, lw=1.2, label=_short(name))
        a_err.plot(ts, predicted, "--", color=colour, lw=0.8, alpha=0.7)
    a_err.plot([], [], "k--", lw=0.8, label=f"predicted, quantisation\nalone: {_predicted_step(results)}\n(eq. 14-15)")
    a_err.set(
        xscale="log",
        yscale="log" if positive else "linear",
        xlabel="simulation length T (steps)",
        ylabel="|rate·V_th − a| / mean a",
        title="Per-layer conversion error vs T",
    )
    a_err.set_xticks(ts, [str(t) for t in ts])
    a_err.legend(fontsize=6, ncol=2, loc="lower left")

    rates = results["firing_rates"][t_max]
    x = range(len(layers))
    a_rate.bar(x, [rates["layers"][n] for n in layers], color="C2")
    a_rate.axhline(rates["network"], color="k", ls="--", lw=1, label=f"network {rates['network']:.3f}")
    a_rate.set(ylabel="spikes per neuron per step", title=f"Firing rate per layer (T={t_max})")
    a_rate.set_xticks(list(x), [_short(n) for n in layers], rotation=60, ha="right", fontsize=7)
    a_rate.legend()

    sops = results["synaptic_ops"][t_max]
    a_sops.bar(x, [sops["layers"][n] for n in layers], color="C1")
    a_sops.set(
        ylabel="SOPs per image",
        title=f"Synaptic operations per layer (T={t_max})\n{sops['per_image']:.3g} SOPs per image in all; "
        f"the ANN: {sops['ann_macs']:.3g} MACs",
    )
    a_sops.set_xticks(list(x), [_short(n) for n in layers], rotation=60, ha="right", fontsize=7)

    if title is None:
        title = (
            f"SNN conversion: shift {results.get('shift', '?')}, readout {results.get('readout', '?')}, "
            f"{results.get('num_test_images', '?')} test images"
        )
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for ax in (a_acc, a_pareto, a_energy, a_err):  # log axes: plain numbers, no minor-tick labels
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
    for axis in (a_pareto.xaxis, a_err.yaxis):  # continuous log axes: 1-2-5 ticks
        if axis.get_scale() != "log":
            continue
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def wandb_payload(results: Mapping[str, Any]) -> dict[str, Any]:
    """W&B objects for ``run.log``: tables and plots of accuracy vs energy (Pareto), per-layer error
    vs T, firing rate and SOPs per layer (the callback logs the scalars per T to every logger)."""
    import wandb

    keys = _check(results)
    t_max = keys[-1]
    layers = list(results["firing_rates"][t_max]["layers"])
    summary = wandb.Table(
        columns=["T", "snn_acc", "energy_uj", "ann_energy_uj", "sops_per_image", "firing_rate"],
        data=[
            [
                int(k),
                results["snn_acc"][k],
                results["energy"][k]["snn_uj"],
                results["energy"][k]["ann_uj"],
                results["synaptic_ops"][k]["per_image"],
                results["firing_rates"][k]["network"],
            ]
            for k in keys
        ],
    )
    per_layer = wandb.Table(
        columns=["T", "layer", "firing_rate", "sops_per_image", "mae", "relative_error", "predicted_mae"],
        data=[
            [
                int(k),
                n,
                results["firing_rates"][k]["layers"][n],
                results["synaptic_ops"][k]["layers"][n],
                *(
                    [results["layer_errors"][k][n][c] for c in ("mae", "relative", "predicted_mae")]
                    if n in results["layer_errors"][k]
                    else [None, None, None]
                ),
            ]
            for k in keys
            for n in layers
        ],
    )
    err_layers = [n for n in layers if n in results["layer_errors"][t_max]]
    rates_at_max = wandb.Table(
        columns=["layer", "firing_rate", "sops_per_image"],
        data=[
            [n, results["firing_rates"][t_max]["layers"][n], results["synaptic_ops"][t_max]["layers"][n]]
            for n in layers
        ],
    )
    payload: dict[str, Any] = {
        "snn/diagnostics": summary,
        "snn/diagnostics_per_layer": per_layer,
        "snn/acc_vs_energy": wandb.plot.scatter(
            summary, "energy_uj", "snn_acc", title="SNN accuracy vs energy per image (uJ), one point per T"
        ),
        "snn/layer_error_vs_T": wandb.plot.line_series(
            xs=[int(k) for k in keys],
            ys=[[results["layer_errors"][k][n]["relative"] or 0.0 for k in keys] for n in err_layers],
            keys=err_layers,
            title="Per-layer relative error |rate x V_th - a| / mean a vs T",
            xname="T",
        ),
        "snn/firing_rate_per_layer": wandb.plot.bar(
            rates_at_max, "layer", "firing_rate", title=f"Firing rate per layer (T={t_max})"
        ),
        "snn/sops_per_layer": wandb.plot.bar(
            rates_at_max, "layer", "sops_per_image", title=f"SOPs per layer (T={t_max})"
        ),
    }
    return payload


def main(argv: Sequence[str] | None = None) -> Path:
    """``python -m lightning_snn.report RESULTS.json [-o PNG]``: redraw a run's dashboard."""
    parser = argparse.ArgumentParser(description="Draw the conversion dashboard of a run's snn_results.json.")
    parser.add_argument("results", help="path to snn_results.json")
    parser.add_argument("-o", "--output", default=None, help="PNG path (default: snn_report.png beside the results)")
    parser.add_argument("--title", default=None, help="figure title (default: the run's settings)")
    args = parser.parse_args(argv)
    source = Path(args.results)
    out = Path(args.output) if args.output else source.with_name(dashboard_name(source.name))
    try:
        write_dashboard(read_results(source), out, args.title)
    except ResultsError as exc:
        parser.exit(1, f"error: {exc}\n")
    except ValueError as exc:  # the results hold no diagnostics
        parser.exit(1, f"error: {source}: {exc}\n")
    except OSError as exc:
        reason = exc.strerror or exc
        parser.exit(1, f"error: cannot write the picture {str(out)!r} ({reason}): give -o a writable path.\n")
    print(out)
    return out


if __name__ == "__main__":
    main()
