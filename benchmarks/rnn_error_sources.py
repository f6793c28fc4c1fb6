"""Where the converted recurrent layer departs from its RNN, word by word, on the dev sentences: the
per-word error of the SNN and of three references against ``min(o, theta)`` at every K, how often the
exactness conditions fail, and the analog readouts' dev accuracy (docs/RNN.md, "Where the conversion loses")::

    python benchmarks/rnn_error_sources.py runs/rnn_study/rnn_t/s0/s0/checkpoints/last.ckpt \
        --out docs/rnn_error_sources.json        # --config <the run's config.yaml> for other data settings
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lightning_snn

import torch
import torch.nn.functional as F
from sections import rnn
from torch.utils.data import DataLoader

from lightning_snn.module import ConversionModule
from lightning_snn.recurrent_conversion import calibrate_recurrent_thresholds, convert_recurrent
from lightning_snn.spiking_recurrent import trim_batch, word_mask
from lightning_snn.text_data import SSTDataModule

REPO = Path(__file__).resolve().parents[1]


def even_current(currents, weight, theta: float, tau: float, k: int) -> torch.Tensor:
    """Counts of IF neurons whose recurrent input is ``W_h theta n_{t-1} / K`` at every step of word t."""
    batch, words, hidden = currents.shape
    v, previous, out = currents.new_zeros(batch, hidden), currents.new_zeros(batch, hidden), []
    for t in range(words):
        v = tau * v
        drive = currents[:, t] + F.linear(previous * (theta / k), weight)
        n = torch.zeros_like(v)
        for _ in range(k):
            v = v + drive
            s = (v >= theta).to(v.dtype)
            v = v - theta * s
            n = n + s
        out.append(n)
        previous = n
    return torch.stack(out, 1)


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--config", type=Path, default=None, help="the run's saved config.yaml: its data settings")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    model = ConversionModule.load_from_checkpoint(args.checkpoint, map_location="cpu").model.eval()
    if args.config is not None:
        import yaml

        dm = SSTDataModule(**yaml.safe_load(args.config.read_text())["data"]["init_args"])
    else:
        dm = SSTDataModule(str(REPO.parent / "shared" / "data" / "sst"))
    dm.setup("fit")
    thresholds = calibrate_recurrent_thresholds(model, DataLoader(dm.calibration_set(), batch_size=512))
    theta, tau = thresholds["rnn"], model.rnn.tau
    snn = convert_recurrent(model, thresholds, shift="none")
    signed_snn = convert_recurrent(model, thresholds, shift="none", neuron="signed")
    w = None if model.rnn.recurrent is None else model.rnn.recurrent.weight
    sums, total = {k: defaultdict(float) for k in args.steps}, defaultdict(float)
    for batch, y in DataLoader(dm.val_set, batch_size=512):
        ids, lengths = trim_batch(batch)
        e = model.embedding(ids)
        o, u = model.rnn(e)
        mask = word_mask(lengths, ids.shape[1]).unsqueeze(-1).expand_as(o)
        a = o.clamp(max=theta)
        currents = model.rnn.input(e)
        total["elements"] += float(mask.sum())
        total["act"] += float(a[mask].sum())
        total["sentences"] += y.numel()
        total["rnn_correct"] += int((model.readout(o, lengths).argmax(-1) == y).sum())
        # a word's own input current beyond [-theta, theta]: outside both exactness domains
        total["beyond"] += float(((currents.abs() > theta) & mask).sum())
        remaining = u - o  # the RNN's remaining value r: the IF neuron's exactness needs it in [0, theta / K)
        for k in args.steps:
            q, _ = model.rnn.quantised(e, theta, k)  # the K-level quantiser q_K: the exact reference
            out, signed = snn(batch, k), signed_snn(batch, k)
            variants = {
                "snn": out.counts * (theta / k),
                "signed": signed.counts * (theta / k),  # exactly q_K while every step's current is in [-theta, theta]
                "quantised_rnn": q,
                # not an SNN: does the spikes' timing within a word matter?
                "even_current": even_current(currents, w, theta, tau, k) * (theta / k),
            }
            row = sums[k]
            for name, x in variants.items():
                row[name] += float((x - a).abs()[mask].sum())
            row["count_mismatch"] += float(((out.counts != q * (k / theta)) & mask).sum())
            row["remaining_outside"] += float((((remaining < 0) | (remaining >= theta / k)) & mask).sum())
            row["snn_correct"] += float((out.analog.argmax(-1) == y).sum())
            row["signed_correct"] += float((signed.analog.argmax(-1) == y).sum())
            row["signed_mismatch"] += float(((signed.counts != q * (k / theta)) & mask).sum())
    n, mean_act = total["elements"], total["act"] / total["elements"]
    result = {
        "checkpoint": str(args.checkpoint),
        "theta": theta,
        "tau": tau,
        "dev_sentences": int(total["sentences"]),
        "rnn_dev_acc": 100.0 * total["rnn_correct"] / total["sentences"],
        "input_current_beyond_theta_pct": 100.0 * total["beyond"] / n,
        "per_k": {},
    }
    for k, row in sums.items():
        result["per_k"][str(k)] = {
            "relative_error": {v: row[v] / n / mean_act for v in ("snn", "signed", "quantised_rnn", "even_current")},
            **{f"{m}_pct": 100.0 * row[m] / n for m in ("count_mismatch", "signed_mismatch", "remaining_outside")},
            **{f"{m}_analog_dev_acc": 100.0 * row[f"{m}_correct"] / total["sentences"] for m in ("snn", "signed")},
        }
    print(rnn.error_sources(None, result))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
