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
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from lightning_snn.activations import CONVERTIBLE_ACTIVATIONS, ThresholdReLU
from lightning_snn.allow_list import (
    ADDITIVE,
    ADDITIVE_METHODS,
    BATCH_NORMS,
    CLAMP_FUNCTIONS,
    CLAMP_METHODS,
    DIM_FUNCTIONS,
    DIM_METHODS,
    HINT,
    LINEAR_FUNCTIONS,
    LINEAR_METHODS,
    LINEAR_MODULES,
    MAX_POOLS,
    META_METHODS,
    RELU_FUNCTIONS,
    RELU_METHODS,
    SCALING,
    SCALING_METHODS,
)


class ConversionError(TypeError):
    """The model holds something the converter cannot turn into an exact SNN."""


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


def _arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _describe(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"module {node.target!r} ({type(gm.get_submodule(node.target)).__name__})"
    target = getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return f"fx node {node.name!r} (Tensor.{target})"
    module = getattr(node.target, "__module__", None) or ""
    return f"fx node {node.name!r} ({module + '.' if module else ''}{target})"


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


def _through_identities(gm: fx.GraphModule, node) -> object:
    """The node a chain of dropout / identity modules (identities in eval mode) starts from."""
    while isinstance(node, fx.Node) and node.op == "call_module":
        if not isinstance(gm.get_submodule(node.target), (nn.Dropout, nn.Identity)):
            break
        node = node.args[0]
    return node


def _analog_nodes(gm: fx.GraphModule) -> set[fx.Node]:
    """The nodes that compute the same value at every step of a simulation: the input, the
    constants, and what the allow-listed ops make of them before any activation site. (The
    input is presented unchanged at every step, so the first layer's current is analog and
    constant in time; everything after an IF layer carries spikes.)"""
    sites = set(activation_sites(gm))
    analog: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            analog.add(node)
        elif node.op != "output" and not (node.op == "call_module" and node.target in sites):
            if all(n in analog for n in node.all_input_nodes):
                analog.add(node)
    return analog


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


def _check_batch_norm(bn: nn.Module, name: str) -> None:
    if not bn.track_running_stats or bn.running_mean is None:
        raise ConversionError(
            f"module {name!r} ({type(bn).__name__}) has no running statistics (track_running_stats=False), so in "
            "eval mode it normalises over each batch: not an affine map an SNN can run. Train with running stats."
        )


# ---- the allow-list check -----------------------------------------------------------------------
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


# ---- the public entry points -----------------------------------------------------------------
def activation_sites(gm: fx.GraphModule) -> dict[str, nn.Module]:
    """The activation sites of a prepared graph, ``{name: module}``, in execution order."""
    sites: dict[str, nn.Module] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target not in sites:
            module = gm.get_submodule(node.target)
            if isinstance(module, CONVERTIBLE_ACTIVATIONS):
                sites[node.target] = module
    return sites


def max_pool_sites(gm: fx.GraphModule) -> dict[str, nn.Module]:
    """The max-pooling modules of a prepared graph that pool spikes, ``{name: module}``: those
    fed by an activation site, which become gated :class:`~lightning_snn.neurons.SpikingMaxPool2d`.
    A max pooling on the analog input path (before any activation site) stays as it is."""
    analog = _analog_nodes(gm)
    return {
        n.target: gm.get_submodule(n.target)
        for n in gm.graph.nodes
        if n.op == "call_module" and isinstance(gm.get_submodule(n.target), MAX_POOLS) and n not in analog
    }


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


@contextmanager
def record_sites(sites: Mapping[str, nn.Module], on_site: Callable[[str, torch.Tensor], None]) -> Iterator[None]:
    """Within the block, every forward of the site module ``sites[name]`` calls
    ``on_site(name, output)`` (detached); the hooks are removed on exit, whatever happens."""
    handles = [m.register_forward_hook(lambda _m, _i, out, n=n: on_site(n, out.detach())) for n, m in sites.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
