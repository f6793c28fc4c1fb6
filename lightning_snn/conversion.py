"""ANN -> SNN conversion (Deng & Gu 2021, Algorithm 1), in plain PyTorch.

* :func:`calibrate_thresholds` -- per-site ``V_th`` = max activation over a calibration set
  (all-reduced with MAX under ``torch.distributed`` so every rank holds the same values).
* :func:`convert` -- the SNN: the model's prepared graph (:func:`lightning_snn.graph.prepare`)
  with every activation site replaced by an :class:`~lightning_snn.neurons.IFNeuron` (soft
  reset, spike amplitude ``V_th``) and every max pooling by a
  :class:`~lightning_snn.neurons.SpikingMaxPool2d`.

How the converter understands a network: through its torch.fx graph. Every call site of a
ReLU-like activation (a reused module, ``F.relu``, ``clamp(min=0)`` included) is its own
site with its own threshold and neuron, batch norm is folded into the conv before it, and
every other operation must be on an allow-list of linear, time-invariant operations that
run unchanged on time-folded ``[steps * B, ...]`` tensors (see :mod:`lightning_snn.neurons`).
Anything else is refused by name (:class:`~lightning_snn.graph.ConversionError`) before any
work, never converted wrongly. A residual block's activation after the add becomes one IF
neuron that integrates branch + shortcut, with the same shift as every other neuron.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from lightning_snn.activations import ThresholdReLU
from lightning_snn.graph import (
    ConversionError,
    activation_sites,
    max_pool_sites,
    prepare,
    set_submodule,
)
from lightning_snn.neurons import IFNeuron, SpikingMaxPool2d, StatefulModule

#: Key of the output layer's maximum (the spiking readout's threshold) in a thresholds dict.
OUTPUT_KEY = "<output>"
SHIFT_MODES = ("membrane", "bias", "none")
READOUTS = ("analog", "spiking")


def activation_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The activation sites of ``model`` (one per call site), by name, in execution order.

    The modules are those of the prepared copy (:func:`lightning_snn.graph.prepare`), not of
    ``model``: a module called twice gives two sites.
    """
    return activation_sites(prepare(model))


def check_convertible(model: nn.Module) -> None:
    """Raise a :class:`~lightning_snn.graph.ConversionError` (a TypeError) if ``model`` cannot be
    converted exactly: untraceable, an operation off the allow-list (named), or no activation."""
    prepare(model)


