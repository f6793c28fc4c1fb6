"""docs/CONVERTER.md from docs/converter_agreement.json (benchmarks/converter_agreement.py) and
docs/resnet18_probe.json (its --probe)."""

from __future__ import annotations

from sections import by_t, table


def _ts(runs: dict) -> list[str]:
    return sorted(next(iter(runs.values()))["agreement"], key=int)


def _percent(values: dict, ts: list[str]) -> list[str]:
    return [f"{x}%" for x in by_t(values, ts, ".1f")]


def command(page, data: dict) -> str:
    return f"```bash\n{data['command']}\n```"


def setup(page, data: dict) -> str:
    return (
        f"Real CIFAR-10: each network trained for one epoch on the first {data['train_images']} training images "
        f"(Adam, lr {data['lr']}, batch 128, plain ReLU as written), calibrated on {data['calibration_images']} "
        f"training images (max), converted with the membrane shift, simulated on the first {data['test_images']} "
        f"test images. Agreement = SNN prediction equals its own ANN's prediction. Machine: {data['machine']}."
    )


def agreement(page, data: dict) -> str:
    ts = _ts(data["models"])
    header = ["network", "activation sites", "max-pools exact / gated", "ANN acc"]
    header += [f"agreement T={t}" for t in ts] + [f"SNN acc T={ts[-1]}", "ANN unchanged"]
    rows = [
        [name, str(r["activation_sites"]), f"{r['max_pools_exact']} / {r['max_pools_gated']}", f"{r['ann_acc']:.1f}%",
         *_percent(r["agreement"], ts), f"{r['snn_acc'][ts[-1]]:.1f}%", str(r["ann_state_dict_unchanged"])]
        for name, r in data["models"].items()
    ]  # fmt: skip
    return table(header, rows)


def signed(page, data: dict) -> str:
    """The same networks and thresholds with signed IF neurons (empty if they were not run)."""
    ts, rows = _ts(data["models"]), []
    for name, r in data["models"].items():
        if (s := r.get("by_neuron", {}).get("signed")) is None:
            continue
        if "refused" in s:
            rows.append([name, f"refused: {s['refused']}", *[""] * len(ts)])
        else:
            rows.append([name, *_percent(s["agreement"], ts), f"{s['snn_acc'][ts[-1]]:.1f}%"])
    return table(["network", *(f"agreement T={t}" for t in ts), f"SNN acc T={ts[-1]}"], rows) if rows else ""


def refusals(page, data: dict) -> str:
    return "\n".join(f"- {label}: `{msg}`" for label, msg in data["refusals"].items())


def times(page, data: dict) -> str:
    return "Time per network (seconds, 2 shared CPU cores): " + "; ".join(
        f"{n}: train {r['seconds']['train']:.0f}, simulate {r['seconds']['simulate']:.0f}"
        for n, r in data["models"].items()
    )


def probe(page, probe: dict) -> str:
    """Agreement with the ANN at every T of converter_agreement.py --probe, one row per conversion variant."""
    ts = _ts(probe["variants"])
    rows = [[label, *_percent(v["agreement"], ts)] for label, v in probe["variants"].items()]
    return table(["conversion", *(f"T={t}" for t in ts)], rows)
