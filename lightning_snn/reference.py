"""A textbook per-step simulator of a converted SNN, independent of the fast engine.

The fast engine (:func:`lightning_snn.simulation.simulate`) folds time into the batch and
runs the neurons' recurrence in place; this one walks the SNN's fx graph once per time step,
node by node, and keeps its own neuron state with plain out-of-place tensor ops. It shares
only the stateless layers and the neurons' parameters with the engine, so the two agreeing
is evidence that the folding, chunking and in-place tricks change nothing. Slow by design:
for tests and benchmarks only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from lightning_snn.neurons import IFNeuron, SignedIFNeuron, SpikingMaxPool2d
from lightning_snn.snn import ConvertedSNN


class _StepInterpreter(fx.Interpreter):
    """One time step through the graph; IF neurons and max-pools read and write ``state``."""

    def __init__(self, gm: fx.GraphModule, state: dict[str, torch.Tensor]) -> None:
        super().__init__(gm)
        self.state = state

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        x = args[0]
        if isinstance(module, IFNeuron):
            return if_step(module, x, self.state, target)
        if isinstance(module, SpikingMaxPool2d):
            count = self.state.get(target, torch.zeros_like(x)) + x
            self.state[target] = count
            _, idx = F.max_pool2d(
                count,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                module.ceil_mode,
                return_indices=True,
            )
            return x.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
        return super().call_module(target, args, kwargs)


def _channel(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    value = value.to(like.dtype)
    return value if value.dim() == 0 else value.view(-1, *([1] * (like.dim() - 2)))


def if_step(neuron: IFNeuron, current: torch.Tensor, state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """One step of an IF neuron with soft reset: integrate, fire at ``v >= V_th``, subtract ``V_th``.
    A signed neuron also fires ``-V_th`` at ``v < 0`` if it has more positive than negative
    spikes so far, and adds ``V_th``."""
    if type(neuron) not in (IFNeuron, SignedIFNeuron):  # its own textbook, not the engine's code
        raise TypeError(
            f"the reference simulator steps the IF and signed IF neurons only, not {type(neuron).__name__} "
            f"({neuron.kind!r}): test another neuron model against its own theory."
        )
    vth = _channel(neuron.v_threshold, current)
    v = state.get(key)
    if v is None:
        v = torch.zeros_like(current) + _channel(neuron.v_init, current)
    v = v + current + _channel(neuron.bias_current, current)
    spikes = (v >= vth).to(current.dtype)
    if isinstance(neuron, SignedIFNeuron):
        fired = state.get(key + "/net", torch.zeros_like(current))
        spikes = torch.where((v < 0) & (fired > 0), -torch.ones_like(spikes), spikes)
        state[key + "/net"] = fired + spikes
    state[key] = v - spikes * vth
    return spikes * vth


@torch.no_grad()
def simulate_reference(snn: nn.Module, x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """The SNN's output averaged over ``timesteps`` steps, one whole pass through the graph per step."""
    readout: IFNeuron | None = None
    if isinstance(snn, ConvertedSNN):
        snn, readout = snn.body, snn.readout_neuron
    if not isinstance(snn, fx.GraphModule):
        raise TypeError("simulate_reference runs an SNN from lightning_snn.conversion.convert (a GraphModule).")
    state: dict[str, torch.Tensor] = {}
    interpreter = _StepInterpreter(snn, state)
    total = None
    for _t in range(timesteps):
        out = interpreter.run(x)
        if readout is not None:
            out = if_step(readout, out, state, "<readout>")
        total = out if total is None else total + out
    return total / timesteps
