"""RNN -> SNN conversion (the paper's appendix A.4), in plain PyTorch.

* :func:`is_recurrent` -- whether a model goes this way (it holds a recurrent layer of any kind).
* :func:`check_recurrent_convertible` -- an allow-list: a :class:`~lightning_snn.models.rnn.SentimentRNN`
  (converted) or a :class:`~lightning_snn.models.spiking_rnn.SpikingSentimentRNN` (already spiking: only
  its output layer is calibrated), built from known layers only. Anything else, ``nn.LSTM``,
  ``nn.GRU``, ``nn.RNN``, a subclass or another module, is refused by name
  (:class:`~lightning_snn.graph.ConversionError`) before any work.
* :func:`check_recurrent_config` -- the settings of a :class:`~lightning_snn.conversion_config.ConversionConfig`
  (checked once when it was built) that this converter does not apply, refused by name, once per
  conversion (:func:`check_recurrent_settings`: the same from keywords).
* :func:`calibrate_recurrent_thresholds` -- the recurrent layer's ``V_th`` (the largest activation over
  the calibration sentences' words, or the clip ``y_th``) and the output layer's (the largest logit).
* :func:`convert_recurrent` -- the :class:`~lightning_snn.spiking_recurrent.SpikingSentimentNet`.

The correspondence between the RNN and its SNN is written down in :mod:`lightning_snn.spiking_recurrent`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from lightning_snn.activations import ThresholdReLU
from lightning_snn.graph import ConversionError
from lightning_snn.models.rnn import SentimentRNN, ThresholdRNN
from lightning_snn.models.spiking_rnn import SpikingRNNLayer, SpikingSentimentRNN
from lightning_snn.neurons import IFNeuron, SignedIFNeuron, neuron_class
from lightning_snn.spiking_recurrent import SpikingSentimentNet, word_mask

if TYPE_CHECKING:
    from lightning_snn.conversion_config import ConversionConfig

#: Key of the recurrent layer's threshold, and of the output layer's (as in the CNN path).
RECURRENT_KEY = "rnn"
OUTPUT_KEY = "<output>"
#: Threshold calibrations of the recurrent layer.
RECURRENT_CALIBRATIONS = ("max", "lambda")
#: Shifts that make sense for the recurrent SNN ("bias", V_th / (2T) per step, would add V_th / 2 at
#: every word, which only matches the quantiser when tau = 0; the membrane shift is right for every tau).
RECURRENT_SHIFTS = ("membrane", "none")
#: Neuron models of the recurrent layer (:data:`~lightning_snn.neurons.NEURONS`): the paper's IF neuron, or
#: the signed one (negative spikes); :mod:`lightning_snn.spiking_recurrent` implements these two recurrences.
RECURRENT_NEURONS: tuple[type[IFNeuron], ...] = (IFNeuron, SignedIFNeuron)

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


def _registered(neuron: str) -> type[IFNeuron] | None:
    """The neuron model ``neuron`` names (:func:`~lightning_snn.neurons.neuron_class`), or ``None``."""
    try:
        return neuron_class(neuron)
    except (ValueError, TypeError):
        return None


def check_recurrent_settings(
    model: nn.Module,
    shift: str = "membrane",
    readout: str = "analog",
    time_chunk: Any = "auto",
    calibration: str = "max",
    correction: str = "none",
    neuron: str = "if",
) -> type[IFNeuron]:
    """Refuse, before any training, a model the recurrent converter does not know or a setting it does not
    apply; returns the recurrent layer's neuron model. (With a checked
    :class:`~lightning_snn.conversion_config.ConversionConfig`: :func:`check_recurrent_config`.)"""
    if readout not in ("analog", "spiking"):
        raise ValueError(f"unknown readout {readout!r}; choose 'analog' or 'spiking'.")
    return _refuse(model, shift, time_chunk, calibration, correction, neuron, None)


def check_recurrent_config(model: nn.Module, config: ConversionConfig) -> None:
    """Refuse, by name, a model the recurrent converter does not know or a setting of ``config`` it does
    not apply (checked when ``config`` was built, not again: only what the recurrent SNN adds)."""
    c = config
    if c.shift_scale != 1 or c.shift_fraction is not None or c.average_over is not None:
        raise ValueError(
            "shift_scale, shift_fraction and average_over apply to feed-forward models only; remove them "
            "for a recurrent model."
        )
    if c.statistics:
        raise ValueError("snn.statistics applies to image models only (the recurrent diagnostics are their own).")
    _refuse(model, c.shift, c.time_chunk, c.calibration, c.correction, c.neuron, c.neuron_type)


def _refuse(model, shift, time_chunk, calibration, correction, neuron: str, neuron_type) -> type[IFNeuron]:
    """The recurrent converter's refusals, in one place; ``neuron_type``: ``neuron``'s class if known
    (a checked config's), else ``None`` (asked of the registry here). Returns the neuron model."""
    check_recurrent_convertible(model)
    spiking = isinstance(model, SpikingSentimentRNN)
    shifts = ("none",) if spiking else RECURRENT_SHIFTS
    if shift not in shifts:
        why = (
            "a directly trained spiking RNN runs as it was trained"
            if spiking
            else "the bias shift V_th/(2T) would add V_th/2 at every word, which centres the quantisation only for "
            "tau = 0; the membrane shift does for every tau"
        )
        raise ValueError(
            f"snn.shift {shift!r} does not apply to this recurrent model ({why}); use one of {list(shifts)}."
        )
    if time_chunk != "auto":
        raise ValueError(
            f"snn.time_chunk={time_chunk!r} does not apply to a recurrent model: its SNN runs one word window "
            "(steps per word) at a time. Leave it at 'auto'."
        )
    if calibration not in RECURRENT_CALIBRATIONS:
        raise ValueError(
            f"snn.calibration {calibration!r} is not implemented for the recurrent SNN; choose one of "
            f"{list(RECURRENT_CALIBRATIONS)} (max: Algorithm 1; lambda: the threshold ReLU's clip y_th)."
        )
    if correction != "none":
        raise ValueError(f"snn.correction {correction!r} is not implemented for the recurrent SNN; use 'none'.")
    if neuron_type is None:
        neuron_type = _registered(neuron)
    if neuron_type not in RECURRENT_NEURONS:  # an allow-list of models: another recurrence is not implemented
        raise ValueError(
            f"snn.neuron {neuron!r} is not implemented for the recurrent SNN; use one of "
            f"{[c.kind for c in RECURRENT_NEURONS]}."
        )
    if spiking and neuron_type is not IFNeuron:
        raise ValueError(f"snn.neuron {neuron!r}: a directly trained spiking RNN runs as it was trained (neuron 'if').")
    return neuron_type


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
    return recurrent_thresholds(model, batches, device, method)


@torch.no_grad()
def recurrent_thresholds(
    model: nn.Module, batches: Iterable, device: torch.device | str | None, method: str
) -> dict[str, float]:
    """:func:`calibrate_recurrent_thresholds`' work on a model and method checked already
    (:func:`check_recurrent_config`): nothing is checked again."""
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
    neuron_type = check_recurrent_settings(model, shift=shift, neuron=neuron)
    return recurrent_snn(model, thresholds, shift, neuron_type)


def recurrent_snn(
    model: nn.Module, thresholds: dict[str, float], shift: str, neuron_type: type[IFNeuron]
) -> SpikingSentimentNet:
    """:func:`convert_recurrent`'s work with settings checked already (:func:`check_recurrent_config`);
    ``neuron_type`` is the recurrent layer's neuron model, asked whether it emits negative spikes."""
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
        signed=neuron_type.emits_negative,  # RECURRENT_NEURONS: the signed recurrence, or the IF one
    ).eval()
