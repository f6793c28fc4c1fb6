"""The part of an SNN that sees only the constant input, computed once per batch instead of per chunk.

The analog image is the same at every step, so every layer between it and the first stateful
layer (typically the first convolution) computes the same current at every step. The engine
already computes it once per *chunk* (``[B, ...]``, broadcast by the first IF neuron); with one
step per chunk (the CPU's choice at large batches) that is once per step, ~3% of a VGG-16 step.
:func:`chunk_runner` splits the SNN's fx graph into that constant prefix, run once per batch, and
the rest, run once per chunk on the prefix's outputs: the same operations on the same values, so
the same results bit for bit.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import fx, nn

from lightning_snn.neurons import StatefulModule

_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_enabled = True


@contextlib.contextmanager
def constant_prefix(enabled: bool) -> Iterator[None]:
    """Switch the once-per-batch prefix off (``False``: every chunk runs the whole SNN, as before
    it existed; for benchmarks) or on within a block."""
    global _enabled
    previous, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = previous


def _split(gm: fx.GraphModule) -> tuple[fx.GraphModule, fx.GraphModule] | None:
    """``(prefix, rest)``: ``prefix(*inputs)`` returns the constant values that the rest of the
    graph reads, ``rest(*those)`` the graph's output. ``None`` if no layer sees only the input."""
    stateful = {name for name, m in gm.named_modules() if isinstance(m, StatefulModule)}
    constant: set[fx.Node] = set()
    work = False
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            constant.add(node)
        elif node.op in ("call_module", "call_function", "call_method") and node.all_input_nodes:
            if node.op == "call_module" and node.target in stateful:
                continue
            if all(a in constant for a in node.all_input_nodes):
                constant.add(node)
                work = True
    if not work:
        return None
    frontier = [n for n in gm.graph.nodes if n in constant and any(u not in constant for u in n.users)]
    prefix, env = fx.Graph(), {}
    for node in gm.graph.nodes:
        if node in constant:
            env[node] = prefix.node_copy(node, lambda n: env[n])
    prefix.output(tuple(env[n] for n in frontier))
    rest, env = fx.Graph(), {}
    for i, node in enumerate(frontier):
        env[node] = rest.placeholder(f"constant_{i}")
    for node in gm.graph.nodes:
        if node not in constant:
            env[node] = rest.node_copy(node, lambda n: env[n])
    return fx.GraphModule(gm, prefix), fx.GraphModule(gm, rest)


def _key(gm: fx.GraphModule) -> tuple:
    """What the split depends on: the graph and the module objects it calls (a replaced module,
    e.g. by ``setattr``, makes a new split; a module changed in place needs none)."""
    return (id(gm.graph), len(gm.graph.nodes), tuple((n, id(m)) for n, m in gm.named_modules()))


def chunk_runner(snn: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A callable that runs one chunk of ``snn`` on the constant input ``x``: ``snn(x)``, with the
    constant prefix of its graph computed here, once. Falls back to plain ``snn(x)`` per chunk
    for a model that is not an fx graph, has hooks on the whole model, or has no constant prefix."""
    from lightning_snn.snn import ConvertedSNN

    body, head = (snn.body, snn.readout_neuron) if isinstance(snn, ConvertedSNN) else (snn, None)
    hooked = any(getattr(m, attr) for m in (snn, body) for attr in ("_forward_hooks", "_forward_pre_hooks"))
    if not _enabled or not isinstance(body, fx.GraphModule) or hooked:
        return lambda: snn(x)
    key = _key(body)
    cached = _cache.get(body)
    if cached is None or cached[0] != key:
        cached = (key, _split(body))
        _cache[body] = cached
    if cached[1] is None:
        return lambda: snn(x)
    prefix, rest = cached[1]
    constants = prefix(x)
    if head is None:
        return lambda: rest(*constants)
    return lambda: head(rest(*constants))
