"""The converter's view of a network: a torch.fx graph, checked against an allow-list.

Conversion is a property of call sites, not of modules: torchvision's ``BasicBlock`` calls
one ``self.relu`` twice, and a network may call ``F.relu`` where no module exists. So
:func:`prepare` traces a deep copy of the model with torch.fx (activation modules as leaves)
and rewrites it into an equivalent ANN, a :class:`torch.fx.GraphModule`, in which

* every *call site* of a ReLU-like activation is its own module, an **activation site**:
  a module called once keeps its qualified name (``features.1``); the second and later calls
  of a reused module get ``<name>__call<k>`` (a copy of it); functional forms (``F.relu``,
  ``torch.relu``, ``Tensor.relu``, ``clamp(min=0[, max])``, ``F.relu6``, ``F.hardtanh(0, m)``)
  become a ``nn.ReLU`` or a clipped :class:`~lightning_snn.activations.ThresholdReLU` named
  after the fx node (``relu_1``, ``clamp``);
* batch norm (eval mode, running statistics) directly after a conv or linear layer whose
  only user it is, is folded into that layer; any other batch norm stays as a per-channel
  affine map;
* every other node is on an allow-list of operations that are linear and time-invariant,
  so they run unchanged on spikes (see DESIGN.md section 7), or is a max pooling: on the
  analog input path it stays (the same max at every step); right after an activation site
  whose input is analog it is moved before the site (exact: max pooling commutes with every
  non-decreasing activation); right after any other site it becomes a gated spiking max-pool.
  Anything else is refused, before any conversion work, with a :class:`ConversionError` that
  names the node or module.

Calibration (one threshold per activation site) and conversion (one IF neuron per site)
both run on this prepared graph, so they see the same sites under the same names.

This module traces and rewrites; the allow-list check is :mod:`lightning_snn.graph_check` and the
queries on a prepared graph (its sites, :func:`record_sites`) are :mod:`lightning_snn.graph_sites`,
both re-exported here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from lightning_snn.activations import CONVERTIBLE_ACTIVATIONS, ThresholdReLU
from lightning_snn.allow_list import (
    BATCH_NORMS,
    CLAMP_FUNCTIONS,
    CLAMP_METHODS,
    HINT,
    MAX_POOLS,
    RELU_FUNCTIONS,
    RELU_METHODS,
)

# the check and the site queries have their own modules; importing them from here keeps working
from lightning_snn.graph_check import ConversionError, _check_batch_norm, check_graph
from lightning_snn.graph_sites import (
    _analog_nodes,
    _arg,
    _through_identities,
    activation_sites,
    max_pool_sites,
    record_sites,
)

__all__ = [
    "ConversionError",
    "activation_sites",
    "check_graph",
    "fold_batch_norm",
    "max_pool_sites",
    "prepare",
    "record_sites",
    "replace_activation_sites",
    "set_submodule",
    "trace",
]


# ---- tracing --------------------------------------------------------------------------------
class _Tracer(fx.Tracer):
    """Traces into user modules; activation modules stay leaves (they become sites)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, CONVERTIBLE_ACTIVATIONS) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    """A torch.fx GraphModule over ``model``'s own submodules (not a copy), or a ConversionError."""
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # data-dependent control flow, unsupported Python, ...
        raise ConversionError(
            f"{type(model).__name__} cannot be traced with torch.fx ({type(exc).__name__}: {exc}). The converter "
            "refuses to guess: write forward() without Python control flow that depends on tensor values "
            "(if/for over a tensor, .item(), data-dependent shapes), or convert the traceable part of the model."
        ) from exc
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


def _clamp_bounds(node: fx.Node) -> tuple[object, object]:
    if node.target in (torch.clamp_min,) or node.target in ("clamp_min", "clamp_min_"):
        return _arg(node, 1, "min"), None
    return _arg(node, 1, "min"), _arg(node, 2, "max")


