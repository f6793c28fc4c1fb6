"""How many synapses each spike drives: the fan-out of every spike source of a converted SNN.

Computed once per SNN from its torch.fx graph (:func:`synapse_map`): the graph downstream of each
spiking layer is run on one sample with every conv / linear weight replaced by its non-zero mask,
no bias, average pooling as sum pooling and every other linear operation as identity; autograd
then gives, per neuron, the number of synapses it reaches. :mod:`lightning_snn.diagnostics`
multiplies these fan-outs by the spike counts it records (the synaptic operations and energy).
The operation sets are the converter's own (:mod:`lightning_snn.graph`), so what converts and
what is counted cannot drift apart.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from lightning_snn.allow_list import ADDITIVE, BATCH_NORMS, SCALING
from lightning_snn.conversion import OUTPUT_KEY
from lightning_snn.neurons import IFNeuron, SpikingMaxPool2d
from lightning_snn.snn import ConvertedSNN

#: The fan-out key of the analog input (its fan-out sum is the first layer's MACs).
INPUT_KEY = "<input>"


# ---- fan-out maps ---------------------------------------------------------------------------------
@dataclass
class SynapseMap:
    """The structural fan-out of every spike source of one SNN, per sample (no batch dimension).

    Attributes:
        fanout: ``{source: [*features]}`` synapses driven by one spike of each element: every IF
            layer (by site name; a spiking readout's neuron under ``<output>``, fan-out 0), every
            spiking max-pool, and the analog input under ``<input>``.
        credited_to: ``{source: IF layer}``: a max-pool's spikes are its feeding layer's.
        layer_macs: ``{synaptic layer: MACs per image}`` of the ANN (dense).
    """

    fanout: dict[str, torch.Tensor]
    credited_to: dict[str, str]
    layer_macs: dict[str, float]

    @property
    def input_macs(self) -> float:
        """MACs per image of the synaptic layer(s) fed by the analog input."""
        return float(self.fanout[INPUT_KEY].sum())

    @property
    def ann_macs(self) -> float:
        """MACs per image of the whole ANN (every synaptic layer, dense)."""
        return float(sum(self.layer_macs.values()))


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_IDENTITY_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
_IDENTITY_FUNCTIONS = {operator.neg, operator.pos, torch.neg}
_CONV_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d, F.linear}
_AVG_FUNCTIONS = {F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3}
_ADAPTIVE_FUNCTIONS = {F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3}
_IDENTITY_METHODS = {"neg", "float", "to", "type_as", "mul", "mul_", "div", "div_"}


def _mask(weight: torch.Tensor) -> torch.Tensor:
    """1 where a synapse exists (a non-zero weight), in the fan-out's float64."""
    return weight.detach().ne(0).to(torch.float64)


def _tuple(value, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _sum_pool(x: torch.Tensor, dims: int, kernel, stride, padding, ceil_mode: bool) -> torch.Tensor:
    """Average pooling as sum pooling (divisor 1, zero padding): every window counts every input once."""
    kernel = _tuple(kernel, dims)
    stride = _tuple(stride if stride not in (None, []) else kernel, dims)
    padding = _tuple(padding, dims)
    if dims == 1:  # avg_pool1d has no divisor_override: pool a [N, C, 1, L] image instead
        return _sum_pool(x.unsqueeze(-2), 2, (1, *kernel), (1, *stride), (0, *padding), ceil_mode).squeeze(-2)
    pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
    return pool(x, kernel, stride, padding, ceil_mode, True, 1)


def _adaptive_sum_pool(x: torch.Tensor, dims: int, output_size) -> torch.Tensor:
    """Adaptive average pooling times each window's size: a sum over each window."""
    pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[dims]
    out = pool(x, output_size)
    size = torch.ones((), dtype=x.dtype)
    for d, (n_in, n_out) in enumerate(zip(x.shape[-dims:], out.shape[-dims:], strict=True)):
        # torch's adaptive windows: [floor(i n_in / n_out), ceil((i + 1) n_in / n_out))
        i = torch.arange(n_out)
        lengths = (-((-(i + 1) * n_in) // n_out) - (i * n_in) // n_out).to(x.dtype)
        size = size.unsqueeze(-1) * lengths if d else lengths
    return out * size


def _varying_identity(*values) -> torch.Tensor:
    """A product or quotient by a constant, structurally: the time-varying operand, broadcast."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    picked = next((t for t in tensors if t.requires_grad), None)
    if picked is None:
        return torch.zeros(shape, dtype=torch.float64)
    return picked if picked.shape == shape else picked.expand(shape)


class _FanoutInterpreter(fx.Interpreter):
    """Runs an SNN graph on one sample, structurally (see :func:`synapse_map`)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.leaves: dict[str, torch.Tensor] = {}
        self.objective: list[torch.Tensor] = []
        self.layer_macs: dict[str, float] = {}

    def _leaf(self, name: str, shape: torch.Size) -> torch.Tensor:
        leaf = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
        self.leaves[name] = leaf
        return leaf

    def _stop(self, x: torch.Tensor) -> None:
        if isinstance(x, torch.Tensor) and x.requires_grad:
            self.objective.append(x.sum())

    def _synapses(self, name: str, x: torch.Tensor, layer) -> torch.Tensor:
        """A synaptic layer: its outputs end every path into it; its dense MACs are the ANN's."""
        out = layer(x)
        self._stop(out)
        with torch.no_grad():
            self.layer_macs[name] = float(layer(torch.ones_like(x)).sum())
        return torch.zeros(out.shape, dtype=torch.float64)

    def placeholder(self, target, args, kwargs):
        return self._leaf(INPUT_KEY, super().placeholder(target, args, kwargs).shape)

    def call_module(self, target, args, kwargs):
        m = self.fetch_attr(target)
        x = args[0] if args else None
        if isinstance(m, IFNeuron):
            self._stop(x)
            return self._leaf(target, x.shape)
        if isinstance(m, SpikingMaxPool2d):
            out = F.max_pool2d(x.detach(), m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
            return self._leaf(target, out.shape)
        if isinstance(m, _CONVS):
            mask = _mask(m.weight)
            return self._synapses(target, x, lambda t: m._conv_forward(t, mask, None))
        if isinstance(m, nn.Linear):
            mask = _mask(m.weight)
            return self._synapses(target, x, lambda t: F.linear(t, mask))
        if isinstance(m, _AVG_POOLS):
            return _sum_pool(x, _AVG_POOLS.index(type(m)) + 1, m.kernel_size, m.stride, m.padding, m.ceil_mode)
        if isinstance(m, _ADAPTIVE_POOLS):
            return _adaptive_sum_pool(x, _ADAPTIVE_POOLS.index(type(m)) + 1, m.output_size)
        if isinstance(m, BATCH_NORMS + _IDENTITY_MODULES):
            return x  # an affine map per channel folds into the next layer's weights: no synapses
        return super().call_module(target, args, kwargs)

    def call_function(self, target, args, kwargs):
        if target in _CONV_FUNCTIONS:
            args, kwargs = list(args), dict(kwargs)
            weight = args[1] if len(args) > 1 else kwargs.pop("weight")
            args[1:2] = [_mask(weight)]
            if len(args) > 2:
                args[2] = None
            kwargs.pop("bias", None)
            name = f"{getattr(target, '__name__', 'conv')}@{len(self.layer_macs)}"
            return self._synapses(name, args[0], lambda t: target(t, *args[1:], **kwargs))
        if target in _AVG_FUNCTIONS:
            names = ("kernel_size", "stride", "padding", "ceil_mode")
            values = [args[i + 1] if len(args) > i + 1 else kwargs.get(n) for i, n in enumerate(names)]
            kernel, stride, padding, ceil_mode = values
            return _sum_pool(args[0], _AVG_FUNCTIONS[target], kernel, stride, padding or 0, bool(ceil_mode))
        if target in _ADAPTIVE_FUNCTIONS:
            size = args[1] if len(args) > 1 else kwargs["output_size"]
            return _adaptive_sum_pool(args[0], _ADAPTIVE_FUNCTIONS[target], size)
        if target is torch.mean:
            return torch.sum(*args, **kwargs)
        if target in ADDITIVE:  # a - b counts b's synapses like a + b's; alpha is a weight
            return torch.add(args[0], args[1])
        if target in SCALING:
            return _varying_identity(*args[:2])
        if target in _IDENTITY_FUNCTIONS:
            return args[0]
        return super().call_function(target, args, kwargs)

    def call_method(self, target, args, kwargs):
        if target == "mean":
            return args[0].sum(*args[1:], **kwargs)
        if target in ("add", "add_", "sub", "sub_"):
            return torch.add(args[0], args[1] if len(args) > 1 else kwargs["other"])
        if target in _IDENTITY_METHODS:
            return _varying_identity(*args[:2]) if target in ("mul", "mul_", "div", "div_") else args[0]
        return super().call_method(target, args, kwargs)

    def output(self, target, args, kwargs):
        out = super().output(target, args, kwargs)
        self._stop(out)  # reached without a synaptic layer: one "synapse" per element
        return out


def _body(snn: nn.Module) -> tuple[fx.GraphModule, IFNeuron | None]:
    if isinstance(snn, ConvertedSNN):
        return snn.body, snn.readout_neuron
    if not isinstance(snn, fx.GraphModule):
        raise TypeError(
            f"diagnostics read a converted SNN (lightning_snn.conversion.convert), got {type(snn).__name__}."
        )
    return snn, None


def _feeding_site(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """The IF layer whose spikes a spiking max-pool gates (through dropout / identity)."""
    source = node.args[0]
    while isinstance(source, fx.Node) and source.op == "call_module":
        module = gm.get_submodule(source.target)
        if isinstance(module, IFNeuron):
            return source.target
        if not isinstance(module, _IDENTITY_MODULES):
            break
        source = source.args[0]
    return None


def synapse_map(snn: nn.Module, example: torch.Tensor) -> SynapseMap:
    """Every spike source's fan-out in ``snn``, from one structural pass on ``example[:1]``.

    Args:
        snn: from :func:`lightning_snn.conversion.convert` (its weights define the synapses:
            a zero weight is no synapse).
        example: any input batch of the right shape (its values are not used).
    """
    gm, readout = _body(snn)
    interpreter = _FanoutInterpreter(gm)
    # the fan-outs are gradients: autograd must record even where the caller disabled it (Lightning
    # runs test / validate / predict under torch.inference_mode, where enable_grad alone records nothing)
    with torch.inference_mode(False), torch.enable_grad():
        out = interpreter.run(torch.zeros(example[:1].shape, dtype=torch.float64))
        if not interpreter.objective:
            raise RuntimeError(
                "synapse_map: no spike reaches a synaptic layer or the output, so no fan-out can be computed "
                "(autograd recorded nothing); this is a bug, please report it with the model."
            )
        torch.stack(interpreter.objective).sum().backward()
    fanout = {
        name: (leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)).detach()[0]
        for name, leaf in interpreter.leaves.items()
    }
    credited = {name: name for name in fanout if name != INPUT_KEY}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), SpikingMaxPool2d):
            credited[node.target] = _feeding_site(gm, node) or node.target
    if readout is not None:
        fanout[OUTPUT_KEY] = torch.zeros(out.shape[1:], dtype=torch.float64)
        credited[OUTPUT_KEY] = OUTPUT_KEY
    return SynapseMap(fanout=fanout, credited_to=credited, layer_macs=interpreter.layer_macs)


__all__ = ["INPUT_KEY", "SynapseMap", "synapse_map"]
