"""What a prepared graph holds, for everything that reads it: its activation sites, its spiking
max-pools, the nodes that stay analog, and :func:`record_sites` to see the sites' outputs.

:func:`lightning_snn.graph.prepare` builds the graph (and checks it, :mod:`lightning_snn.graph_check`);
calibration, conversion, correction and the diagnostics query it here. Re-exported by
:mod:`lightning_snn.graph`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.fx as fx
from torch import nn

from lightning_snn.activations import CONVERTIBLE_ACTIVATIONS
from lightning_snn.allow_list import MAX_POOLS

__all__ = ["activation_sites", "max_pool_sites", "record_sites"]


def _arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


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
