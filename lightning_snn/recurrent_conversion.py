"""RNN -> SNN conversion (the paper's appendix A.4), in plain PyTorch.

* :func:`is_recurrent` -- whether a model goes this way (it holds a recurrent layer of any kind).
* :func:`check_recurrent_convertible` -- an allow-list: a :class:`~lightning_snn.models.rnn.SentimentRNN`
  (converted) or a :class:`~lightning_snn.models.spiking_rnn.SpikingSentimentRNN` (already spiking: only
  its output layer is calibrated), built from known layers only. Anything else, ``nn.LSTM``,
  ``nn.GRU``, ``nn.RNN``, a subclass or another module, is refused by name
  (:class:`~lightning_snn.graph.ConversionError`) before any work.
* :func:`calibrate_recurrent_thresholds` -- the recurrent layer's ``V_th`` (the largest activation over
  the calibration sentences' words, or the clip ``y_th``) and the output layer's (the largest logit).
* :func:`convert_recurrent` -- the :class:`~lightning_snn.spiking_recurrent.SpikingSentimentNet`.

The correspondence between the RNN and its SNN is written down in :mod:`lightning_snn.spiking_recurrent`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from lightning_snn.activations import ThresholdReLU
from lightning_snn.graph import ConversionError
from lightning_snn.models.rnn import SentimentRNN, ThresholdRNN
from lightning_snn.models.spiking_rnn import SpikingRNNLayer, SpikingSentimentRNN
from lightning_snn.spiking_recurrent import SpikingSentimentNet, word_mask

#: Key of the recurrent layer's threshold, and of the output layer's (as in the CNN path).
RECURRENT_KEY = "rnn"
OUTPUT_KEY = "<output>"
#: Threshold calibrations of the recurrent layer.
RECURRENT_CALIBRATIONS = ("max", "lambda")
#: Shifts that make sense for the recurrent SNN ("bias", V_th / (2T) per step, would add V_th / 2 at
#: every word, which only matches the quantiser when tau = 0; the membrane shift is right for every tau).
RECURRENT_SHIFTS = ("membrane", "none")
#: Neurons of the recurrent layer: the paper's IF neuron, or the signed one (negative spikes).
RECURRENT_NEURONS = ("if", "signed")

_MODELS = (SentimentRNN, SpikingSentimentRNN)
_KNOWN_LAYERS = (ThresholdRNN, SpikingRNNLayer, nn.Embedding, nn.Linear, nn.Dropout, ThresholdReLU)
_RECURRENT_LAYERS = (ThresholdRNN, SpikingRNNLayer, nn.RNNBase, nn.RNNCellBase)


def is_recurrent(model: nn.Module) -> bool:
    """True if ``model`` holds a recurrent layer (ours or torch's): the recurrent converter decides."""
    return any(isinstance(m, _RECURRENT_LAYERS) for m in model.modules())


def check_recurrent_convertible(model: nn.Module) -> None:
    """Refuse, by name, a recurrent model this converter does not know.

    Raises:
        ConversionError: ``model`` is not exactly a SentimentRNN / SpikingSentimentRNN, or holds a
            layer outside their allow-list.
    """
    foreign = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.RNNBase, nn.RNNCellBase))]
    if foreign:
        name, layer = foreign[0]
        raise ConversionError(
            f"module {name or 'the model'!r} is a {type(layer).__module__}.{type(layer).__name__}, a recurrent layer "
            "the converter does not know: an LSTM's or GRU's gates multiply two time-varying signals, which no IF "
            "neuron computes, and torch's nn.RNN keeps no remaining value. Only appendix A.4's threshold-ReLU unit "
            "converts: train lightning_snn.models.rnn.SentimentRNN (arch: rnn) instead."
        )
    if type(model) not in _MODELS:
        inner = [n for n, m in model.named_modules() if type(m) in _MODELS]
        where = f" (it holds one at {inner[0]!r}: convert that module itself)" if inner else ""
        raise ConversionError(
            f"the recurrent converter converts a SentimentRNN (arch: rnn) or a SpikingSentimentRNN (arch: "
            f"spiking_rnn), not a {type(model).__name__}{where}: a subclass or another model may compute "
            "something the SNN does not."
        )
    for name, m in model.named_modules():
        if m is not model and type(m) not in _KNOWN_LAYERS:
            raise ConversionError(
                f"module {name!r} ({type(m).__name__}) is not one of the recurrent converter's layers "
                f"({', '.join(t.__name__ for t in _KNOWN_LAYERS)}): it would be left out of the SNN."
            )


