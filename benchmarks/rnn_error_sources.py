"""Where the converted recurrent layer departs from its RNN, word by word, on the dev sentences.

For a trained ``rnn`` checkpoint and every K, the mean per-word error ``|x - min(o, theta)|`` relative to
the mean ``min(o, theta)`` (``o`` the RNN's activation, ``x`` what each variant outputs per word):

* ``snn``: the converted SNN's ``theta n / K`` (the project's simulator);
* ``quantised_rnn``: the RNN with its activation replaced by the K-level quantiser ``q_K`` (the exact
  reference of :mod:`lightning_snn.spiking_recurrent`): the quantisation alone, which falls like 1/K;
* ``signed``: the converted SNN with signed neurons in the recurrent layer (``neuron: signed``), exactly
  ``q_K`` whenever every step's current is within ``[-theta, theta]``;
* ``even_current``: an IF layer whose recurrent input is the previous word's count spread evenly over
  the window (not an SNN: a check of whether the spikes' timing within a window matters);

plus how often the SNN's count differs from the quantiser's, and how often the RNN's remaining value
``r = u - o`` lies outside ``[0, theta / K)``, the membrane range the IF neuron's exactness needs (it
spends a carried charge at most ``theta`` per step, whatever the word's own current says), how often a
word's own input current lies beyond ``[-theta, theta]`` (outside the signed neuron's domain too), and the
sentence accuracy of the analog readouts against the RNN's::

    python benchmarks/rnn_error_sources.py runs/rnn_study/rnn_t/s0/s0/checkpoints/last.ckpt \
        --out docs/rnn_error_sources.json        # --config <the run's config.yaml> for other data settings
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's lightning_snn

import torch
import torch.nn.functional as F
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
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "sst"))
    parser.add_argument("--config", type=Path, default=None, help="the run's saved config.yaml: its data settings")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    model = ConversionModule.load_from_checkpoint(args.checkpoint, map_location="cpu").model.eval()
    if args.config is not None:
        import yaml

        dm = SSTDataModule(**yaml.safe_load(args.config.read_text())["data"]["init_args"])
    else:
        dm = SSTDataModule(args.data_dir)
    dm.setup("fit")
    thresholds = calibrate_recurrent_thresholds(model, DataLoader(dm.calibration_set(), batch_size=512))
    theta, tau = thresholds["rnn"], model.rnn.tau
    snn = convert_recurrent(model, thresholds, shift="none")
    signed_snn = convert_recurrent(model, thresholds, shift="none", neuron="signed")
    w = None if model.rnn.recurrent is None else model.rnn.recurrent.weight
    sums: dict[int, dict[str, float]] = {k: {} for k in args.steps}
    total = {"elements": 0.0, "act": 0.0, "sentences": 0, "rnn_correct": 0}
    for batch, y in DataLoader(dm.val_set, batch_size=512):
        ids, lengths = trim_batch(batch)
        e = model.embedding(ids)
        o, u = model.rnn(e)
        mask = word_mask(lengths, ids.shape[1]).unsqueeze(-1).expand_as(o)
        a = o.clamp(max=theta)
        total["elements"] += float(mask.sum())
        total["act"] += float(a[mask].sum())
        total["sentences"] += int(y.numel())
        total["rnn_correct"] += int((model.readout(o, lengths).argmax(-1) == y).sum())
        currents = model.rnn.input(e)
        total["beyond"] = total.get("beyond", 0.0) + float(((currents.abs() > theta) & mask).sum())
        remaining = u - o
        for k in args.steps:
            q, _ = model.rnn.quantised(e, theta, k)
            out = snn(batch, k)
            signed = signed_snn(batch, k)
            variants = {
                "snn": out.counts * (theta / k),
                "signed": signed.counts * (theta / k),
                "quantised_rnn": q,
                "even_current": even_current(currents, w, theta, tau, k) * (theta / k),
            }
            row = sums[k]
            for name, x in variants.items():
                row[name] = row.get(name, 0.0) + float((x - a).abs()[mask].sum())
            mismatch = (out.counts != q * (k / theta)) & mask
            row["count_mismatch"] = row.get("count_mismatch", 0.0) + float(mismatch.sum())
            outside = ((remaining < 0) | (remaining >= theta / k)) & mask
            row["remaining_outside"] = row.get("remaining_outside", 0.0) + float(outside.sum())
            row["snn_correct"] = row.get("snn_correct", 0.0) + float((out.analog.argmax(-1) == y).sum())
            row["signed_correct"] = row.get("signed_correct", 0.0) + float((signed.analog.argmax(-1) == y).sum())
            bad = ((signed.counts != q * (k / theta)) & mask).sum()
            row["signed_mismatch"] = row.get("signed_mismatch", 0.0) + float(bad)
    result = {
        "checkpoint": str(args.checkpoint),
        "theta": theta,
        "tau": tau,
        "dev_sentences": total["sentences"],
        "rnn_dev_acc": 100.0 * total["rnn_correct"] / total["sentences"],
        # a word's own input current beyond [-theta, theta]: outside both exactness domains
        "input_current_beyond_theta_pct": 100.0 * total["beyond"] / total["elements"],
        "per_k": {},
    }
    mean_act = total["act"] / total["elements"]
    print(
        f"theta {theta:.4g}, tau {tau}; RNN dev accuracy {result['rnn_dev_acc']:.2f}%; input current beyond "
        f"[-theta, theta] at {result['input_current_beyond_theta_pct']:.1f}% of neuron-words"
    )
    print(
        "   K   relative error: SNN  signed  quantised RNN  even current   != q_K: SNN  signed   "
        "r outside [0, theta/K)   dev acc: SNN  signed"
    )
    for k, row in sums.items():
        names = ("snn", "signed", "quantised_rnn", "even_current")
        rel = {n: row[n] / total["elements"] / mean_act for n in names}
        entry = {
            "relative_error": rel,
            "count_mismatch_pct": 100.0 * row["count_mismatch"] / total["elements"],
            "signed_mismatch_pct": 100.0 * row["signed_mismatch"] / total["elements"],
            "remaining_outside_pct": 100.0 * row["remaining_outside"] / total["elements"],
            "snn_analog_dev_acc": 100.0 * row["snn_correct"] / total["sentences"],
            "signed_analog_dev_acc": 100.0 * row["signed_correct"] / total["sentences"],
        }
        result["per_k"][str(k)] = entry
        print(
            f"{k:4d}   {rel['snn']:19.3f}  {rel['signed']:6.3f}  {rel['quantised_rnn']:13.3f}  "
            f"{rel['even_current']:12.3f}   {entry['count_mismatch_pct']:10.1f}%  "
            f"{entry['signed_mismatch_pct']:5.1f}%   "
            f"{entry['remaining_outside_pct']:21.1f}%   {entry['snn_analog_dev_acc']:11.2f}%  "
            f"{entry['signed_analog_dev_acc']:.2f}%"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
