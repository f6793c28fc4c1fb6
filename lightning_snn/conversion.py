"""ANN -> SNN conversion (Deng & Gu 2021, Algorithm 1), in plain PyTorch.

* :func:`calibrate_thresholds` -- per-layer ``V_th`` = max activation over a calibration set
  (all-reduced with MAX under ``torch.distributed`` so every rank holds the same values).
* :func:`convert` -- a deep copy of the ANN with every activation module replaced by an
  :class:`~lightning_snn.neurons.IFNeuron` (soft reset, spike amplitude ``V_th``).

How the converter understands a network's graph: it does not. Every convertible activation
is a module (:data:`~lightning_snn.activations.CONVERTIBLE_ACTIVATIONS`), and every other
layer the networks use (conv, linear, average pooling, flatten, dropout, residual add) is
stateless and time-independent, so it runs unchanged on time-folded ``[steps * B, ...]``
tensors (see :mod:`lightning_snn.neurons`). Swapping the activation modules is therefore
the whole conversion, and a residual block's activation after the add becomes one IF
neuron that integrates branch + shortcut, with the same shift as every other neuron, with
no model-specific code here. What the swap cannot see -- a functional ``F.relu`` or a max
pooling -- is refused loudly by :func:`check_convertible` (torch.fx), not converted wrongly.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lightning_snn.activations import CONVERTIBLE_ACTIVATIONS, ThresholdReLU
from lightning_snn.neurons import IFNeuron

#: Key of the output layer's maximum (the spiking readout's threshold) in a thresholds dict.
OUTPUT_KEY = "<output>"
SHIFT_MODES = ("membrane", "bias", "none")
READOUTS = ("analog", "spiking")

_UNCONVERTIBLE_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)
_FUNCTIONAL_NONLINEARITIES = {
    F.relu,
    torch.relu,
    F.relu6,
    F.leaky_relu,
    F.gelu,
    F.silu,
    torch.clamp,
    torch.clip,
    F.max_pool2d,
    F.hardtanh,
    torch.sigmoid,
    torch.tanh,
}
_METHOD_NONLINEARITIES = {"relu", "relu_", "clamp", "clamp_", "clip", "sigmoid", "tanh"}


class _LeafActivationTracer(torch.fx.Tracer):
    """Traces into everything but the activation modules (their clamp is what we convert)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, CONVERTIBLE_ACTIVATIONS) or super().is_leaf_module(m, qualname)


def activation_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The convertible activation modules of ``model``, by qualified name, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, CONVERTIBLE_ACTIVATIONS)}


def check_convertible(model: nn.Module) -> None:
    """Raise if ``model`` holds something the converter would silently get wrong.

    Refuses max pooling and batch norm modules, models with no activation module, and
    (through a torch.fx trace) functional non-linearities such as ``F.relu`` that would
    stay analog in the SNN.
    """
    for name, m in model.named_modules():
        if isinstance(m, _UNCONVERTIBLE_MODULES):
            raise TypeError(f"layer {name!r} is {type(m).__name__}: IF neurons need average pooling; use nn.AvgPool2d.")
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise TypeError(
                f"layer {name!r} is {type(m).__name__}: the paper's source ANNs have no batch norm; "
                "fold it into the preceding conv before converting."
            )
    if not activation_layers(model):
        raise TypeError(
            "the model has no activation module to convert (ThresholdReLU or nn.ReLU); "
            "write activations as modules, not F.relu."
        )
    try:
        graph = _LeafActivationTracer().trace(model)
    except Exception as exc:  # models with data-dependent control flow cannot be traced
        warnings.warn(
            f"could not trace the model with torch.fx ({exc}); functional activations not checked.", stacklevel=2
        )
        return
    for node in graph.nodes:
        bad = (node.op == "call_function" and node.target in _FUNCTIONAL_NONLINEARITIES) or (
            node.op == "call_method" and node.target in _METHOD_NONLINEARITIES
        )
        if bad:
            raise TypeError(
                f"the model calls {getattr(node.target, '__name__', node.target)} functionally "
                f"(fx node {node.name!r}); it would not be converted to IF neurons. Use an "
                "activation module (lightning_snn.activations.ThresholdReLU or nn.ReLU) instead."
            )


