"""The allow-list check: is every node of a prepared graph a site or an operation that runs
unchanged on spikes? The first one that is not is named in a :class:`ConversionError`.

The operation sets are :mod:`lightning_snn.allow_list`'s; :func:`lightning_snn.graph.prepare` calls
:func:`check_graph` last, so a graph that comes out of it is convertible. Re-exported by
:mod:`lightning_snn.graph`.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from lightning_snn.allow_list import (
    ADDITIVE,
    ADDITIVE_METHODS,
    BATCH_NORMS,
    DIM_FUNCTIONS,
    DIM_METHODS,
    HINT,
    LINEAR_FUNCTIONS,
    LINEAR_METHODS,
    LINEAR_MODULES,
    MAX_POOLS,
    META_METHODS,
    SCALING,
    SCALING_METHODS,
)
from lightning_snn.graph_sites import _analog_nodes, _arg, _through_identities, activation_sites

__all__ = ["ConversionError", "check_graph"]


class ConversionError(TypeError):
    """The model holds something the converter cannot turn into an exact SNN."""


def _describe(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"module {node.target!r} ({type(gm.get_submodule(node.target)).__name__})"
    target = getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return f"fx node {node.name!r} (Tensor.{target})"
    module = getattr(node.target, "__module__", None) or ""
    return f"fx node {node.name!r} ({module + '.' if module else ''}{target})"


def _check_batch_norm(bn: nn.Module, name: str) -> None:
    if not bn.track_running_stats or bn.running_mean is None:
        raise ConversionError(
            f"module {name!r} ({type(bn).__name__}) has no running statistics (track_running_stats=False), so in "
            "eval mode it normalises over each batch: not an affine map an SNN can run. Train with running stats."
        )


def _kinds(gm: fx.GraphModule) -> dict[fx.Node, str]:
    """Each node's kind: ``"varying"`` (depends on the input), ``"constant"`` or ``"meta"`` (shapes)."""
    kinds: dict[fx.Node, str] = {}
    for node in gm.graph.nodes:
        inputs = [kinds[n] for n in node.all_input_nodes]
        if node.op == "placeholder":
            kinds[node] = "varying"
        elif node.op == "get_attr":
            kinds[node] = "constant"
        elif (node.op == "call_method" and node.target in META_METHODS) or (
            node.op == "call_function" and node.target is getattr
        ):
            kinds[node] = "meta"
        elif "varying" in inputs:
            kinds[node] = "varying"
        elif "constant" in inputs:
            kinds[node] = "constant"
        else:
            kinds[node] = "meta" if inputs else "constant"
    return kinds


def _dim_is_batch(node: fx.Node) -> bool:
    """Whether a reduction / concatenation / reshaping node touches dimension 0 (time x batch)."""
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if name in ("cat", "concat"):
        dims = [_arg(node, 1, "dim", 0)]
    elif name in ("chunk", "split"):
        dims = [_arg(node, 2, "dim", 0)]
    elif name == "transpose":
        dims = [_arg(node, 1, "dim0"), _arg(node, 2, "dim1")]
    elif name == "permute":
        order = node.args[1:] if node.op == "call_method" else _arg(node, 1, "dims")
        if len(order) == 1 and isinstance(order[0], (list, tuple)):
            order = order[0]
        return bool(order) and order[0] != 0
    elif name in ("mean", "sum"):
        dim = _arg(node, 1, "dim", None)
        if dim is None:
            return True  # a reduction over every dimension mixes the samples
        dims = list(dim) if isinstance(dim, (list, tuple)) else [dim]
    else:
        dims = [_arg(node, 1, "dim", None)]
    return any(d == 0 for d in dims if isinstance(d, int) and not isinstance(d, bool))


