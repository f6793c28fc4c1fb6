"""A converted SNN -> a ``nir.NIRGraph`` and a ``.nir`` file, faithfully or not at all.

What is written (each choice is what NIR 1.0.x can say; see docs/EXPORT.md):

* **Input** the analog image (``input_shape``, no batch dimension), presented at every step.
* **Conv1d / Conv2d / Affine** the SNN's convs and linear layers with their biases (batch norm
  is already folded by the converter). An IF node emits unit spikes while ours emit ``V_th``,
  so each weighted node's input channels are multiplied by the ``V_th`` of the IF layer feeding
  them (through pooling and flatten); where no weighted node follows (a residual shortcut, the
  output) a NIR ``Scale`` node carries the amplitude.
* **Average pooling** as NIR's ``AvgPool2d``, or (``pooling``) a ``SumPool2d`` with ``1/k^2``
  folded into the next weights, or a depthwise ``Conv2d``; **flatten** as ``Flatten``.
* **Residual sums** as several edges into one node (NIR sums a node's incoming edges).
* **IF** one node per activation site with its ``V_th`` (per channel: broadcast over the
  feature map), ``r = 1``. NIR cannot say our neuron: subtractive reset, firing at ``>=``, one
  spike per step, an initial potential. Every IF node's ``metadata`` says it exactly
  (:data:`~lightning_snn.export.nir_common.IF_SEMANTICS`), and the membrane shift (initial
  potential ``V_th / 2``) is written as the paper's bias shift at the chosen T: ``V_th / (2T)``
  added to the bias of the node feeding the neuron. Both put the same charge ``V_th / 2`` into
  the membrane by step T (Deng & Gu 2021, eq. 15 and the membrane initialisation that reaches
  it without T); the spike trains differ in timing, so the exported network is the bias-shift
  SNN at T, a close relative of the membrane-shift SNN. The neuron's own constant current (the
  bias shift of ``shift: bias``, a correction, the source ANN's activation shift) is added to
  that bias too. The metadata keep each neuron's initial potential, current and the original
  bias, so :func:`~lightning_snn.export.import_nir` restores the SNN as it was.
* **Readout** the analog readout as an integrator ``I`` (``r = 1``: it sums the last layer's
  output over the steps; ``integrator=False`` ends at the last layer and leaves the sum to the
  reader), the spiking readout as one more IF node.

Refused by name (:class:`~lightning_snn.export.nir_common.ExportError`): gated spiking max-pools
and any max pooling (NIR has no max-pool), signed neurons (NIR's IF never fires a negative
spike), a bias-shift SNN exported at another T than its own, and every operation outside the
list above (concatenation, padding layers, a standalone batch norm, constants added to the
signal, reshapes other than a flatten, ...).
"""

from __future__ import annotations

import math
import operator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from lightning_snn.export.nir_common import (
    NAMESPACE,
    POOLINGS,
    ExportError,
    full,
    require_nir,
)
from lightning_snn.export.nir_graph import GraphBuilder, Term, diagonal_conv
from lightning_snn.graph_check import _kinds
from lightning_snn.neurons import IFNeuron, SpikingMaxPool2d
from lightning_snn.snn import ConvertedSNN

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
_POOLS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_PASS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
_PASS_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d}
_PASS_METHODS = {"contiguous", "clone", "float", "to"}
_FLATTEN_FUNCTIONS = {torch.flatten, torch.reshape}
_FLATTEN_METHODS = {"view", "reshape", "flatten"}
_POOL_FUNCTIONS = {F.avg_pool2d, F.adaptive_avg_pool2d}
_ADD = {operator.add, operator.iadd, torch.add}
_SUB = {operator.sub, operator.isub, torch.sub}
_MUL = {operator.mul, operator.imul, torch.mul}
_DIV = {operator.truediv, operator.itruediv, torch.div}
_ARITH_METHODS = {"add": _ADD, "add_": _ADD, "sub": _SUB, "sub_": _SUB, "mul": _MUL, "mul_": _MUL, "div": _DIV}


