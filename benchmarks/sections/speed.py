"""docs/BENCHMARKS.md, issue 22: the fused IF update and the chunk rule from
``benchmarks/simulation_speed.py`` runs (one JSON per configuration), the IF update alone from
``benchmarks/fused_update.py``, the sparse study from ``benchmarks/sparse_crossover.py``."""

from __future__ import annotations

from sections import table


def _config(run: dict) -> str:
    c = run["config"]
    width = "full width" if c["width"] == 1 else f"width {c['width']:g}"
    return f"{width}, batch {c['batch_size']}, T {c['T']}"


def _cpu(run: dict, key: str) -> float | None:
    return run["times_s"][key]["cpu_median"] if key in run["times_s"] else None


def _x(value: float | None, fmt: str = ".2f") -> str:
    return "" if value is None else f"{value:{fmt}}x"


def fused(page, *runs: dict) -> str:
    """Per configuration: ours vs T ANN forwards, fused vs eager, vs the engine before, the curve (CPU time)."""
    rows = []
    for run in runs:
        r, cfg, load = run["ratios_of_cpu_time"], run["config"], run["load_average"]
        rows.append([
            _config(run), str(cfg["auto_time_chunk"]), f"{_cpu(run, 'ours_auto'):.2f}",
            f"{_cpu(run, 'ann_forward_x_T'):.2f}", f"**{_x(r.get('ours_over_T_x_ann_forward'), '.3f')}**",
            *(_x(r.get(k), ".3f") for k in ("fused_over_eager_time", "ours_over_before_time")),
            str(cfg["old_auto_time_chunk"]), _x(r.get("curve_one_pass_over_one_T_max_run"), ".3f"),
            str(run["checks"].get("fused_vs_eager", {}).get("bit_identical", "")),
            f"{load['before'][0]:.1f} / {load['after'][0]:.1f}",
        ])  # fmt: skip
    header = "run (VGG-16, 1 thread)|auto chunk|ours CPU s|T x ANN CPU s|ours / T x ANN|fused / eager|ours / before|"
    header += "before's chunk|curve / one T_max run|fused == eager (bits)|load before / after"
    return table(header.split("|"), rows)


def chunks(page, *runs: dict) -> str:
    """The time_chunk sweep of each run (CPU time, / the best chunk), and where "auto" lands."""
    sweep_chunks = sorted({c for run in runs for c in run["config"]["time_chunks"]})
    rows = []
    for run in runs:
        cfg = run["config"]
        sweep = {c: t for c in cfg["time_chunks"] if (t := _cpu(run, f"ours_chunk_{c}")) is not None}
        best_c = min(sweep, key=sweep.get)
        best, auto_c = sweep[best_c], cfg["auto_time_chunk"]
        at_auto = sweep.get(auto_c)
        rows.append([
            _config(run), f"{cfg['batch_size'] * cfg['largest_activation_bytes_per_sample'] / 2**20:g}",
            *(f"{sweep[c]:.2f} ({sweep[c] / best:.2f})" if c in sweep else "" for c in sweep_chunks),
            str(best_c), str(auto_c), _x(_cpu(run, "ours_auto") / best),
            _x(None if at_auto is None else at_auto / best),
        ])  # fmt: skip
    header = ["run (1 thread)", "MB per step", *(f"chunk {c}" for c in sweep_chunks), "best", "auto"]
    return table([*header, "auto row / best", "sweep at auto's chunk / best"], rows)


def build(page, *runs: dict) -> str:
    """The C kernel's build from an empty cache and its load from the cache (runs with --build-time)."""
    rows = [
        [
            _config(run), f"{b['cold']['seconds']:.2f} s", f"{b['cached']['seconds'] * 1e3:.1f} ms",
            f"{b['cold_process_s']:.1f} s / {b['cached_process_s']:.1f} s",
            " ".join(f"`{f}`" for f in b["cold"].get("flags", [])),
        ]
        for run in runs
        if "cold" in (b := run.get("fused_build", {}))
    ]  # fmt: skip
    header = ["run", "build (empty cache)", "load (cached)", "whole fresh process, cold / cached", "flags"]
    return table(header, rows)