@torch.no_grad()
def calibrate_thresholds(
    model: nn.Module,
    batches: Iterable,
    device: torch.device | str | None = None,
    include_output: bool = True,
) -> dict[str, float]:
    """Per-layer threshold ``V_th`` = max activation over ``batches`` (Algorithm 1, lines 3-9).

    The model runs in eval mode (no dropout); its train/eval mode is restored afterwards.
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
        ``{layer name: V_th}`` in module order, plus :data:`OUTPUT_KEY` if requested.
    """
    layers = activation_layers(model)
    if not layers:
        raise TypeError("the model has no activation module (ThresholdReLU or nn.ReLU) to calibrate.")
    if device is None:
        device = next(model.parameters()).device
    names = list(layers)
    maxima = torch.full((len(names) + 1,), float("-inf"), dtype=torch.float64, device=device)

    def hook_for(i: int):
        def hook(_module, _inputs, output):
            maxima[i] = torch.maximum(maxima[i], output.detach().max().to(torch.float64))

        return hook

    handles = [layers[n].register_forward_hook(hook_for(i)) for i, n in enumerate(names)]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            out = model(x.to(device))
            maxima[-1] = torch.maximum(maxima[-1], out.max().to(torch.float64))
            seen += x.shape[0]
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
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


def _shift_terms(v_threshold: float, shift: str, timesteps: int | None) -> tuple[float, float]:
    """(initial membrane, bias current) of one neuron under a shift mode."""
    if shift == "membrane":
        return v_threshold / 2.0, 0.0
    if shift == "bias":
        return 0.0, v_threshold / (2.0 * timesteps)
    return 0.0, 0.0


def convert(
    model: nn.Module,
    thresholds: dict[str, float],
    shift: str = "membrane",
    timesteps: int | None = None,
    readout: str = "analog",
) -> nn.Module:
    """Build the SNN from a deep copy of ``model``; ``model`` itself is never modified.

    Args:
        model: the source ANN.
        thresholds: from :func:`calibrate_thresholds` on this model.
        shift: ``"membrane"`` (initial membrane ``V_th/2``: independent of T, so one
            simulation to ``T_max`` is valid at every ``T``), ``"bias"`` (Algorithm 1:
            ``+V_th/(2T)`` to the bias, i.e. a constant input current; valid at ``timesteps``
            only) or ``"none"``.
        timesteps: the simulation length T, required for ``shift="bias"``.
        readout: ``"analog"`` (the last layer accumulates its input currents; predictions =
            argmax of the summed output) or ``"spiking"`` (the paper's IF output layer with
            threshold = max logit, no shift, as in the paper's appendix A.2).

    Returns:
        The SNN, in eval mode, on the model's device. Run it with
        :func:`lightning_snn.simulation.simulate`.
    """
    if shift not in SHIFT_MODES:
        raise ValueError(f"unknown shift mode {shift!r}; choose one of {list(SHIFT_MODES)}.")
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; choose one of {list(READOUTS)}.")
    if shift == "bias" and (timesteps is None or int(timesteps) <= 0):
        raise ValueError("shift='bias' adds V_th/(2T) to the bias: pass the simulation length timesteps=T > 0.")
    check_convertible(model)
    layers = activation_layers(model)
    missing = [n for n in layers if n not in thresholds]
    if missing:
        raise ValueError(
            f"no threshold for activation layer(s) {missing}: the thresholds come from another "
            "architecture; calibrate this model with calibrate_thresholds()."
        )
    snn = copy.deepcopy(model).eval()
    for name, act in activation_layers(snn).items():
        vth = float(thresholds[name])
        v_init, bias = _shift_terms(vth, shift, timesteps)
        if isinstance(act, ThresholdReLU):
            bias -= act.shift  # the source ANN computed clamp(x - shift, 0, y_th)
        neuron = IFNeuron(vth, v_init=v_init, bias_current=bias)
        parent_name, _, attr = name.rpartition(".")
        parent = snn.get_submodule(parent_name) if parent_name else snn
        setattr(parent, attr, neuron)
    if readout == "spiking":
        if OUTPUT_KEY not in thresholds:
            raise ValueError("readout='spiking' needs the max logit: calibrate with include_output=True.")
        snn = SpikingReadout(snn, IFNeuron(float(thresholds[OUTPUT_KEY])))
    return snn.to(next(model.parameters()).device)


def neurons(snn: nn.Module) -> list[IFNeuron]:
    """The IF neurons of an SNN, in module order."""
    return [m for m in snn.modules() if isinstance(m, IFNeuron)]