def split_text_batch(batch, device: torch.device | str | None = None):
    """``((ids, lengths), labels)`` of a batch given as ``(TokenBatch, labels)`` or as a bare
    ``TokenBatch`` / ``(ids, lengths)`` (labels None), moved to ``device``."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        if isinstance(batch[0], (tuple, list)) and len(batch[0]) == 2:
            (ids, lengths), labels = batch
        elif isinstance(batch[0], torch.Tensor) and batch[0].dim() == 2:
            (ids, lengths), labels = batch, None
        else:
            ids = None
        if ids is not None:
            move = (lambda t: t.to(device)) if device is not None else (lambda t: t)
            return (move(ids), move(lengths)), None if labels is None else move(labels)
    raise TypeError(
        "a text batch is ((ids [B, L], lengths [B]), labels [B]) or (ids, lengths), as SSTDataModule's loaders "
        f"give; got {type(batch).__name__}."
    )


@torch.no_grad()
def calibrate_recurrent_thresholds(
    model: nn.Module, batches: Iterable, device: torch.device | str | None = None, method: str = "max"
) -> dict[str, float]:
    """``{"rnn": V_th, "<output>": largest logit}`` on the calibration sentences, in eval mode.

    ``"max"`` (Algorithm 1): the recurrent layer's largest activation over every word of every
    sentence (padding excluded). ``"lambda"``: its clip ``y_th`` when the threshold ReLU clips (the
    unit's own threshold, rule 1), else the max. A spiking RNN keeps its own threshold. The output
    layer's threshold is always the largest logit (threshold balancing, rule 4). Under
    ``torch.distributed`` the maxima are all-reduced (MAX): every rank gets the same thresholds.

    Args:
        model: a model :func:`check_recurrent_convertible` accepts.
        batches: ``(TokenBatch, labels)`` tuples or bare ``TokenBatch``es.
        device: where to run (default: the model's device).
        method: ``"max"`` or ``"lambda"``.
    """
    check_recurrent_convertible(model)
    if method not in RECURRENT_CALIBRATIONS:
        raise ValueError(
            f"unknown calibration {method!r} for a recurrent model; choose one of {RECURRENT_CALIBRATIONS}."
        )
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    act_max = torch.tensor(0.0, device=device)
    out_max = torch.tensor(-torch.inf, device=device)
    try:
        for batch in batches:
            x, _ = split_text_batch(batch, device)
            if isinstance(model, SentimentRNN):
                o, _, lengths = model.features(x)
                valid = word_mask(lengths, o.shape[1]).unsqueeze(-1)
                act_max = torch.maximum(act_max, o.masked_fill(~valid, 0).amax())
            out_max = torch.maximum(out_max, model(x).amax())
    finally:
        model.train(was_training)
    maxima = torch.stack([act_max, out_max])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(maxima, op=dist.ReduceOp.MAX)
    act, out = (float(v) for v in maxima.tolist())
    if isinstance(model, SpikingSentimentRNN):
        act = model.rnn.v_threshold
    elif method == "lambda" and bool(model.rnn.act.threshold_enabled):
        act = model.rnn.act.y_th
    if out == -float("inf"):
        raise ValueError("no calibration sentences: pass at least one batch.")
    return {RECURRENT_KEY: act, OUTPUT_KEY: out}


def convert_recurrent(
    model: nn.Module, thresholds: dict[str, float], shift: str = "membrane", neuron: str = "if"
) -> SpikingSentimentNet:
    """The SNN of ``model`` (copies of its layers; ``model`` is not modified).

    Args:
        model: a model :func:`check_recurrent_convertible` accepts.
        thresholds: from :func:`calibrate_recurrent_thresholds`.
        shift: ``"membrane"`` (the membrane starts at ``V_th / 2`` and is attenuated around it: the
            quantiser rounds instead of flooring, for every ``tau``) or ``"none"``. A spiking RNN runs
            as it was trained, so only ``"none"``.
        neuron: ``"if"`` (the paper's) or ``"signed"`` for the recurrent layer (exactly the quantised
            RNN whenever every step's current is within ``[-V_th, V_th]``; see
            :mod:`lightning_snn.spiking_recurrent`). A spiking RNN only ``"if"``.
    """
    check_recurrent_convertible(model)
    if shift not in RECURRENT_SHIFTS:
        raise ValueError(
            f"shift {shift!r} does not apply to the recurrent SNN; choose one of {list(RECURRENT_SHIFTS)}: the "
            "paper's bias shift V_th/(2T) adds V_th/2 per word, which centres the quantisation only when tau = 0, "
            "while the membrane shift (start at V_th/2, attenuate around it) does for every tau."
        )
    if neuron not in RECURRENT_NEURONS:
        raise ValueError(f"unknown neuron {neuron!r} for the recurrent SNN; choose one of {list(RECURRENT_NEURONS)}.")
    if isinstance(model, SpikingSentimentRNN) and (shift != "none" or neuron != "if"):
        raise ValueError(
            f"a directly trained spiking RNN runs as it was trained: shift 'none' and neuron 'if', not {shift!r} and "
            f"{neuron!r} (the membrane shift and signed neurons are conversion settings)."
        )
    theta = float(thresholds[RECURRENT_KEY])
    rnn = model.rnn
    return SpikingSentimentNet(
        copy.deepcopy(model.embedding),
        copy.deepcopy(rnn.input),
        copy.deepcopy(rnn.recurrent),
        copy.deepcopy(model.classifier),
        v_threshold=theta,
        output_threshold=thresholds.get(OUTPUT_KEY),
        tau=rnn.tau,
        pool=model.pool,
        v_shift=theta / 2 if shift == "membrane" else 0.0,
        signed=neuron == "signed",
    ).eval()
