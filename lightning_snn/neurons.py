"""Stateful SNN layers, simulated over a chunk of time steps: IF neurons and the spiking max-pool.

Tensors inside the simulation are time-folded: a chunk of ``steps`` time steps of a batch
of ``B`` samples is one tensor of ``steps * B`` rows (time-major), so every stateless layer
(conv, linear, pooling, add, flatten) runs once per chunk, unchanged. Only the stateful
layers need the time axis: they unfold ``[steps * B, ...]`` to ``[steps, B, ...]`` and run
their recurrence.

A stateful layer may also receive a ``[B, ...]`` input while the chunk has ``steps > 1``:
this is the first layer's current, which is the same at every step (the analog image is a
constant input), so it was computed once and is broadcast over the chunk here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn import fused


class StatefulModule(nn.Module):
    """A layer with state across time steps; :func:`lightning_snn.simulation.simulate` drives it.

    The simulator sets ``steps`` (time steps in the current chunk) and ``batch_size`` before
    each chunk and calls :meth:`reset` before each batch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.steps = 1
        self.batch_size: int | None = None

    def reset(self) -> None:
        """Forget all state (before each new batch)."""
        raise NotImplementedError

    def free_state(self) -> None:
        """Release the per-sample state after a simulation; recorded statistics stay."""
        self.reset()

    def unfold_time(self, x: torch.Tensor) -> torch.Tensor:
        """``[steps * B, ...]`` (or a constant ``[B, ...]``) -> ``[steps, B, ...]``."""
        steps = self.steps
        batch = self.batch_size if self.batch_size is not None else x.shape[0] // steps
        if x.shape[0] == batch:
            return x.unsqueeze(0).expand(steps, *x.shape)  # constant over the chunk
        if x.shape[0] == steps * batch:
            return x.view(steps, batch, *x.shape[1:])
        raise RuntimeError(
            f"{type(self).__name__} got {x.shape[0]} rows for a chunk of {steps} steps x {batch} samples; "
            "run the SNN through lightning_snn.simulation.simulate, which sets steps and batch size."
        )


def _per_channel(value: torch.Tensor, feature_dims: int) -> torch.Tensor:
    """A scalar or per-channel ``[C]`` tensor shaped to broadcast over ``[C, *spatial]`` features."""
    if value.dim() == 0 or feature_dims <= 1:
        return value
    return value.view(-1, *([1] * (feature_dims - 1)))


def _as_tensor(value: float | torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).detach().clone()
    if t.dim() > 1:
        raise ValueError(f"{name} must be a scalar or a per-channel vector [C], got shape {tuple(t.shape)}.")
    return t


