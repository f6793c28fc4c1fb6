"""What the NIR exporter and importer share: the metadata's names, the neuron's semantics, refusals."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import torch

#: Key of this package's entry in every node's (and the graph's) NIR ``metadata``.
NAMESPACE = "lightning_snn"
#: Version of the metadata layout below; the importer refuses other versions by name.
FORMAT_VERSION = 1
#: How average pooling is written: NIR's ``AvgPool2d``; ``SumPool2d`` with the ``1/k^2`` folded
#: into the next weights; or a depthwise ``Conv2d`` (every importer reads a conv).
POOLINGS = ("avg", "sum", "conv")

#: The exact discrete-time semantics of every exported IF node (NIR's own IF fires at
#: ``v > v_threshold`` and resets to ``v_reset``; ours does neither).
IF_SEMANTICS = (
    "discrete time, dt = 1 step: v[t] = v[t-1] + r * I[t] (I = the sum of the incoming edges, whose biases "
    "are added every step); spike s[t] = 1 when v[t] >= v_threshold (>=, not NIR's >); at most one spike per "
    "step; reset by subtraction, v[t] -= v_threshold * s[t] (never to v_reset); v[0] = 0; the node emits unit "
    "spikes and the weights downstream carry the spike amplitude v_threshold"
)
GRAPH_SEMANTICS = (
    "rate-coded SNN converted from an ANN (Deng & Gu, ICLR 2021): the analog input is presented unchanged at "
    "every one of `timesteps` steps; IF nodes follow their metadata's `semantics`; the prediction is the "
    "argmax of the output summed over the steps"
)


class ExportError(TypeError):
    """The SNN holds something the export format cannot say faithfully (named in the message)."""


def require_nir() -> ModuleType:
    """The ``nir`` package, or an ImportError that names the extra to install."""
    try:
        import nir
    except ImportError as exc:
        raise ImportError(
            "NIR export and import need the optional 'nir' package: pip install -e \".[nir]\" from a checkout "
            "(or pip install nir)."
        ) from exc
    return nir


def full(value: torch.Tensor | float, shape: tuple[int, ...]) -> np.ndarray:
    """A scalar or per-channel ``[C]`` value as a float32 array of the feature ``shape`` (no batch)."""
    t = torch.as_tensor(value, dtype=torch.float32).detach().cpu()
    if t.dim() == 1 and len(shape) > 1:
        t = t.view(-1, *([1] * (len(shape) - 1)))
    return t.expand(shape).numpy().astype(np.float32).copy()


def compact(array: np.ndarray, what: str) -> torch.Tensor:
    """A full feature-shaped array back to what an IF neuron takes: a scalar if every element is
    equal, a per-channel ``[C]`` vector if it is constant over the other dimensions."""
    a = torch.as_tensor(np.asarray(array, dtype=np.float32))
    if a.dim() == 0 or bool((a == a.reshape(-1)[0]).all()):
        return a.reshape(-1)[0].clone()
    per_channel = a.reshape(a.shape[0], -1)
    if bool((per_channel == per_channel[:, :1]).all()):
        return per_channel[:, 0].clone()
    raise ExportError(f"{what} varies within a channel: the IF neurons here take one value per layer or per channel.")
