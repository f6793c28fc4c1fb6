"""The NIR side of the exporter: nodes and edges, the spike amplitudes carried as scales, the
bias shifts placed, the graph's metadata (:mod:`lightning_snn.export.nir_export` walks the SNN)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lightning_snn.export.nir_common import (
    FORMAT_VERSION,
    GRAPH_SEMANTICS,
    IF_SEMANTICS,
    NAMESPACE,
    ExportError,
    full,
    require_nir,
)
from lightning_snn.snn import ConvertedSNN


@dataclass
class Term:
    """One summand of a value: the output of NIR node ``node`` times ``scale`` (per element of
    the value's feature shape; None = 1)."""

    node: str
    scale: np.ndarray | None = None


class GraphBuilder:
    """Collects NIR nodes and edges; values in between are lists of scaled terms (:class:`Term`)."""

    def __init__(self, snn: ConvertedSNN, timesteps: int, pooling: str) -> None:
        self.nir = require_nir()
        self.snn, self.t, self.pooling = snn, timesteps, pooling
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.shapes: dict[str, tuple[int, ...]] = {}  # NIR node -> output feature shape
        self.shifts: dict[str, np.ndarray] = {}  # IF node -> current to add to the bias feeding it

    def add(self, name: str, nir_node: Any, inputs: list[Term], shape: tuple[int, ...]) -> str:
        """Add ``nir_node`` under a free name fed by the (unscaled) ``inputs``; returns its name."""
        base, k = name, 1
        while name in self.nodes:
            name, k = f"{base}_{k}", k + 1
        self.nodes[name] = nir_node
        self.shapes[name] = shape
        for term in inputs:
            assert term.scale is None, "scaled terms are folded or materialised before they reach a node"
            self.edges.append((term.node, name))
        return name

    @staticmethod
    def merge(terms: list[Term], shape: tuple[int, ...]) -> list[Term]:
        """One term per source node (x + x is one edge of scale 2: NIR forbids duplicate edges)."""
        merged: dict[str, Term] = {}
        for term in terms:
            if term.node in merged:
                old = merged[term.node]
                a = old.scale if old.scale is not None else np.ones(shape, np.float32)
                b = term.scale if term.scale is not None else np.ones(shape, np.float32)
                merged[term.node] = Term(term.node, (a + b).astype(np.float32))
            else:
                merged[term.node] = term
        return list(merged.values())

    def materialise(self, terms: list[Term], shape: tuple[int, ...]) -> list[Term]:
        """Unscaled terms: a NIR ``Scale`` node after each scaled one."""
        out = []
        for term in self.merge(terms, shape):
            if term.scale is None or bool(np.all(term.scale == 1)):
                out.append(Term(term.node))
                continue
            scale = self.nir.Scale(scale=term.scale.astype(np.float32))
            out.append(Term(self.add(f"{term.node}_scale", scale, [Term(term.node)], shape)))
        return out

    def common_scale(self, terms: list[Term], shape: tuple[int, ...]) -> tuple[list[Term], np.ndarray | None]:
        """``(terms, scale)`` with one scale shared by every term (materialised where they differ)."""
        terms = self.merge(terms, shape)
        scales = [t.scale for t in terms]
        first = scales[0]
        same = all(
            (s is None and first is None) or (s is not None and first is not None and np.array_equal(s, first))
            for s in scales
        )
        if same:
            return [Term(t.node) for t in terms], first
        return self.materialise(terms, shape), None

    @staticmethod
    def per_channel(scale: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
        """The ``[C]`` vector of a scale constant over each channel's positions, else None."""
        if scale is None:
            return None
        flat = scale.reshape(shape[0], -1)
        return flat[:, 0].copy() if bool(np.all(flat == flat[:, :1])) else None

    def channel_scaled(self, terms: list[Term], shape: tuple[int, ...]) -> tuple[list[Term], np.ndarray | None]:
        """Unscaled terms and the per-input-channel factor to fold into the next weights (or None)."""
        terms, scale = self.common_scale(terms, shape)
        channel = self.per_channel(scale, shape)
        if scale is not None and channel is None:  # not per channel: keep it as Scale nodes
            return self.materialise([Term(t.node, scale) for t in terms], shape), None
        return terms, channel

    def if_node(self, vth: np.ndarray, role: str, **meta: Any) -> Any:
        """A NIR IF node with its threshold and our neuron's exact semantics in its metadata."""
        node = self.nir.IF(r=np.ones(vth.shape, np.float32), v_threshold=vth)  # NIR's default v_reset: 0 (unused)
        semantics = {
            "role": role,
            "semantics": IF_SEMANTICS,
            "reset": "subtract",
            "fires_at": ">=",
            "max_spikes_per_step": 1,
            "initial_potential": 0.0,
            "dt": 1.0,
            "timesteps": self.t,
        }
        node.metadata = {NAMESPACE: {**semantics, **meta}}
        return node

    def finish(self, output_terms: list[Term], shape: tuple[int, ...], integrator: bool) -> Any:
        inputs = self.materialise(output_terms, shape)
        readout = self.snn.readout_neuron
        if readout is not None:
            note = "outputs unit spikes: the prediction is the argmax of the spike counts"
            node = self.if_node(full(readout.v_threshold, shape), "spiking readout", note=note)
            inputs = [Term(self.add("readout", node, inputs, shape))]
        elif integrator:
            node = self.nir.I(r=np.ones(shape, np.float32))
            node.metadata = {
                NAMESPACE: {
                    "role": "analog readout",
                    "semantics": "v[t] = v[t-1] + I[t], v[0] = 0; the prediction is argmax v[T]",
                }
            }
            inputs = [Term(self.add("readout", node, inputs, shape))]
        self.add("output", self.nir.Output(output_type={"output": np.array(shape)}), inputs, shape)
        self.place_shifts()
        return self.graph()

    def place_shifts(self) -> None:
        """Add each IF node's current to the bias of a conv / affine node that feeds it alone (or
        to a new per-channel bias node on one of its edges)."""
        for name, shift in self.shifts.items():
            if not np.any(shift):
                continue
            shape = self.shapes[name]
            sources = [s for s, d in self.edges if d == name]
            fan_out = {s: sum(1 for e in self.edges if e[0] == s) for s in sources}
            carrier = next(
                (
                    s
                    for s in sources
                    if isinstance(self.nodes[s], (self.nir.Conv1d, self.nir.Conv2d, self.nir.Affine))
                    and fan_out[s] == 1
                    and self.shapes[s] == shape
                ),
                None,
            )
            if carrier is None:
                carrier = self._bias_node(sources[0], name, shape)
            node = self.nodes[carrier]
            per_bias = shift if isinstance(node, self.nir.Affine) else self.per_channel(shift, shape)
            if per_bias is None:
                raise ExportError(
                    f"cannot export to NIR: the constant current of IF node {name!r} varies within a channel."
                )
            original = np.asarray(node.bias, dtype=np.float32)
            node.bias = (torch.from_numpy(original.copy()) + torch.from_numpy(per_bias)).numpy()
            # on the IF node: nir 1.0.4 (sinabs' pin) drops a Conv2d node's metadata
            self.nodes[name].metadata[NAMESPACE].update({"bias_shift_in": carrier, "source_bias_of_carrier": original})

    def _bias_node(self, source: str, neuron: str, shape: tuple[int, ...]) -> str:
        """A node that passes ``source`` through unchanged and adds a bias: a depthwise 1x1 conv
        (feature maps) or an identity Affine (vectors), put on the edge ``source -> neuron``."""
        c = shape[0]
        if len(shape) == 1:
            node = self.nir.Affine(weight=np.eye(c, dtype=np.float32), bias=np.zeros(c, np.float32))
        else:
            cls = self.nir.Conv2d if len(shape) == 3 else self.nir.Conv1d
            node = cls(
                input_shape=tuple(shape[1:]) if len(shape) == 3 else shape[1],
                weight=diagonal_conv(torch.ones(c), (1,) * (len(shape) - 1)),
                stride=1,
                padding=0,
                dilation=1,
                groups=1,
                bias=np.zeros(c, np.float32),
            )
        node.metadata = {NAMESPACE: {"role": "bias of the neuron's constant current"}}
        name = f"{neuron}_bias"
        self.nodes[name] = node
        self.shapes[name] = shape
        i = self.edges.index((source, neuron))
        self.edges[i : i + 1] = [(source, name), (name, neuron)]
        return name

    def graph(self) -> Any:
        snn = self.snn
        meta = {
            "producer": "lightning_snn",
            "format_version": FORMAT_VERSION,
            "semantics": GRAPH_SEMANTICS,
            "timesteps": self.t,
            "dt": 1.0,
            "shift": snn.shift,
            "source_timesteps": snn.timesteps if snn.timesteps is not None else 0,
            "exported_shift": "bias" if snn.shift != "none" else "none",
            "readout": snn.readout,
            "neuron": snn.neuron,
            "pooling": self.pooling,
        }
        names = self.ordered_names()
        nodes = {names[k]: self.nodes[k] for k in sorted(self.nodes, key=lambda k: names[k])}
        for node in nodes.values():
            ours = getattr(node, "metadata", {}).get(NAMESPACE, {})
            if "bias_shift_in" in ours:
                ours["bias_shift_in"] = names[ours["bias_shift_in"]]
        edges = [(names[a], names[b]) for a, b in self.edges]
        return self.nir.NIRGraph(nodes=nodes, edges=edges, metadata={NAMESPACE: meta})

    def ordered_names(self) -> dict[str, str]:
        """``{name: "n<k>_<name>"}`` with ``k`` the node's place in execution order, zero-padded, so
        that the file's (alphabetical, HDF5) order of nodes is an execution order: nirtorch 2.0.2's
        ``nir_to_torch`` (snnTorch's importer) gives up on a node whose inputs come > 3 nodes later."""
        order: list[str] = []
        waiting = list(self.nodes)  # insertion order, topological but for the bias nodes put in later
        while waiting:
            ready = next(n for n in waiting if all(s in order for s, d in self.edges if d == n))
            order.append(ready)
            waiting.remove(ready)
        width = len(str(len(order) - 1))
        return {name: f"n{k:0{width}d}_{name.lstrip('_')}" for k, name in enumerate(order)}


def diagonal_conv(factor: torch.Tensor, kernel: tuple[int, ...]) -> np.ndarray:
    """Conv weights ``[C, C, *kernel]`` that map channel c to channel c only, times ``factor[c]``. Dense,
    not depthwise: nir 1.0.8 cannot read back a grouped conv it wrote (its type check takes the
    input channels from the weight's second dimension)."""
    c = factor.numel()
    weight = torch.zeros(c, c, *kernel)
    weight[torch.arange(c), torch.arange(c)] = factor.float().view(c, *([1] * len(kernel)))
    return weight.numpy()