def _check_node(
    gm: fx.GraphModule, node: fx.Node, kinds: dict[fx.Node, str], sites: set[str], analog: set[fx.Node]
) -> None:
    refuse = None
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        if node.target in sites or isinstance(module, LINEAR_MODULES):
            return
        if isinstance(module, BATCH_NORMS):
            _check_batch_norm(module, node.target)
            return
        if isinstance(module, MAX_POOLS):
            source = _through_identities(gm, node.args[0])
            if module.return_indices:
                refuse = "returns indices, which depend on the values"
            elif node in analog:
                return  # on the analog input path: the same max at every step, exact
            elif isinstance(source, fx.Node) and source.op == "call_module" and source.target in sites:
                return  # gates the spikes of one IF layer (SpikingMaxPool2d)
            else:
                refuse = (
                    "is not fed directly by an activation: a spiking max-pool gates the spikes of one IF layer; "
                    "put the max pooling right after a ReLU (max-pool and ReLU commute), or use nn.AvgPool2d"
                )
        else:
            refuse = "is not on the converter's allow-list"
    elif node.op == "call_function":
        # count arguments, not distinct nodes: y * y has one input node but two time-varying factors
        varying = [a for a in node.args if isinstance(a, fx.Node) and kinds[a] == "varying"]
        if kinds[node] != "varying" or node.target is getattr:
            return  # shape arithmetic or constants: evaluated the same way at every step
        if node.target in ADDITIVE:
            return
        if node.target in SCALING:
            divisor_varying = node.target in (operator.truediv, operator.itruediv, torch.div) and (
                isinstance(node.args[1], fx.Node) and kinds[node.args[1]] == "varying"
            )
            if len(varying) <= 1 and not divisor_varying:
                return
            refuse = "multiplies or divides two time-varying tensors (not linear: a product of spike trains)"
        elif node.target is operator.getitem:
            index = node.args[1]
            first = index[0] if isinstance(index, tuple) and index else index
            if kinds[node.args[0]] != "varying" or isinstance(node.args[0], fx.Node) and _returns_tuple(node.args[0]):
                return
            if first == slice(None) or first is Ellipsis:
                return
            refuse = "indexes the batch dimension (dimension 0 carries time x batch in the simulation)"
        elif node.target in LINEAR_FUNCTIONS:
            if node.target in DIM_FUNCTIONS and _dim_is_batch(node):
                refuse = "works along dimension 0, which carries time x batch in the simulation"
            elif node.target is torch.flatten and _arg(node, 1, "start_dim", 0) == 0:
                refuse = "flattens the batch dimension; use torch.flatten(x, 1)"
            elif node.target is F.pad and _arg(node, 2, "mode", "constant") != "constant":
                refuse = "pads with a value-dependent mode; only constant zero padding is linear"
            elif node.target is F.pad and _arg(node, 3, "value", None) not in (None, 0, 0.0):
                refuse = "pads with a non-zero constant, which would be added at every step"
            elif node.target in (F.conv1d, F.conv2d, F.conv3d, F.linear) and len(varying) != 1:
                refuse = "takes a time-varying weight"
            else:
                return
        else:
            refuse = "is not on the converter's allow-list"
    elif node.op == "call_method":
        if kinds[node] != "varying" or node.target in META_METHODS:
            return
        if node.target in ADDITIVE_METHODS:
            return
        if node.target in SCALING_METHODS:
            other = _arg(node, 1, "other")
            other_varying = isinstance(other, fx.Node) and kinds[other] == "varying"
            if not other_varying:
                return
            refuse = "multiplies or divides two time-varying tensors (not linear: a product of spike trains)"
        elif node.target in LINEAR_METHODS:
            if node.target in DIM_METHODS and _dim_is_batch(node):
                refuse = "works along dimension 0, which carries time x batch in the simulation"
            elif node.target == "flatten" and _arg(node, 1, "start_dim", 0) == 0:
                refuse = "flattens the batch dimension; use x.flatten(1)"
            else:
                return
        else:
            refuse = "is not on the converter's allow-list"
    else:  # placeholder, get_attr, output
        return
    raise ConversionError(f"{_describe(node, gm)} {refuse}. {HINT}")


def _returns_tuple(node: fx.Node) -> bool:
    return node.target in (torch.chunk, torch.split, "chunk", "split")


def check_graph(gm: fx.GraphModule) -> None:
    """Raise a ConversionError at the first node that is neither a site nor on the allow-list."""
    sites = set(activation_sites(gm))
    if not sites:
        raise ConversionError(
            "the model has no ReLU-like activation to convert (nn.ReLU, ThresholdReLU, F.relu, clamp(min=0), ...): "
            "an SNN needs at least one spiking layer."
        )
    kinds, analog = _kinds(gm), _analog_nodes(gm)
    for node in gm.graph.nodes:
        _check_node(gm, node, kinds, sites, analog)