def _activation_for_clamp(node: fx.Node, lo, hi) -> nn.Module:
    """``clamp(x, 0, hi)`` as a module: nn.ReLU without an upper bound, else a clipped ThresholdReLU."""
    if isinstance(lo, bool) or not isinstance(lo, (int, float)) or lo != 0:
        raise ConversionError(
            f"fx node {node.name!r} clamps with min={lo!r}: only clamp(min=0[, max > 0]) is a ReLU that IF "
            f"neurons reproduce. {HINT}"
        )
    if hi is None:
        return nn.ReLU()
    if isinstance(hi, bool) or not isinstance(hi, (int, float)) or not hi > 0:
        raise ConversionError(f"fx node {node.name!r} clamps with max={hi!r}: the upper bound must be a number > 0.")
    return ThresholdReLU(y_th=float(hi), enabled=True)


def _functional_activation(node: fx.Node) -> nn.Module | None:
    """The module equivalent of a functional ReLU-like node, or None if the node is not one."""
    if node.op == "call_function":
        if node.target in RELU_FUNCTIONS:
            return nn.ReLU()
        if node.target in CLAMP_FUNCTIONS:
            return _activation_for_clamp(node, *_clamp_bounds(node))
        if node.target is F.relu6:
            return ThresholdReLU(y_th=6.0, enabled=True)
        if node.target is F.hardtanh:
            return _activation_for_clamp(node, _arg(node, 1, "min_val", -1.0), _arg(node, 2, "max_val", 1.0))
    if node.op == "call_method":
        if node.target in RELU_METHODS:
            return nn.ReLU()
        if node.target in CLAMP_METHODS:
            return _activation_for_clamp(node, *_clamp_bounds(node))
    return None


def _module_activation(module: nn.Module, node: fx.Node) -> nn.Module | None:
    if isinstance(module, CONVERTIBLE_ACTIVATIONS):
        return module
    if isinstance(module, nn.ReLU6):
        return ThresholdReLU(y_th=6.0, enabled=True)
    if isinstance(module, nn.Hardtanh):
        return _activation_for_clamp(node, module.min_val, module.max_val)
    return None


def _free_name(gm: fx.GraphModule, name: str) -> str:
    candidate, k = name, 1
    while _has_path(gm, candidate):
        candidate = f"{name}_{k}"
        k += 1
    return candidate