def profile(page, *runs: dict) -> str:
    """torch.profiler self time per op family, ours (auto) vs T ANN forwards (runs with --profile)."""
    families = ("dense (conv/linear/pool)", "elementwise (IF neuron, clamp)", "readout", "other")
    rows = [
        [_config(run), label, *(f"{s[f]:.2f}" for f in families), f"{sum(s.values()):.2f}"]
        for run in runs
        if run.get("profile")
        for name, label in (("ours_auto", "ours (auto)"), ("ann_forward_x_T", "T x ANN"))
        if (s := run["profile"][name]["self_time_s"])
    ]
    header = ["run", "engine", "dense s", "element-wise s", "readout s", "other s", "total s"]
    return table(header, rows) if rows else ""


def _crossover(value: float | str) -> str:
    """A crossover density as a percentage; "< r" / "> r" (faster / slower at every density measured) too."""
    if isinstance(value, str):
        sign, _, rate = value.partition(" ")
        return f"{sign} {100 * float(rate):g}%"
    return f"{100 * value:.1f}%"


_METHODS = {"csr_torch": "CSR matmul", "unfold_csr_torch": "im2col + CSR matmul"}


def sparse_layers(page, data: dict) -> str:
    """Per layer: the crossover density of each event-driven method and its time / dense at a few densities."""
    rates = data["results"][0]["rates"]
    shown = [r for r in (0.01, 0.03, 0.1, 0.3) if r in rates]
    rows = []
    for res in data["results"]:
        other, ratio = next(m for m in res["crossover"] if m != "event_c"), res["ratio_to_dense"]["event_c"]
        rows.append([
            res["layer"], str(res["rows"]), f"**{_crossover(res['crossover']['event_c'])}**",
            f"{_crossover(res['crossover'][other])} ({_METHODS[other]})",
            *(f"{ratio[rates.index(r)]:.2f}" for r in shown), f"{res['max_rel_diff']['event_c']:.0e}",
        ])  # fmt: skip
    header = ["layer", "rows", "crossover, C kernel", "crossover, PyTorch sparse"]
    return table([*header, *(f"C / dense at {100 * r:g}%" for r in shown), "max rel. diff"], rows)


def sparse_network(page, data: dict) -> str:
    """The real-network test: dense vs event-driven layers on one trained network."""
    n = data["network"]
    cpu, dens, share, acc, counts = (n[k] for k in ("cpu_time_s", "input_density", "event_share_of_calls", "accuracy",
                                                    "spike_count_differences"))  # fmt: skip
    rows = [[name, f"{100 * dens[name]:.1f}%", f"{100 * share.get(name, 0.0):.0f}%"] for name in dens]
    head = (
        f"{n['network']}, {n['images']} CIFAR-10 test images, T = {n['T']}, time_chunk {n['time_chunk']}, "
        f"crossovers {n['crossover']}; CPU time (one thread, interleaved, median): dense SNN {cpu['dense']:.2f} s, "
        f"event-driven SNN {cpu['event']:.2f} s, T x ANN {cpu['ann_x_T']:.2f} s: **event / dense = "
        f"{n['event_over_dense']:.2f}x**, dense / T x ANN = {n['dense_over_ann_x_T']:.2f}x, event / T x ANN = "
        f"{n['event_over_ann_x_T']:.2f}x. Accuracy ANN {100 * acc['ann']:.1f}%, SNN dense "
        f"{100 * acc['snn_dense']:.1f}%, SNN event-driven {100 * acc['snn_event']:.1f}%; predictions equal: "
        f"{n['predictions_equal']}, max |output difference| {n['max_abs_output_diff']:.1e}, identical spike "
        f"counts in {n['layers_with_identical_spike_counts']} layers (neuron x image counts that differ: "
        f"{counts['neurons_x_images_differing_total']}, of {counts['spikes_total']:,} spikes)."
    )
    return head + "\n\n" + table(["layer (input of)", "input density", "calls event-driven"], rows)


def fused_update(page, data: dict) -> str:
    """The IF update alone (``benchmarks/fused_update.py``): fused vs eager per shape, neuron and counting."""
    rows = [
        [
            f"{'x'.join(map(str, r['shape']))}, {r['steps']} step(s)", f"{r['megabytes_per_step']:g}", r["neuron"],
            "on" if r["record_spikes"] else "off", f"{100 * r['spike_rate']:.1f}", f"{1e3 * r['cpu_s']['fused']:.2f}",
            f"{1e3 * r['cpu_s']['eager']:.2f}", f"**{r['fused_over_eager']:.2f}x**", str(r["bit_identical"]),
        ]
        for r in data["rows"]
    ]  # fmt: skip
    header = ["input (B x C x H x W), chunk", "MB per step", "neuron", "counting", "spikes %", "fused ms", "eager ms"]
    return table([*header, "fused / eager", "bit-identical"], rows)