@torch.no_grad()
def site_activations(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The ANN's activation at every site on the batch ``x``, and its output.

    Returns ``({site name: activation}, output)``, from the prepared copy (eval mode, batch norm
    folded), under the names the thresholds and the SNN's neurons use.
    """
    gm = prepare(model).to(x.device)
    acts: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, n=n: acts.__setitem__(n, out.detach().clone()))
        for n, m in activation_sites(gm).items()
    ]
    try:
        out = gm(x)
    finally:
        for h in handles:
            h.remove()
    return acts, out


@torch.no_grad()
def calibrate_thresholds(
    model: nn.Module,
    batches: Iterable,
    device: torch.device | str | None = None,
    include_output: bool = True,
) -> dict[str, float]:
    """Per-site threshold ``V_th`` = max activation over ``batches`` (Algorithm 1, lines 3-9).

    Runs the prepared copy of the model (:func:`lightning_snn.graph.prepare`) in eval mode (no
    dropout, batch norm folded); ``model`` itself is not touched.
    Under an initialised ``torch.distributed`` process group the per-rank maxima are
    all-reduced with MAX, so every rank returns identical thresholds, equal to those of one
    process over the union of the ranks' batches.

    Args:
        model: the ANN.
        batches: an iterable of inputs or ``(inputs, targets)`` tuples.
        device: where to run (default: the model's device).
        include_output: also record the max output (logit), under :data:`OUTPUT_KEY`, the
            threshold of the spiking readout.

    Returns:
        ``{site name: V_th}`` in execution order, plus :data:`OUTPUT_KEY` if requested. A module
        called once keeps its qualified name (``features.1``); see :mod:`lightning_snn.graph`.
    """
    gm = prepare(model)
    layers = activation_sites(gm)
    if device is None:
        device = next(model.parameters()).device
    gm = gm.to(device)
    names = list(layers)
    maxima = torch.full((len(names) + 1,), float("-inf"), dtype=torch.float64, device=device)

    def hook_for(i: int):
        def hook(_module, _inputs, output):
            maxima[i] = torch.maximum(maxima[i], output.detach().max().to(torch.float64))

        return hook

    handles = [layers[n].register_forward_hook(hook_for(i)) for i, n in enumerate(names)]
    seen = 0
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            out = gm(x.to(device))
            maxima[-1] = torch.maximum(maxima[-1], out.max().to(torch.float64))
            seen += x.shape[0]
    finally:
        for h in handles:
            h.remove()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(maxima, op=dist.ReduceOp.MAX)
    elif seen == 0:
        raise ValueError("the calibration set is empty: pass at least one batch.")
    values = maxima.tolist()
    thresholds = dict(zip(names, values[:-1], strict=True))
    if include_output:
        thresholds[OUTPUT_KEY] = values[-1]
    return thresholds


class SpikingReadout(nn.Module):
    """The paper's spiking output layer: an IF neuron after the network's last layer."""

    def __init__(self, body: nn.Module, neuron: IFNeuron) -> None:
        super().__init__()
        self.body = body
        self.neuron = neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.body(x))


def _shift_terms(v_threshold: torch.Tensor, shift: str, timesteps: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(initial membrane, bias current) of one neuron under a shift mode."""
    zero = torch.zeros_like(v_threshold)
    if shift == "membrane":
        return v_threshold / 2.0, zero
    if shift == "bias":
        return zero, v_threshold / (2.0 * timesteps)
    return zero, zero


def _threshold_tensor(name: str, value) -> torch.Tensor:
    """A site's threshold as a float64 tensor (scalar or per channel), with a clear error if unusable."""
    v = torch.as_tensor(value, dtype=torch.float64)
    if not torch.isfinite(v).all():
        raise ValueError(
            f"the threshold of layer {name!r} is {v.tolist()}: the ANN's activations there are not finite. "
            "Check the model's weights for NaN/inf (a diverged training?) and the calibration images."
        )
    if not (v > 0).all():
        raise ValueError(
            f"layer {name!r} never activated on the calibration images (threshold {v.tolist()}): a dead "
            "layer cannot fire. Calibrate on more (or real) images, or check that the layer is trained."
        )
    return v


def convert(
    model: nn.Module,
    thresholds: dict[str, float],
    shift: str = "membrane",
    timesteps: int | None = None,
    readout: str = "analog",
) -> nn.Module:
    """Build the SNN from the model's prepared graph; ``model`` itself is never modified.

    Args:
        model: the source ANN (anything :func:`lightning_snn.graph.prepare` accepts).
        thresholds: from :func:`calibrate_thresholds` on this model: ``{site: V_th}``, a float
            or a per-channel ``[C]`` tensor / list per site.
        shift: ``"membrane"`` (initial membrane ``V_th/2``: independent of T, so one
            simulation to ``T_max`` is valid at every ``T``), ``"bias"`` (Algorithm 1:
            ``+V_th/(2T)`` to the bias, i.e. a constant input current; valid at ``timesteps``
            only) or ``"none"``.
        timesteps: the simulation length T, required for ``shift="bias"``.
        readout: ``"analog"`` (the last layer accumulates its input currents; predictions =
            argmax of the summed output) or ``"spiking"`` (the paper's IF output layer with
            threshold = max logit, no shift, as in the paper's appendix A.2).

    Returns:
        The SNN (a ``torch.fx.GraphModule``), in eval mode, on the model's device. Run it with
        :func:`lightning_snn.simulation.simulate`.

    Raises:
        ConversionError: the model holds something the converter cannot convert exactly.
        ValueError: bad settings, or thresholds that do not fit this model.
    """
    if shift not in SHIFT_MODES:
        raise ValueError(f"unknown shift mode {shift!r}; choose one of {list(SHIFT_MODES)}.")
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; choose one of {list(READOUTS)}.")
    if shift == "bias" and (timesteps is None or int(timesteps) <= 0):
        raise ValueError("shift='bias' adds V_th/(2T) to the bias: pass the simulation length timesteps=T > 0.")
    snn = prepare(model)
    sites = activation_sites(snn)
    missing = [n for n in sites if n not in thresholds]
    if missing:
        raise ValueError(
            f"no threshold for activation site(s) {missing}: the thresholds come from another "
            "architecture; calibrate this model with calibrate_thresholds()."
        )
    for name, act in sites.items():
        vth = _threshold_tensor(name, thresholds[name])
        v_init, bias = _shift_terms(vth, shift, timesteps)
        if isinstance(act, ThresholdReLU):
            bias = bias - act.shift  # the source ANN computed clamp(x - shift, 0, y_th)
        set_submodule(snn, name, IFNeuron(vth, v_init=v_init, bias_current=bias, name=name))
    for name, pool in max_pool_sites(snn).items():
        set_submodule(snn, name, SpikingMaxPool2d.from_max_pool(pool))
    if readout == "spiking":
        if OUTPUT_KEY not in thresholds:
            raise ValueError("readout='spiking' needs the max logit: calibrate with include_output=True.")
        snn = SpikingReadout(snn, IFNeuron(float(thresholds[OUTPUT_KEY]), name=OUTPUT_KEY))
    param = next(model.parameters(), None)
    return snn.to(param.device if param is not None else "cpu").eval()


def neurons(snn: nn.Module) -> list[IFNeuron]:
    """The IF neurons of an SNN, in module order."""
    return [m for m in snn.modules() if isinstance(m, IFNeuron)]


def stateful_modules(snn: nn.Module) -> list[StatefulModule]:
    """Every layer of an SNN that keeps state across steps (IF neurons, spiking max-pools)."""
    return [m for m in snn.modules() if isinstance(m, StatefulModule)]


__all__ = [
    "OUTPUT_KEY",
    "READOUTS",
    "SHIFT_MODES",
    "ConversionError",
    "activation_layers",
    "calibrate_thresholds",
    "check_convertible",
    "convert",
    "neurons",
    "site_activations",
    "stateful_modules",
]