def _has_path(gm: nn.Module, path: str) -> bool:
    try:
        gm.get_submodule(path)
        return True
    except AttributeError:
        return hasattr(gm, path)


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at the dotted ``path`` (its parent must exist)."""
    parent_name, _, attr = path.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


# ---- rewriting --------------------------------------------------------------------------------
def _split_activation_sites(gm: fx.GraphModule) -> None:
    """Give every activation call site its own module (reused modules copied, functions made modules)."""
    calls: dict[str, int] = {}
    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            act = _module_activation(module, node)
            if act is None:
                continue
            k = calls.get(node.target, 0)
            calls[node.target] = k + 1
            if act is module and k == 0:
                continue  # first call of an activation module: the site keeps the module's name
            name = node.target if k == 0 else _free_name(gm, f"{node.target}__call{k}")
            gm.add_submodule(name, copy.deepcopy(act) if act is module else act)
            node.target = name
        else:
            act = _functional_activation(node)
            if act is None:
                continue
            name = _free_name(gm, node.name)
            gm.add_submodule(name, act)
            with gm.graph.inserting_before(node):
                site = gm.graph.call_module(name, args=(_arg(node, 0, "input"),))
            node.replace_all_uses_with(site)
            gm.graph.erase_node(node)


def _commute_analog_max_pools(gm: fx.GraphModule) -> None:
    """``max_pool(act(z)) -> act(max_pool(z))`` where ``z`` is analog (constant in time).

    Exact in the ANN for every convertible activation, since each is a non-decreasing
    function applied elementwise (ReLU, clamp, the QCFS staircase) and max pooling pads with
    -inf. In the SNN the max pooling then runs on the constant input current of the IF layer,
    exactly, instead of gating its spikes (torchvision's ResNet stem: conv -> BN -> ReLU ->
    max-pool). The site keeps its name; it now sees the pooled map.
    """
    sites = set(activation_sites(gm))
    analog = _analog_nodes(gm)
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), MAX_POOLS):
            continue
        site = _through_identities(gm, node.args[0])
        if not (isinstance(site, fx.Node) and site.op == "call_module" and site.target in sites):
            continue
        if site.args[0] not in analog or len(site.users) != 1 or gm.get_submodule(node.target).return_indices:
            continue
        chain, cursor = [], node.args[0]
        while cursor is not site:  # dropout / identity between the site and the pool
            chain.append(cursor)
            cursor = cursor.args[0]
        if any(len(c.users) != 1 for c in chain):
            continue
        with gm.graph.inserting_before(site):
            pooled = gm.graph.call_module(node.target, args=(site.args[0],), kwargs=dict(node.kwargs))
        site.args = (pooled, *site.args[1:])
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)


def fold_batch_norm(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """A copy of ``conv`` (Conv or Linear) with the eval-mode ``bn`` after it folded in.

    ``W' = W * gamma / sqrt(var + eps)`` per output channel, ``b' = (b - mean) * gamma /
    sqrt(var + eps) + beta``: exact in eval mode, up to rounding.
    """
    folded = copy.deepcopy(conv)
    with torch.no_grad():
        scale = bn.running_var.add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        weight = folded.weight.detach() * scale.view(-1, *([1] * (folded.weight.dim() - 1))).to(folded.weight)
        bias = shift.to(folded.weight) if folded.bias is None else folded.bias.detach() * scale + shift
        folded.weight = nn.Parameter(weight)
        folded.bias = nn.Parameter(bias.to(folded.weight.dtype))
    return folded


def _fold_batch_norms(gm: fx.GraphModule) -> None:
    module_calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module_calls[node.target] = module_calls.get(node.target, 0) + 1
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), BATCH_NORMS):
            continue
        bn = gm.get_submodule(node.target)
        _check_batch_norm(bn, node.target)
        prev = node.args[0]
        if not (isinstance(prev, fx.Node) and prev.op == "call_module" and len(prev.users) == 1):
            continue
        layer = gm.get_submodule(prev.target)
        foldable = isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) or (
            isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d)
        )
        if not foldable or module_calls[prev.target] != 1:
            continue
        set_submodule(gm, prev.target, fold_batch_norm(layer, bn))
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)


# ---- the entry points ---------------------------------------------------------------------
def prepare(model: nn.Module, fold_bn: bool = True) -> fx.GraphModule:
    """The model as the converter sees it: a checked, equivalent GraphModule (see the module docs).

    Works on a deep copy: ``model`` is never modified. The result is in eval mode (batch
    norm uses its running statistics, dropout is off), on the model's device.

    Raises:
        ConversionError: the model cannot be traced, or holds an operation that is not on
            the allow-list (named in the message), or has no activation to convert.
    """
    copy_ = copy.deepcopy(model).eval()
    gm = trace(copy_)
    _split_activation_sites(gm)
    if fold_bn:
        _fold_batch_norms(gm)
    _commute_analog_max_pools(gm)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    check_graph(gm)
    return gm.eval()


def replace_activation_sites(model: nn.Module, make: Callable[[str, nn.Module], nn.Module]) -> fx.GraphModule:
    """A trainable copy of ``model`` whose activation sites are ``make(name, site)``, e.g. for training
    every ReLU call site of a torchvision model as a ThresholdReLU. Batch norm is not folded."""
    gm = trace(copy.deepcopy(model))
    _split_activation_sites(gm)
    for name, site in activation_sites(gm).items():
        set_submodule(gm, name, make(name, site))
    gm.recompile()
    return gm.train(model.training)