class IFNeuron(StatefulModule):
    """Integrate-and-fire neuron, soft reset, spike amplitude ``v_threshold``.

    Per step ``t``: ``v += I(t) + bias_current``; ``s = v >= v_threshold``;
    ``v -= s * v_threshold``; output ``s * v_threshold``.

    Args:
        v_threshold: firing threshold: a scalar (one per layer, the calibrated maximum
            activation) or a ``[C]`` vector (one per channel, dimension 1 of the input).
        v_init: membrane potential at ``t = 0`` (``v_threshold / 2`` in membrane-shift mode),
            scalar or ``[C]``.
        bias_current: constant current added every step (``v_threshold / (2T)`` in bias-shift
            mode, minus the source activation's shift, if any), scalar or ``[C]``.
        name: the activation site this neuron replaces, for error messages.
        signed: also fire *negative* spikes (Wang et al. 2022, "signed neuron with memory"):
            when ``v < 0`` and the neuron's net spike count so far is positive, it emits
            ``-v_threshold`` and ``v += v_threshold``. Its net count after ``t`` steps is then a
            function of the total charge alone, not of when it arrived: if every step's input
            satisfies ``|I + bias_current| <= v_threshold``,
            ``N_t = clamp(floor((v_init + sum_s (I_s + bias)) / v_threshold), 0, t)`` exactly
            (the plain IF neuron only reaches that for inputs that are constant in time). This
            removes the error of early spikes that later input would have cancelled (the
            "unevenness error" of Bu et al. 2022), which dominates at T <= 8. Downstream layers
            receive signed spikes (an event either way), so a gated spiking max-pool cannot follow.
    """

    def __init__(
        self,
        v_threshold: float | torch.Tensor,
        v_init: float | torch.Tensor = 0.0,
        bias_current: float | torch.Tensor = 0.0,
        name: str = "",
        signed: bool = False,
    ) -> None:
        super().__init__()
        layer = f"layer {name!r}" if name else "this layer"
        vth = _as_tensor(v_threshold, "v_threshold")
        if not torch.isfinite(vth).all():
            raise ValueError(
                f"the threshold of {layer} is {vth.tolist()}: the ANN's activations there are not finite. Check "
                "the model's weights for NaN/inf (a diverged training?) and the calibration images."
            )
        if not (vth > 0).all():
            raise ValueError(
                f"{layer} never activated on the calibration images (threshold {vth.tolist()}): a dead layer "
                "cannot fire. Calibrate on more (or real) images, or check that the layer is trained."
            )
        self.name = name
        self.register_buffer("v_threshold", vth)
        self.register_buffer("v_init", _as_tensor(v_init, "v_init"))
        self.register_buffer("bias_current", _as_tensor(bias_current, "bias_current"))
        self.has_bias = bool(self.bias_current.ne(0).any())  # skip a whole-tensor add per chunk when 0
        self.signed = bool(signed)
        self.v: torch.Tensor | None = None
        self.net_count: torch.Tensor | None = None  # signed: positive minus negative spikes so far
        self.negative_count: torch.Tensor | None = None  # signed: negative spikes so far (events)
        self.record_spikes = False
        self.spike_count: torch.Tensor | None = None  # total spikes per neuron, when recorded

    def set_bias_current(self, bias_current: float | torch.Tensor) -> None:
        """Replace the constant per-step current (scalar or ``[C]``), e.g. after a correction."""
        self.bias_current = _as_tensor(bias_current, "bias_current").to(self.v_threshold.device)
        self.has_bias = bool(self.bias_current.ne(0).any())

    def reset(self) -> None:
        """Forget the membrane state and spike counts (before each new batch)."""
        self.v = self.net_count = self.negative_count = None
        self.spike_count = None

    def free_state(self) -> None:
        self.v = self.net_count = self.negative_count = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        out = fused.if_forward(self, current)  # one pass per chunk where a kernel is available
        if out is not None:
            return out
        feature_dims = current.dim() - 1
        if self.has_bias:
            current = current + _per_channel(self.bias_current.to(current.dtype), feature_dims)
        per_step = self.unfold_time(current)
        if self.v is None:
            v0 = _per_channel(self.v_init.to(current.dtype), feature_dims)
            self.v = v0.expand(per_step.shape[1:]).clone()
        vth = _per_channel(self.v_threshold.to(current.dtype), feature_dims)
        out = torch.empty_like(per_step)
        v = self.v
        if self.signed:
            self._signed_steps(per_step, out, vth)
        else:
            # in place: ~5x faster on CPU than the out-of-place form, and as fast as torch.compile
            for t in range(per_step.shape[0]):
                v.add_(per_step[t])
                spike = out[t]
                torch.ge(v, vth, out=spike)
                v.sub_(spike.mul_(vth))  # spike now holds its amplitude V_th
        self.v = v
        if self.record_spikes:  # every spike, whatever its sign, counted exactly (a whole number)
            counts = out.ne(0).sum(0, dtype=out.dtype)
            self.spike_count = counts if self.spike_count is None else self.spike_count + counts
        return out.view(-1, *current.shape[1:])

    def _signed_steps(self, per_step: torch.Tensor, out: torch.Tensor, vth: torch.Tensor) -> None:
        """The signed neuron's recurrence over one chunk (``self.v`` in place, ``out`` filled).

        Per step, in place and without allocating: ``+1`` where ``v >= V_th``; ``-1`` where
        ``v < 0`` and the net count is positive (0/1 float masks multiplied); the negative
        spikes are counted once per chunk from ``out``, not per step."""
        v = self.v
        if self.net_count is None:
            self.net_count = torch.zeros_like(v)
            self.negative_count = torch.zeros_like(v)
        net = self.net_count
        negative, has_fired = torch.empty_like(v), torch.empty_like(v)
        for t in range(per_step.shape[0]):
            v.add_(per_step[t])
            spike = out[t]
            torch.ge(v, vth, out=spike)
            torch.lt(v, 0, out=negative)
            torch.gt(net, 0, out=has_fired)  # only a neuron that has fired may take a spike back
            spike.sub_(negative.mul_(has_fired))  # +1, 0 or -1
            net.add_(spike)
            v.sub_(spike.mul_(vth))  # spike now holds its amplitude +-V_th
        self.negative_count.add_((out < 0).sum(0, dtype=out.dtype))

    def extra_repr(self) -> str:
        def show(t: torch.Tensor) -> str:
            return f"{t.item():.4g}" if t.dim() == 0 else f"[{t.numel()} channels]"

        signed = ", signed" if self.signed else ""
        return (
            f"v_threshold={show(self.v_threshold)}, v_init={show(self.v_init)}, "
            f"bias_current={show(self.bias_current)}{signed}"
        )


class SpikingMaxPool2d(StatefulModule):
    """Max pooling of spike trains by gating (Rueckauer et al. 2017, SNN Toolbox).

    At every step each pooling window passes on the spikes of the one input whose
    accumulated spike count, this step included, is the largest so far (ties: the first in
    the window, as ``max_pool2d``). Its output rate converges to the largest input rate as
    T grows; at short T it can be lower (a window's winner may change). It must receive
    spikes of one IF layer, so every input in a window has the same amplitude per channel.

    Args are those of :class:`torch.nn.MaxPool2d` (``return_indices`` is not supported).
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.dilation, self.ceil_mode = padding, dilation, ceil_mode
        self.count: torch.Tensor | None = None  # accumulated input (spike count x amplitude)

    @classmethod
    def from_max_pool(cls, pool: nn.MaxPool2d) -> SpikingMaxPool2d:
        if pool.return_indices:
            raise TypeError("MaxPool2d(return_indices=True) cannot be converted: its indices depend on the values.")
        return cls(pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)

    def reset(self) -> None:
        self.count = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_step = self.unfold_time(x)
        cumulative = per_step.cumsum(0)
        if self.count is not None:
            cumulative = cumulative + self.count
        self.count = cumulative[-1]
        folded = cumulative.flatten(0, 1)
        _, idx = F.max_pool2d(
            folded, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, return_indices=True
        )
        spikes = per_step.flatten(0, 1).flatten(2)
        return spikes.gather(2, idx.flatten(2)).view(idx.shape)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, gated by spike count"
