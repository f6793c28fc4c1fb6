"""The converted SNN as a type: its body, its readout, its shift and its thresholds.

:func:`lightning_snn.conversion.convert` returns a :class:`ConvertedSNN`. It is an
``nn.Module`` that :func:`~lightning_snn.simulation.simulate` runs like any SNN, and it says
what it is, so that the code reading it (simulation, diagnostics, correction, the reference
simulator, the exporters in :mod:`lightning_snn.export`) asks it instead of guessing:

* ``body``: the torch.fx ``GraphModule`` whose activation sites are IF neurons (named after
  the ANN's sites), run on time-folded ``[steps * B, ...]`` tensors;
* ``readout_neuron``: the paper's spiking output layer (an IF neuron after the body), or
  ``None`` for the analog readout (the body's output is summed over time);
* ``shift`` and ``timesteps``: the shift mode, and the one T the SNN is built for (the bias
  shift adds ``V_th / (2T)`` per step, so a bias-shift SNN is valid at that T only; the
  membrane shift and no shift are valid at every T, ``timesteps`` is ``None``);
* ``thresholds``: ``{site: V_th}`` as calibrated (plus the output's under
  :data:`~lightning_snn.conversion.OUTPUT_KEY` for the spiking readout);
* ``neuron``: the neuron model, ``"if"`` or ``"signed"``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import nn

from lightning_snn.neurons import IFNeuron


class ConvertedSNN(nn.Module):
    """An SNN converted from an ANN (see the module docs). Its forward is one chunk of time
    steps: ``readout_neuron(body(x))``, or ``body(x)`` for the analog readout.

    Args:
        body: the SNN's graph, with IF neurons at the activation sites.
        readout_neuron: the spiking readout's IF neuron, or ``None`` (analog readout).
        shift: ``"membrane"``, ``"bias"``, ``"constant"`` or ``"none"`` (its size, e.g. a
            ``shift_scale``, is in the neurons' ``v_init`` and ``bias_current``).
        timesteps: the T a bias-shift SNN is built for; ``None`` for the other modes.
        thresholds: ``{site: V_th}`` the neurons were built with.
        neuron: the neuron model (``"if"`` or ``"signed"``).
    """

    def __init__(
        self,
        body: fx.GraphModule,
        readout_neuron: IFNeuron | None = None,
        *,
        shift: str,
        timesteps: int | None = None,
        thresholds: dict[str, Any] | None = None,
        neuron: str = "if",
    ) -> None:
        super().__init__()
        if (shift == "bias") != (timesteps is not None):
            raise ValueError(
                f"a bias-shift SNN is built for one T and the other modes for every T: shift={shift!r} "
                f"with timesteps={timesteps!r} does not describe an SNN."
            )
        self.body = body
        self.readout_neuron = readout_neuron
        self.shift = shift
        self.timesteps = None if timesteps is None else int(timesteps)
        self.thresholds = dict(thresholds or {})
        self.neuron = neuron

    @property
    def readout(self) -> str:
        """``"spiking"`` (an IF output layer) or ``"analog"`` (the output summed over time)."""
        return "analog" if self.readout_neuron is None else "spiking"

    def valid_at(self, timesteps: int) -> bool:
        """Whether a simulation of ``timesteps`` steps is this SNN's conversion at that T (a
        bias-shift SNN is built for one T; the other modes hold at every T)."""
        return self.timesteps is None or int(timesteps) == self.timesteps

    def sites(self) -> dict[str, IFNeuron]:
        """The body's IF neurons by site name, in module order (the readout neuron left out)."""
        return {name: m for name, m in self.body.named_modules() if isinstance(m, IFNeuron)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out if self.readout_neuron is None else self.readout_neuron(out)

    def extra_repr(self) -> str:
        at = "" if self.timesteps is None else f" at T={self.timesteps}"
        return f"shift={self.shift}{at}, readout={self.readout}, neuron={self.neuron}"


__all__ = ["ConvertedSNN"]
