"""A ``.nir`` file written by :func:`~lightning_snn.export.export_nir` -> a :class:`~lightning_snn.snn.ConvertedSNN`.

The importer honours the metadata the exporter writes: IF nodes become
:class:`~lightning_snn.neurons.IFNeuron` (soft reset, firing at ``>=``, one spike per step),
followed by a division by their ``V_th`` so that they emit the unit spikes the exported weights
expect (``V_th / V_th`` is exactly 1 in floating point). With ``restore=True`` (the default) each
neuron gets back its initial potential and constant current and each bias its original value,
so a membrane-shift SNN comes back as a membrane-shift SNN, valid at every T; with
``restore=False`` the SNN is the exported network itself (the bias shift at the file's T, valid at
that T only), which is what other simulators are asked to run.

Files without this package's metadata are refused: NIR's own IF (firing at ``v > v_threshold``,
reset to ``v_reset``) is not the neuron simulated here, and guessing would be a silent change.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from lightning_snn.conversion import OUTPUT_KEY
from lightning_snn.export.nir_common import FORMAT_VERSION, NAMESPACE, ExportError, compact, require_nir
from lightning_snn.neurons import IFNeuron
from lightning_snn.snn import ConvertedSNN


def _meta(node: Any) -> dict[str, Any]:
    meta = getattr(node, "metadata", None) or {}
    ours = meta.get(NAMESPACE, {})
    return ours if isinstance(ours, Mapping) else {}


def _tensor(array: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float32).copy())


def _pair(value: Any) -> tuple[int, ...]:
    a = np.atleast_1d(np.asarray(value)).astype(int).tolist()
    return tuple(a) if len(a) > 1 else (a[0], a[0])


def _order(nodes: Mapping[str, Any], edges: list[tuple[str, str]]) -> list[str]:
    """The nodes in an order where every node comes after the nodes feeding it (a cycle is refused)."""
    indegree = {n: 0 for n in nodes}
    for _, dst in edges:
        indegree[dst] += 1
    ready = [n for n in nodes if indegree[n] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for src, dst in edges:
            if src == n:
                indegree[dst] -= 1
                if indegree[dst] == 0:
                    ready.append(dst)
    if len(order) != len(nodes):
        raise ExportError(
            "this NIR graph has a cycle (a recurrent connection): the converted SNNs here are feed-forward."
        )
    return order


class _Importer:
    def __init__(self, graph: Any, restore: bool) -> None:
        self.nir = require_nir()
        self.graph, self.restore = graph, restore
        self.root = nn.Module()
        self.fx = fx.Graph()
        self.values: dict[str, fx.Node] = {}
        self.thresholds: dict[str, Any] = {}
        self.readout: IFNeuron | None = None
        self.buffers = 0
        # the original biases of the nodes that carry a neuron's current (kept on the IF nodes)
        self.source_bias = {
            str(m["bias_shift_in"]): m["source_bias_of_carrier"]
            for m in map(_meta, graph.nodes.values())
            if "bias_shift_in" in m
        }

    def constant(self, value: torch.Tensor) -> fx.Node:
        name = f"_constant{self.buffers}"
        self.buffers += 1
        self.root.register_buffer(name, value)
        return self.fx.get_attr(name)

    def module(self, name: str, module: nn.Module, value: fx.Node) -> fx.Node:
        target = name.replace(".", "_")
        self.root.add_module(target, module)
        return self.fx.call_module(target, (value,))

    def build(self) -> fx.GraphModule:
        nodes, edges = self.graph.nodes, [tuple(e) for e in self.graph.edges]
        output = None
        for name in _order(nodes, edges):
            node = nodes[name]
            sources = [s for s, d in edges if d == name]
            if isinstance(node, self.nir.Input):
                self.values[name] = self.fx.placeholder("x")
                continue
            if not sources:
                raise ExportError(f"NIR node {name!r} ({type(node).__name__}) has no input.")
            value = self.values[sources[0]]
            for s in sources[1:]:  # NIR sums a node's incoming edges
                value = self.fx.call_function(operator.add, (value, self.values[s]))
            if isinstance(node, self.nir.Output):
                output = value
                continue
            self.values[name] = self.node(name, node, value)
        if output is None:
            raise ExportError("this NIR graph has no Output node.")
        self.fx.output(output)
        return fx.GraphModule(self.root, self.fx, class_name="ImportedSNN")

    def node(self, name: str, node: Any, value: fx.Node) -> fx.Node:
        nir, meta = self.nir, _meta(node)
        if isinstance(node, (nir.Conv1d, nir.Conv2d)):
            weight = _tensor(node.weight)
            conv = (nn.Conv2d if weight.dim() == 4 else nn.Conv1d)(
                weight.shape[1] * int(node.groups),
                weight.shape[0],
                tuple(weight.shape[2:]),
                stride=tuple(np.atleast_1d(node.stride).tolist()),
                padding=tuple(np.atleast_1d(node.padding).tolist()),
                dilation=tuple(np.atleast_1d(node.dilation).tolist()),
                groups=int(node.groups),
            )
            return self.module(name, self.weights(name, conv, weight, node), value)
        if isinstance(node, (nir.Affine, nir.Linear)):
            weight = _tensor(node.weight)
            linear = nn.Linear(weight.shape[1], weight.shape[0], bias=isinstance(node, nir.Affine))
            return self.module(name, self.weights(name, linear, weight, node), value)
        if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            kernel = _pair(node.kernel_size)
            divisor = 1 if isinstance(node, nir.SumPool2d) else None
            pool = nn.AvgPool2d(kernel, _pair(node.stride), _pair(node.padding), divisor_override=divisor)
            return self.module(name, pool, value)
        if isinstance(node, nir.Flatten):
            start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
            end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
            return self.module(name, nn.Flatten(start, end), value)
        if isinstance(node, nir.Scale):
            return self.fx.call_function(operator.mul, (value, self.constant(_tensor(node.scale))))
        if isinstance(node, nir.IF):
            return self.neuron(name, node, meta, value)
        if isinstance(node, nir.I) and meta.get("role") == "analog readout":
            if not np.all(np.asarray(node.r) == 1):
                raise ExportError(f"NIR node {name!r}: an analog readout integrates with r = 1.")
            return value  # the analog readout: simulate() sums the output over the steps
        raise ExportError(f"NIR node {name!r} ({type(node).__name__}) is not one this importer knows.")

    def weights(self, name: str, layer: nn.Module, weight: torch.Tensor, node: Any) -> nn.Module:
        with torch.no_grad():
            layer.weight.copy_(weight)
            if layer.bias is not None:
                bias = self.source_bias[name] if self.restore and name in self.source_bias else node.bias
                layer.bias.copy_(_tensor(bias))
        return layer

    def neuron(self, name: str, node: Any, meta: dict[str, Any], value: fx.Node) -> fx.Node:
        role = meta.get("role")
        if role not in ("neuron", "spiking readout") or meta.get("reset") != "subtract" or meta.get("fires_at") != ">=":
            raise ExportError(
                f"NIR IF node {name!r} has no lightning_snn neuron semantics in its metadata: NIR's own IF (fires "
                "at v > v_threshold, resets to v_reset) is not the neuron simulated here."
            )
        if not np.all(np.asarray(node.r) == 1):
            raise ExportError(f"NIR IF node {name!r}: r must be 1 (dt = 1 step), got other values.")
        vth = compact(node.v_threshold, f"the threshold of IF node {name!r}")
        if role == "spiking readout":
            self.readout = IFNeuron(vth, name=OUTPUT_KEY)
            self.thresholds[OUTPUT_KEY] = float(vth)
            return value  # the readout neuron runs after the body (ConvertedSNN.readout_neuron)
        site = str(meta.get("site", name))
        v_init = bias = 0.0
        if self.restore:
            v_init = compact(meta["source_v_init"], f"the initial potential of IF node {name!r}")
            bias = compact(meta["source_bias_current"], f"the constant current of IF node {name!r}")
        neuron = IFNeuron(vth, v_init=v_init, bias_current=bias, name=site)
        self.thresholds[site] = float(vth) if vth.dim() == 0 else vth
        spikes = self.module(site, neuron, value)
        # our IF neuron emits V_th; the exported weights expect unit spikes (V_th / V_th == 1 exactly)
        amplitude = vth if vth.dim() == 0 else vth.view(-1, *([1] * (np.asarray(node.v_threshold).ndim - 1)))
        return self.fx.call_function(operator.truediv, (spikes, self.constant(amplitude.clone())))


def from_nir(graph: Any, restore: bool = True) -> ConvertedSNN:
    """The ConvertedSNN of a ``nir.NIRGraph`` written by :func:`~lightning_snn.export.to_nir`.

    Args:
        graph: the NIR graph.
        restore: give each neuron back its initial potential and constant current and each layer
            its original bias (the SNN as exported from); ``False``: the exported network itself,
            the bias shift at the file's T.

    Raises:
        ExportError: the graph was not written by this package, or holds a node it does not know.
    """
    nir = require_nir()
    meta = _meta(graph)
    if meta.get("producer") != "lightning_snn":
        raise ExportError(
            "this NIR graph was not written by lightning_snn.export (no lightning_snn metadata): its IF nodes "
            "follow NIR's own semantics (fire at v > v_threshold, reset to v_reset), not the neuron simulated here."
        )
    if int(meta.get("format_version", -1)) != FORMAT_VERSION:
        raise ExportError(
            f"this NIR file has lightning_snn metadata version {meta.get('format_version')}; this version "
            f"reads {FORMAT_VERSION}."
        )
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir takes a nir.NIRGraph, got {type(graph).__name__}.")
    importer = _Importer(graph, restore)
    body = importer.build()
    t = int(meta["timesteps"])
    if restore:
        shift = str(meta["shift"])
        timesteps = int(meta["source_timesteps"]) if shift == "bias" else None
    else:
        shift, timesteps = ("bias", t) if str(meta["exported_shift"]) == "bias" else ("none", None)
    return ConvertedSNN(
        body.eval(),
        importer.readout,
        shift=shift,
        timesteps=timesteps,
        thresholds=importer.thresholds,
        neuron=str(meta.get("neuron", "if")),
    ).eval()


def import_nir(path: str | Path, restore: bool = True) -> ConvertedSNN:
    """Read a ``.nir`` file written by :func:`~lightning_snn.export.export_nir` (see :func:`from_nir`)."""
    nir = require_nir()
    return from_nir(nir.read(str(path)), restore=restore)
