"""Evaluate an RNN's conversion (appendix A.4): source RNN vs its SNN at every steps per word and loop count.

:func:`evaluate_recurrent_conversion` is what :func:`lightning_snn.evaluation.evaluate_conversion`
runs for a recurrent model (:func:`~lightning_snn.recurrent_conversion.is_recurrent`), with the same
settings; it returns a :class:`RecurrentConversionReport`, a
:class:`~lightning_snn.evaluation.ConversionReport` whose ``timesteps`` are the SNN's **steps per
word** ``K`` and whose ``snn_acc[K]`` is the accuracy of the chosen readout (spiking: after the
largest loop count), plus the whole grid: the analog readout's accuracy at every ``K`` and the
looped spiking readout's at every ``K`` and loop count ``L`` (one simulation per ``K`` gives every
``L``: the count after ``l`` replays is read on the way to the largest).

The settings come in one :class:`~lightning_snn.conversion_config.ConversionConfig`, checked when it was
built; those that do not apply to the recurrent SNN are refused by name, once per conversion
(:func:`~lightning_snn.recurrent_conversion.check_recurrent_config`), never ignored: the paper's bias
shift, percentile / per-channel calibration, the light correction, a fixed ``time_chunk`` (the SNN runs
one word window at a time). ``neuron: signed`` gives the recurrent
layer signed neurons (:mod:`lightning_snn.spiking_recurrent`); the output layer keeps IF neurons.

Diagnostics use the keys of :class:`lightning_snn.diagnostics.Diagnostics` (so the callback's
logging and dashboard work unchanged), per **sentence** instead of per image: firing rates (spikes
per neuron per step), synaptic operations (a recurrent spike drives its non-zero ``W_h`` synapses
into the next word and, in the pooled windows, its ``W_o`` synapses once per loop), energy, and the
recurrent layer's error ``mean |theta n_t / K - min(o_t, theta)|`` per word against the source RNN's
activation ``o_t`` on the same sentence, beside the quantiser's prediction (``theta / (4K)`` with the
membrane shift, ``theta / (2K)`` without, for activations inside ``(0, theta)``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from lightning_snn.conversion_config import ConversionConfig, validate_output_loops  # noqa: F401 (re-exported)
from lightning_snn.diagnostics import EnergyModel, summary_table
from lightning_snn.evaluation import ConversionReport, Counted, sum_over_ranks, threshold_clip_state
from lightning_snn.models.spiking_rnn import SpikingSentimentRNN
from lightning_snn.recurrent_conversion import (  # noqa: F401 (check_recurrent_settings re-exported)
    OUTPUT_KEY,
    RECURRENT_KEY,
    check_recurrent_config,
    check_recurrent_settings,
    recurrent_snn,
    recurrent_thresholds,
    split_text_batch,
)
from lightning_snn.spiking_recurrent import SpikingSentimentNet, pooled_word_mask

#: Loop counts of the spiking output layer when none are given.
DEFAULT_OUTPUT_LOOPS = (1, 2, 4, 8, 16)


@dataclass
class RecurrentConversionReport(ConversionReport):
    """A :class:`~lightning_snn.evaluation.ConversionReport` of a recurrent model.

    ``timesteps`` are steps per word ``K``; ``ann_acc`` is the source RNN's accuracy (a spiking RNN's
    own, as trained); ``snn_acc[K]`` the chosen readout's (spiking: after ``max(output_loops)`` loops).

    Attributes:
        output_loops: the loop counts ``L`` of the spiking output layer.
        analog_acc: ``{K: accuracy}`` of the analog readout.
        spiking_acc: ``{K: {L: accuracy}}`` of the looped spiking readout.
        analog_correct, spiking_correct: the counts behind them.
        source: ``"rnn"`` (converted) or ``"spiking_rnn"`` (trained with a surrogate gradient).
        tau, pool: the network's attenuation and pooling.
        trained_steps_per_word: the ``K`` a spiking RNN was trained with (None for a converted RNN).
        ties: ``{K: sentences}`` whose largest spike count (at the largest L) is shared by several classes.
    """

    output_loops: list[int] = field(default_factory=list)
    analog_acc: dict[int, float] = field(default_factory=dict)
    spiking_acc: dict[int, dict[int, float]] = field(default_factory=dict)
    analog_correct: dict[int, int] = field(default_factory=dict)
    spiking_correct: dict[int, dict[int, int]] = field(default_factory=dict)
    source: str = "rnn"
    tau: float = 0.0
    pool: str = "mean"
    trained_steps_per_word: int | None = None
    ties: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data["recurrent"] = {
            "time_axis": "steps_per_word",
            "source": self.source,
            "tau": self.tau,
            "pool": self.pool,
            "trained_steps_per_word": self.trained_steps_per_word,
            "output_loops": list(self.output_loops),
            "analog_acc": {str(k): round(a, 6) for k, a in self.analog_acc.items()},
            "analog_correct": {str(k): c for k, c in self.analog_correct.items()},
            "spiking_acc": {str(k): {str(lp): round(a, 6) for lp, a in v.items()} for k, v in self.spiking_acc.items()},
            "spiking_correct": {str(k): {str(lp): c for lp, c in v.items()} for k, v in self.spiking_correct.items()},
            "spiking_ties": {str(k): n for k, n in self.ties.items()},
        }
        return data

    def table(self) -> str:
        head = "RNN" if self.source == "rnn" else "spiking RNN (as trained)"
        loops = self.output_loops
        lines = [
            f"  {head} accuracy: {self.ann_acc:.2f}% ({self.readout} readout reported as snn_acc; T = steps per word)",
            "      K    analog" + "".join(f"   L={lp:<4d}" for lp in loops) + "   loss",
        ]
        for k in self.timesteps:
            spiking = "".join(f"  {self.spiking_acc[k][lp]:6.2f}%" for lp in loops) if loops else ""
            lines.append(f"  {k:5d}   {self.analog_acc[k]:6.2f}%{spiking}  {self.conversion_loss[k]:+6.2f} pts")
        if self.diagnostics is not None:
            lines.append(self.diagnostics.table())
        return "\n".join(lines)


class RecurrentDiagnostics:
    """Sums (over sentences and ranks) of the recurrent SNN's spikes, synaptic operations and errors, per K.

    ``to_json`` has the keys and layout of :meth:`lightning_snn.diagnostics.Diagnostics.to_json`, per
    sentence; ``"rnn"`` is the recurrent layer, ``"<output>"`` the spiking output layer.
    """

    _FIELDS = ("rnn_spikes", "out_spikes", "rnn_sops", "out_sops", "abs_error")

    def __init__(self, timesteps: Sequence[int], loops: int, energy: EnergyModel, device=None) -> None:
        self.timesteps, self.loops, self.energy = list(timesteps), loops, energy
        self.per_k = torch.zeros(len(self.timesteps), len(self._FIELDS), dtype=torch.float64, device=device)
        # sentences, words, pooled words, sum min(a, theta), sum relu(a - theta), count 0 < a < theta
        self.totals = torch.zeros(6, dtype=torch.float64, device=device)
        self.shape: dict[str, float] = {}

    def set_network(self, snn: SpikingSentimentNet, shift: bool) -> None:
        """Layer sizes and fan-outs (non-zero synapses per presynaptic neuron) of the SNN."""
        nz = lambda w: (w != 0).sum().item()  # noqa: E731
        self.hidden, self.classes = snn.input_layer.out_features, snn.readout.out_features
        self.fan_rec = None if snn.recurrent_layer is None else (snn.recurrent_layer.weight != 0).sum(0).double()
        self.fan_out = (snn.readout.weight != 0).sum(0).double()
        self.macs_word = {
            "input": float(nz(snn.input_layer.weight)),
            "recurrent": 0.0 if snn.recurrent_layer is None else float(nz(snn.recurrent_layer.weight)),
            "readout": float(nz(snn.readout.weight)),
        }
        self.theta = float(snn.v_threshold)
        self.quant_k = 0.25 if shift else 0.5

    def add(self, i: int, out, lengths: torch.Tensor, pooled: torch.Tensor, acts: torch.Tensor | None) -> None:
        """One batch at ``timesteps[i]``: the SNN's output, the pooled words ``[B, L]`` and the RNN's ``o``."""
        k = self.timesteps[i]
        mask = out.mask.unsqueeze(-1).to(torch.float64)
        counts = out.events.double() * mask  # spike events (negative ones included) drive synapses
        row = self.per_k[i]
        row[0] += counts.sum()
        if out.spiking is not None:
            row[1] += out.spiking[-1].double().sum()
        if self.fan_rec is not None:  # a word's spikes drive W_h into the next word, if there is one
            has_next = torch.zeros_like(out.mask)
            has_next[:, :-1] = out.mask[:, 1:]
            row[2] += (counts * has_next.unsqueeze(-1) * self.fan_rec.to(counts.device)).sum()
        if out.spiking is not None:
            row[3] += (counts * pooled.unsqueeze(-1) * self.fan_out.to(counts.device)).sum() * self.loops
        if acts is not None:
            a = acts.double().clamp(max=self.theta) * mask
            row[4] += ((out.counts.double() * (self.theta / k) - a).abs() * mask).sum()
        if i == 0:  # sentence-level totals once per batch
            theta = self.theta
            self.totals[0] += lengths.numel()
            self.totals[1] += lengths.sum().double()
            self.totals[2] += pooled.sum().double()
            if acts is not None:
                a = acts.double() * mask
                self.totals[3] += a.clamp(max=theta).sum()
                self.totals[4] += (a - theta).clamp(min=0).sum()
                self.totals[5] += (((a > 0) & (a < theta)) * mask.bool()).sum()

    def all_reduce(self) -> None:
        if dist.is_available() and dist.is_initialized():
            flat = torch.cat([self.per_k.flatten(), self.totals])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            self.per_k = flat[: self.per_k.numel()].view_as(self.per_k)
            self.totals = flat[self.per_k.numel() :]

    def to_json(self) -> dict[str, Any]:
        sentences, words, pooled_words, act_sum, clip_sum, inside = self.totals.tolist()
        n = max(sentences, 1.0)
        e, h, c = self.energy, self.hidden, self.classes
        input_macs = self.macs_word["input"] * words / n
        ann_macs = (words * (self.macs_word["input"] + self.macs_word["recurrent"]) + self.macs_word["readout"] * n) / n
        elements = words * h
        out: dict[str, Any] = {"firing_rates": {}, "synaptic_ops": {}, "energy": {}, "layer_errors": {}}
        for i, k in enumerate(self.timesteps):
            rnn_spikes, out_spikes, rnn_sops, out_sops, abs_error = self.per_k[i].tolist()
            rnn_steps, out_steps = elements * k, pooled_words * k * self.loops * c
            layers = {RECURRENT_KEY: rnn_spikes / max(rnn_steps, 1.0)}
            if out_steps and out_spikes:
                layers[OUTPUT_KEY] = out_spikes / out_steps
            total_steps = rnn_steps + (out_steps if OUTPUT_KEY in layers else 0.0)
            out["firing_rates"][str(k)] = {
                "network": (rnn_spikes + out_spikes) / max(total_steps, 1.0),
                "layers": layers,
            }
            sops = {RECURRENT_KEY: (rnn_sops + out_sops) / n}
            if OUTPUT_KEY in layers:
                sops[OUTPUT_KEY] = 0.0  # the output neurons drive no synapse
            out["synaptic_ops"][str(k)] = {
                "per_image": sum(sops.values()),
                "layers": sops,
                "input_macs": input_macs,
                "ann_macs": ann_macs,
            }
            sop_pj = e.ac_pj * sops[RECURRENT_KEY]
            input_pj = e.mac_pj * input_macs * (k if e.input_macs_per_step else 1)
            ann_pj = e.mac_pj * ann_macs
            out["energy"][str(k)] = {
                "snn_uj": (sop_pj + input_pj) * 1e-6,
                "sop_uj": sop_pj * 1e-6,
                "input_mac_uj": input_pj * 1e-6,
                "ann_uj": ann_pj * 1e-6,
                "snn_over_ann": (sop_pj + input_pj) / ann_pj if ann_pj > 0 else None,
            }
            if elements and act_sum > 0:
                mae = abs_error / elements
                out["layer_errors"][str(k)] = {
                    RECURRENT_KEY: {
                        "mae": mae,
                        "relative": mae / (act_sum / elements),
                        "predicted_mae": self.quant_k * self.theta * inside / (k * elements),
                        "clip_mae": clip_sum / elements,
                        "mean_activation": act_sum / elements,
                    }
                }
            else:
                out["layer_errors"][str(k)] = {}
        out["energy_model"] = {
            "ac_pj": e.ac_pj,
            "mac_pj": e.mac_pj,
            "input_macs_per_step": e.input_macs_per_step,
            "source": "Horowitz 2014, 45 nm, 32-bit float",
            "per": "sentence",
        }
        return _rounded(out)

    def table(self) -> str:
        return summary_table(self.to_json()).replace("per image", "per sentence")


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


@torch.no_grad()
def evaluate_recurrent_conversion(
    model: nn.Module,
    calibration_batches: Iterable,
    test_batches: Iterable,
    timesteps: Sequence[int],
    *,
    device: torch.device | str | None = None,
    **settings: Any,
) -> RecurrentConversionReport:
    """Calibrate, convert and measure the source RNN and its SNN on ``test_batches``.

    Args: those of :func:`lightning_snn.evaluation.evaluate_conversion` (``timesteps`` = steps per word
    ``K``): ``settings`` are the keywords of :class:`~lightning_snn.conversion_config.ConversionConfig`
    (``shift``, ``readout``, ``calibration``, ``neuron``, ``diagnostics``, ``energy``, ..., and
    ``output_loops``: the loop counts of the spiking output layer, default :data:`DEFAULT_OUTPUT_LOOPS`);
    those the recurrent SNN does not apply (percentile calibration, the correction, ...) are refused.

    Returns:
        A :class:`RecurrentConversionReport`; under ``torch.distributed`` the same on every rank.
    """
    config = ConversionConfig(timesteps, **settings)  # one keyword list: the config's, checked once here
    return evaluate_recurrent_config(model, calibration_batches, test_batches, config, device=device)


@torch.no_grad()
def evaluate_recurrent_config(
    model: nn.Module,
    calibration_batches: Iterable,
    test_batches: Iterable,
    config: ConversionConfig,
    *,
    device: torch.device | str | None = None,
) -> RecurrentConversionReport:
    """:func:`evaluate_recurrent_conversion` with its settings in a checked ``config``: nothing is checked
    again but what the recurrent SNN adds, against this model
    (:func:`~lightning_snn.recurrent_conversion.check_recurrent_config`), once."""
    check_recurrent_config(model, config)
    c = config
    ks, readout = list(c.timesteps), c.readout
    loops = list(c.output_loops or DEFAULT_OUTPUT_LOOPS)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    spiking_source = isinstance(model, SpikingSentimentRNN)
    was_training = model.training
    model.eval()
    try:
        t0 = time.perf_counter()
        calibration_count = Counted(calibration_batches, _sentences_in)
        thresholds = recurrent_thresholds(model, calibration_count, device, c.calibration)
        t_calibration = time.perf_counter() - t0
        t0 = time.perf_counter()
        snn = recurrent_snn(model, thresholds, c.shift, c.neuron_type).to(device)
        t_conversion = time.perf_counter() - t0
        probe = RecurrentDiagnostics(ks, max(loops), c.energy or EnergyModel(), device) if c.diagnostics else None
        if probe is not None:
            probe.set_network(snn, c.shift == "membrane")

        t0 = time.perf_counter()
        # [source correct, analog correct per K, spiking correct per (K, L), ties per K, sentences]
        counts = torch.zeros(1 + len(ks) + len(ks) * len(loops) + len(ks) + 1, dtype=torch.long, device=device)
        analog_at, spiking_at, ties_at = 1, 1 + len(ks), 1 + len(ks) + len(ks) * len(loops)
        for batch in test_batches:
            x, y = split_text_batch(batch, device)
            if y is None:
                raise TypeError("the test batches need labels: ((ids, lengths), labels).")
            if spiking_source:
                logits, acts = model(x), None
            else:
                acts, _, lengths = model.features(x)
                logits = model.readout(acts, lengths)
            counts[0] += (logits.argmax(-1) == y).sum()
            for i, k in enumerate(ks):
                out = snn(x, k, loops)
                counts[analog_at + i] += (out.analog.argmax(-1) == y).sum()
                hits = out.spiking.argmax(-1) == y.unsqueeze(0)  # [loops, B]
                counts[spiking_at + i * len(loops) : spiking_at + (i + 1) * len(loops)] += hits.sum(-1)
                last = out.spiking[-1]
                counts[ties_at + i] += ((last == last.amax(-1, keepdim=True)).sum(-1) > 1).sum()
                if probe is not None:
                    lengths = out.mask.sum(1)
                    probe.add(i, out, lengths, pooled_word_mask(snn.pool, lengths, out.mask.shape[1]), acts)
            counts[-1] += y.numel()
        t_simulation = time.perf_counter() - t0
    finally:
        model.train(was_training)

    seen, total = sum_over_ranks(counts, calibration_count.count, probe, "((ids, lengths), labels)")
    got = counts.tolist()
    pct = lambda n: 100.0 * n / total  # noqa: E731
    analog_correct = {k: got[analog_at + i] for i, k in enumerate(ks)}
    spiking_correct = {
        k: {lp: got[spiking_at + i * len(loops) + j] for j, lp in enumerate(loops)} for i, k in enumerate(ks)
    }
    chosen = {k: spiking_correct[k][loops[-1]] if readout == "spiking" else analog_correct[k] for k in ks}
    ann = pct(got[0])
    return RecurrentConversionReport(
        timesteps=ks,
        ann_acc=ann,
        snn_acc={k: pct(n) for k, n in chosen.items()},
        conversion_loss={k: ann - pct(n) for k, n in chosen.items()},
        ann_correct=got[0],
        snn_correct=chosen,
        thresholds={RECURRENT_KEY: thresholds[RECURRENT_KEY]},
        output_threshold=thresholds[OUTPUT_KEY],
        num_test_images=total,
        calibration_images=seen,
        seconds={
            "calibration": t_calibration,
            "conversion": t_conversion,
            "correction": 0.0,
            "simulation": t_simulation,
        },
        shift=c.shift,
        readout=readout,
        time_chunk=c.time_chunk,
        threshold_clip_on=threshold_clip_state(model),
        calibration=c.calibration,
        percentile=None,
        correction=c.correction,
        correction_timesteps=None,
        neuron=c.neuron,
        diagnostics=probe,
        output_loops=loops,
        analog_acc={k: pct(n) for k, n in analog_correct.items()},
        spiking_acc={k: {lp: pct(n) for lp, n in v.items()} for k, v in spiking_correct.items()},
        analog_correct=analog_correct,
        spiking_correct=spiking_correct,
        source="spiking_rnn" if spiking_source else "rnn",
        tau=model.rnn.tau,
        pool=model.pool,
        trained_steps_per_word=model.rnn.steps_per_word if spiking_source else None,
        ties={k: got[ties_at + i] for i, k in enumerate(ks)},
    )


def _sentences_in(batch) -> int:
    (ids, _lengths), _ = split_text_batch(batch)
    return int(ids.shape[0])