def _describe(node: fx.Node, body: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"layer {node.target!r} ({type(body.get_submodule(node.target)).__name__})"
    name = getattr(node.target, "__name__", str(node.target))
    return f"fx node {node.name!r} ({'Tensor.' if node.op == 'call_method' else ''}{name})"


def _refusal(node: fx.Node, body: fx.GraphModule) -> str | None:
    """Why NIR cannot hold ``node`` faithfully, or None (shape-independent checks only)."""
    if node.op == "call_module":
        m = body.get_submodule(node.target)
        if isinstance(m, SpikingMaxPool2d):
            return "is a gated spiking max-pool: NIR has no max-pool (use average pooling in the ANN)"
        if isinstance(m, nn.MaxPool2d):
            return "is a max pooling of the input: NIR has no max-pool (use average pooling in the ANN)"
        if isinstance(m, IFNeuron):
            if m.emits_negative:
                return "fires negative spikes (neuron 'signed'): NIR's IF cannot; convert with neuron 'if'"
            if type(m) is not IFNeuron:  # another neuron model: NIR's IF is the soft-reset one only
                return f"is a {m.kind!r} neuron ({type(m).__name__}): NIR's IF is the soft-reset IF neuron 'if' only"
            return None
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.padding_mode != "zeros":
            return f"pads with mode {m.padding_mode!r}: NIR's convs pad with zeros"
        if isinstance(m, nn.AvgPool2d) and (m.ceil_mode or m.divisor_override is not None):
            return "uses ceil_mode or divisor_override, which NIR's pooling cannot say"
        if isinstance(m, (*_WEIGHTED, *_POOLS, *_PASS_MODULES, nn.Flatten)):
            return None
        return f"({type(m).__name__}) has no faithful NIR node"
    if node.op == "call_function":
        known = _PASS_FUNCTIONS | _FLATTEN_FUNCTIONS | _POOL_FUNCTIONS | _ADD | _SUB | _MUL | _DIV
        return None if node.target in known else "has no NIR node"
    if node.op == "call_method":
        return None if node.target in _PASS_METHODS | _FLATTEN_METHODS | set(_ARITH_METHODS) else "has no NIR node"
    if node.op == "get_attr":
        return "is a constant tensor in the signal path: NIR has no constant input"
    return None


def check_nir_exportable(snn: ConvertedSNN) -> None:
    """Refuse, by name and before any work, what NIR cannot hold in this SNN: spiking max-pools,
    signed neurons, and any operation without a NIR node (shape checks come at export)."""
    if not isinstance(snn, ConvertedSNN):
        raise TypeError(f"export a converted SNN (lightning_snn.conversion.convert), got {type(snn).__name__}.")
    kinds = _kinds(snn.body)
    for node in snn.body.graph.nodes:
        if kinds.get(node) == "varying" or node.op == "call_module":
            why = _refusal(node, snn.body)
            if why is not None:
                raise ExportError(f"cannot export to NIR: {_describe(node, snn.body)} {why}.")


class _Values(fx.Interpreter):
    """Runs the body once on a zero image of batch 1 (IF neurons pass their input through) to
    record every node's value, hence its feature shape and any constant operand."""

    def __init__(self, body: fx.GraphModule) -> None:
        super().__init__(body)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.values[n] = out
        return out

    def call_module(self, target, args, kwargs):
        if isinstance(self.fetch_attr(target), IFNeuron):
            return args[0]
        return super().call_module(target, args, kwargs)


class _Exporter(GraphBuilder):
    """Walks the SNN's fx graph in order and translates each node (the NIR side: GraphBuilder)."""

    def __init__(self, snn: ConvertedSNN, input_shape: tuple[int, ...], timesteps: int, pooling: str) -> None:
        super().__init__(snn, timesteps, pooling)
        self.body = snn.body
        device = next((b.device for b in snn.buffers()), torch.device("cpu"))
        runner = _Values(self.body)
        with torch.no_grad():
            runner.run(torch.zeros(1, *input_shape, device=device))
        self.values = runner.values
        self.kinds = _kinds(self.body)

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(self.values[node].shape[1:])

    def build(self, integrator: bool) -> Any:
        terms: dict[fx.Node, list[Term]] = {}
        output_terms: list[Term] | None = None
        for node in self.body.graph.nodes:
            if node.op == "placeholder":
                shape = self.shape(node)
                name = self.add("input", self.nir.Input(input_type={"input": np.array(shape)}), [], shape)
                terms[node] = [Term(name)]
            elif node.op == "output":
                output_node = node.args[0]
                if not (isinstance(output_node, fx.Node) and output_node in terms):
                    raise ExportError(
                        "cannot export to NIR: the SNN's output is not one tensor computed from its input."
                    )
                output_terms, out_shape = terms[output_node], self.shape(output_node)
            elif self.kinds.get(node) == "varying":
                why = _refusal(node, self.body)
                if why is not None:
                    raise ExportError(f"cannot export to NIR: {_describe(node, self.body)} {why}.")
                terms[node] = self.visit(node, terms)
        return self.finish(output_terms, out_shape, integrator)

    def visit(self, node: fx.Node, terms: dict[fx.Node, list[Term]]) -> list[Term]:
        shape, src = self.shape(node), node.args[0] if node.args else None
        in_terms = terms.get(src) if isinstance(src, fx.Node) else None
        in_shape = self.shape(src) if isinstance(src, fx.Node) and src in terms else None
        if node.op == "call_module":
            m = self.body.get_submodule(node.target)
            if isinstance(m, IFNeuron):
                return self.neuron(node, m, in_terms, shape)
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                return self.conv(node.name, m, in_terms, in_shape, shape)
            if isinstance(m, nn.Linear):
                return self.linear(node.name, m, in_terms, in_shape, shape)
            if isinstance(m, _POOLS):
                return self.pool(node, in_terms, in_shape, shape, self._pool_args(node, m, in_shape, shape))
            if isinstance(m, nn.Flatten):
                return self.flatten(node, in_terms, in_shape, shape)
            return in_terms  # dropout / identity: nothing in eval mode
        target = node.target
        if node.op == "call_method":
            if target in _PASS_METHODS:
                return in_terms
            if target in _FLATTEN_METHODS:
                return self.flatten(node, in_terms, in_shape, shape)
            target = next(iter(_ARITH_METHODS[target]))
        if target in _PASS_FUNCTIONS:
            return in_terms
        if target in _FLATTEN_FUNCTIONS:
            return self.flatten(node, in_terms, in_shape, shape)
        if target in _POOL_FUNCTIONS:
            return self.pool(node, in_terms, in_shape, shape, self._pool_args(node, None, in_shape, shape))
        return self.arithmetic(node, target, terms, shape)

    def neuron(self, node: fx.Node, m: IFNeuron, in_terms: list[Term], shape: tuple[int, ...]) -> list[Term]:
        inputs = self.materialise(in_terms, shape)
        vth = full(m.v_threshold, shape)
        v_init, current = full(m.v_init, shape), full(m.bias_current, shape)
        # the membrane shift as the bias shift at T: the same charge V_th/2 by step T (float32, as the SNN runs)
        shift = (torch.from_numpy(current) + torch.from_numpy(v_init) / self.t).numpy()
        nir_node = self.if_node(
            vth, "neuron", site=m.name, source_v_init=v_init, source_bias_current=current, bias_shift=shift
        )
        name = self.add(m.name.replace(".", "_") or node.name, nir_node, inputs, shape)
        self.shifts[name] = shift
        return [Term(name, vth)]

    def conv(self, name: str, m: nn.Module, in_terms, in_shape, shape) -> list[Term]:
        inputs, channel = self.channel_scaled(in_terms, in_shape)
        weight = m.weight.detach().float().cpu()
        if channel is not None:  # the IF layer's spike amplitude V_th, per input channel (groups respected)
            cout, cin_g = weight.shape[:2]
            group = torch.arange(cout) // (cout // m.groups)
            index = group[:, None] * cin_g + torch.arange(cin_g)[None, :]
            weight = weight * torch.from_numpy(channel)[index].view(cout, cin_g, *([1] * (weight.dim() - 2)))
        if m.groups > 1:  # as one dense conv, zero across groups: nir 1.0.8 cannot read back a grouped conv
            dense = torch.zeros(weight.shape[0], in_shape[0], *weight.shape[2:])
            cout_g, cin_g = weight.shape[0] // m.groups, weight.shape[1]
            for g in range(m.groups):
                dense[g * cout_g : (g + 1) * cout_g, g * cin_g : (g + 1) * cin_g] = weight[
                    g * cout_g : (g + 1) * cout_g
                ]
            weight = dense
        bias = m.bias.detach().float().cpu() if m.bias is not None else torch.zeros(weight.shape[0])
        padding = m.padding
        if isinstance(padding, str):
            if padding != "valid":
                raise ExportError(
                    f"cannot export to NIR: conv {name!r} pads with {padding!r}: give it explicit padding."
                )
            padding = (0,) * (weight.dim() - 2)
        cls = self.nir.Conv2d if weight.dim() == 4 else self.nir.Conv1d
        nir_node = cls(
            input_shape=tuple(in_shape[1:]) if weight.dim() == 4 else in_shape[1],
            weight=weight.numpy(),
            stride=m.stride,
            padding=padding,
            dilation=m.dilation,
            groups=1,
            bias=bias.numpy(),
        )
        meta = {"role": "synapses", "weights_times_input_amplitude": channel is not None}
        if channel is not None:
            meta["input_amplitude"] = channel
        nir_node.metadata = {NAMESPACE: meta}
        return [Term(self.add(name, nir_node, inputs, shape))]

    def linear(self, name: str, m: nn.Linear, in_terms, in_shape, shape) -> list[Term]:
        if len(in_shape) != 1:
            raise ExportError(
                f"cannot export to NIR: linear layer {name!r} acts on {in_shape}-shaped features: NIR's Affine "
                "takes a vector (flatten first)."
            )
        inputs, scale = self.common_scale(in_terms, in_shape)
        weight = m.weight.detach().float().cpu()
        if scale is not None:
            weight = weight * torch.from_numpy(scale)[None, :]
        bias = m.bias.detach().float().cpu() if m.bias is not None else torch.zeros(weight.shape[0])
        nir_node = self.nir.Affine(weight=weight.numpy(), bias=bias.numpy())
        meta = {"role": "synapses", "weights_times_input_amplitude": scale is not None}
        if scale is not None:
            meta["input_amplitude"] = scale
        nir_node.metadata = {NAMESPACE: meta}
        return [Term(self.add(name, nir_node, inputs, shape))]

    def _pool_args(self, node: fx.Node, m: nn.Module | None, in_shape, shape) -> tuple:
        """(kernel, stride, padding) pairs of an average pooling, or an ExportError."""

        def pair(v):
            return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))

        adaptive = isinstance(m, nn.AdaptiveAvgPool2d) or node.target is F.adaptive_avg_pool2d
        if len(in_shape) != 3:
            raise ExportError(f"cannot export to NIR: {_describe(node, self.body)} pools {in_shape}-shaped features.")
        if adaptive:  # exact as a plain average pooling only when the sizes divide
            (h, w), (oh, ow) = in_shape[1:], shape[1:]
            if h % oh or w % ow:
                raise ExportError(
                    f"cannot export to NIR: {_describe(node, self.body)} pools {h}x{w} to {oh}x{ow}, which is not "
                    "one average pooling (the sizes must divide)."
                )
            return (h // oh, w // ow), (h // oh, w // ow), (0, 0)
        if m is not None:
            kernel, stride, padding, include = m.kernel_size, m.stride, m.padding, m.count_include_pad
        else:
            args = {
                **dict(
                    zip(
                        [
                            "input",
                            "kernel_size",
                            "stride",
                            "padding",
                            "ceil_mode",
                            "count_include_pad",
                            "divisor_override",
                        ],
                        node.args,
                    )
                ),
                **node.kwargs,
            }
            if args.get("ceil_mode") or args.get("divisor_override") is not None:
                raise ExportError(
                    f"cannot export to NIR: {_describe(node, self.body)} uses ceil_mode or divisor_override."
                )
            kernel, stride = args["kernel_size"], args.get("stride") or args["kernel_size"]
            padding, include = args.get("padding", 0), args.get("count_include_pad", True)
        kernel, stride, padding = pair(kernel), pair(stride if stride is not None else kernel), pair(padding)
        if any(padding) and not include:
            raise ExportError(f"cannot export to NIR: {_describe(node, self.body)} pads without counting the padding.")
        return kernel, stride, padding

    def pool(self, node: fx.Node, in_terms, in_shape, shape, args: tuple) -> list[Term]:
        kernel, stride, padding = args
        area = kernel[0] * kernel[1]
        inputs, channel = self.channel_scaled(in_terms, in_shape)
        if self.pooling == "conv":  # a conv, channel c to channel c only: every importer reads one
            c = in_shape[0]
            factor = torch.full((c,), 1.0 / area) if channel is None else torch.from_numpy(channel) / area
            nir_node = self.nir.Conv2d(
                input_shape=tuple(in_shape[1:]),
                weight=diagonal_conv(factor, kernel),
                stride=stride,
                padding=padding,
                dilation=1,
                groups=1,
                bias=np.zeros(c, np.float32),
            )
            nir_node.metadata = {NAMESPACE: {"role": "average pooling", "pooling": "conv"}}
            return [Term(self.add(node.name, nir_node, inputs, shape))]
        cls = self.nir.AvgPool2d if self.pooling == "avg" else self.nir.SumPool2d
        nir_node = cls(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
        nir_node.metadata = {NAMESPACE: {"role": "average pooling", "pooling": self.pooling}}
        name = self.add(node.name, nir_node, inputs, shape)
        scale = None if channel is None else full(torch.from_numpy(channel), shape)
        if self.pooling == "sum":  # a sum of k^2 inputs: the mean's 1/k^2 goes to the next weights
            scale = (np.ones(shape, np.float32) if scale is None else scale) / np.float32(area)
        return [Term(name, scale)]

    def flatten(self, node: fx.Node, in_terms, in_shape, shape) -> list[Term]:
        if len(shape) != 1 or math.prod(shape) != math.prod(in_shape):
            raise ExportError(
                f"cannot export to NIR: {_describe(node, self.body)} reshapes {in_shape} to {shape}: NIR's only "
                "reshaping node is Flatten (to one vector per sample)."
            )
        if len(in_shape) == 1:
            return in_terms
        inputs, scale = self.common_scale(in_terms, in_shape)
        nir_node = self.nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
        name = self.add(node.name, nir_node, inputs, shape)
        return [Term(name, None if scale is None else scale.reshape(-1))]

    def arithmetic(self, node: fx.Node, target, terms: dict[fx.Node, list[Term]], shape) -> list[Term]:
        a, b = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
        alpha = node.kwargs.get("alpha", 1)
        if target in _ADD or target in _SUB:
            if not (a in terms and b in terms) or self.shape(a) != shape or self.shape(b) != shape or alpha != 1:
                raise ExportError(
                    f"cannot export to NIR: {_describe(node, self.body)} adds a constant or a broadcast tensor to "
                    "the signal: NIR sums equal-shaped edges only (put constants into a layer's bias)."
                )
            sign = -1.0 if target in _SUB else 1.0
            second = [
                Term(
                    t.node, (sign * (t.scale if t.scale is not None else np.ones(shape, np.float32))).astype(np.float32)
                )
                if sign < 0
                else t
                for t in terms[b]
            ]
            return self.merge([*terms[a], *second], shape)
        signal, factor = (a, b) if a in terms else (b, a)
        if signal not in terms or factor in terms or (target in _DIV and signal is not a):
            raise ExportError(f"cannot export to NIR: {_describe(node, self.body)} is not a scaling by a constant.")
        value = self.values[factor] if isinstance(factor, fx.Node) else factor
        value = torch.as_tensor(value, dtype=torch.float32).detach().cpu()
        if value.dim() > len(shape):
            value = value.squeeze(0)
        out = []
        for t in terms[signal]:
            base = torch.from_numpy(t.scale) if t.scale is not None else torch.ones(shape)
            scaled = base / value if target in _DIV else base * value
            out.append(Term(t.node, scaled.expand(shape).numpy().astype(np.float32).copy()))
        return out


def to_nir(
    snn: ConvertedSNN,
    input_shape: tuple[int, ...] | list[int],
    timesteps: int,
    *,
    pooling: str = "avg",
    integrator: bool = True,
) -> Any:
    """The ``nir.NIRGraph`` of a converted SNN, exported for ``timesteps`` steps (see the module docs).

    Args:
        snn: from :func:`lightning_snn.conversion.convert` (or :func:`~lightning_snn.export.import_nir`).
        input_shape: one input's shape without the batch dimension, e.g. ``(3, 32, 32)``.
        timesteps: the T the file is for: the membrane shift is written as the bias shift ``V_th / (2T)``.
        pooling: ``"avg"`` (NIR's AvgPool2d), ``"sum"`` (SumPool2d, ``1/k^2`` folded into the next
            weights: what sinabs and Norse read) or ``"conv"`` (a depthwise Conv2d: every importer).
        integrator: end the analog readout with an integrator node ``I``; ``False`` ends at the last
            layer (importers without ``I`` then sum the output over the steps themselves).

    Raises:
        ExportError: the SNN holds something NIR cannot say faithfully (named).
        ImportError: the ``nir`` package is missing (``pip install -e ".[nir]"``).
    """
    check_nir_exportable(snn)
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps <= 0:
        raise ValueError(f"timesteps must be the positive int T the export is for, e.g. 64; got {timesteps!r}.")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {list(POOLINGS)}.")
    if not snn.valid_at(timesteps):
        raise ExportError(
            f"cannot export to NIR at T = {timesteps}: this SNN's bias shift V_th/(2T) is built for T = "
            f"{snn.timesteps}. Export it at T = {snn.timesteps}, or convert with shift 'membrane'."
        )
    shape = tuple(int(s) for s in input_shape)
    return _Exporter(snn, shape, timesteps, pooling).build(integrator)


def export_nir(
    snn: ConvertedSNN,
    path: str | Path,
    input_shape: tuple[int, ...] | list[int],
    timesteps: int,
    *,
    pooling: str = "avg",
    integrator: bool = True,
) -> Path:
    """Write the SNN as a NIR file (``nir.write``) for ``timesteps`` steps; returns the path.
    The arguments are those of :func:`to_nir`; the file is written only if the export succeeds."""
    nir = require_nir()
    graph = to_nir(snn, input_shape, timesteps, pooling=pooling, integrator=integrator)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    return path
