"""Collect what ``benchmarks/gpu.sh`` wrote (env.txt, gpu.log, train_metrics.csv, train_ and test_snn_results.json;
a missing file leaves its part out) into one JSON, rendered in docs/RESULTS.md ("Full width on a GPU"):

    python benchmarks/collect_gpu.py <gpu.sh output folder> --out docs/gpu_full_width.json
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

from lightning_snn.results import read_results

GPU_LINE = re.compile(r"gpu (.+?) cuda (\S+) cudnn (\S+) cudnn\.allow_tf32 (\S+) matmul\.allow_tf32 (\S+)")


def _env(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if m := GPU_LINE.match(line):  # gpu <name> cuda <v> cudnn <v> cudnn.allow_tf32 <b> matmul.allow_tf32 <b>
            out.update(gpu=m[1], cuda=m[2], cudnn=m[3], cudnn_allow_tf32=m[4] == "True")
            out["matmul_allow_tf32"] = m[5] == "True"
        elif line.startswith("python ") and " torch " in line:
            out["torch"] = line.split(" torch ")[1].split()[0]
    return out


def _recipe(log: str) -> dict:
    line = next((x for x in log.splitlines() if x.startswith("training arguments: ")), "training arguments: ")
    words = line[len("training arguments: ") :].split()
    return {words[i].lstrip("-"): words[i + 1] for i in range(len(words) - 1) if words[i].startswith("--")}


def _subset(log: str) -> dict:
    m = re.search(r"^subset images: train (\d+) test (\d+)$", log, flags=re.M)
    return {"train_images": int(m[1]), "test_images": int(m[2])} if m else {}


def _steps(log: str) -> list[dict]:
    return [
        {"step": m[1], "exit": int(m[2]), "seconds": int(m[3])}
        for m in re.finditer(r"^=== (.+?): exit (\d+) after (\d+) s ===$", log, flags=re.M)
    ]


def _training(path: Path) -> dict:
    rows = list(csv.DictReader(path.open()))
    train = {int(r["epoch"]): float(r["train/acc"]) for r in rows if r.get("train/acc")}
    val = {int(r["epoch"]): float(r["val/acc"]) for r in rows if r.get("val/acc")}
    if not train:
        return {}
    last, by_epoch = max(train), {e: 100 * a for e, a in sorted(val.items())}
    return {"epochs_done": last + 1, "train_acc": 100 * train[last], "val_acc": by_epoch[max(val)] if val else None,
            "val_acc_by_epoch": by_epoch}  # fmt: skip


def collect(folder: Path) -> dict:
    folder = Path(folder)
    log, env = ((folder / n).read_text() if (folder / n).exists() else "" for n in ("gpu.log", "env.txt"))
    out = {"machine": _env(env)}
    out["recipe"], out["subset"], out["steps"] = _recipe(log), _subset(log), _steps(log)
    if (folder / "train_metrics.csv").exists():
        out["training"] = _training(folder / "train_metrics.csv")
    keep = ("ann_acc", "snn_acc", "conversion_loss", "num_test_images", "calibration_images", "seconds", "shift")
    for name, key in (("train_snn_results.json", "conversion"), ("test_snn_results.json", "diagnostics")):
        if (folder / name).exists():
            r = read_results(folder / name)  # refuses another version's or a damaged file, by name
            out[key] = {k: r[k] for k in keep if k in r}
            if "firing_rates" in r:
                fr, ops, en = r["firing_rates"], r["synaptic_ops"], r["energy"]
                out[key]["per_t"] = {
                    t: {"firing_rate": fr[t]["network"], "sops_per_image": ops[t]["per_image"],
                        **{k: en[t][k] for k in ("snn_uj", "ann_uj", "snn_over_ann")}}
                    for t in fr
                }  # fmt: skip
                out[key]["energy_model"] = r.get("energy_model")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="what benchmarks/gpu.sh wrote ($OUT)")
    p.add_argument("--out", default="docs/gpu_full_width.json")
    args = p.parse_args()
    payload = collect(Path(args.folder))
    payload["network"] = "paper"  # vgg16 is the paper's four-pool network since issue 24 (fidelity.network_of)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}: {', '.join(k for k in payload if payload[k])}")


if __name__ == "__main__":
    main()
