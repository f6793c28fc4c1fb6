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

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lightning_snn import fused
from lightning_snn.named_classes import find_class, register_class


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


def quantisation_factor(offset: float) -> float:
    """``E|floor(u + o) - u|`` for ``u`` uniform in ``[0, 1)``: the IF neuron's mean rate error in
    steps of ``V_th / T`` when its charge is offset by ``o >= 0`` steps. ``o = 1/2`` (the paper's
    shift, a rounding): 1/4; ``o = 0`` (a floor): 1/2; ``(o^2 + (1 - o)^2) / 2`` up to ``o = 1``,
    ``o - 1/2`` beyond (every count is then too high)."""
    if offset >= 1:
        return offset - 0.5
    return (offset**2 + (1 - offset) ** 2) / 2


def _no_error_model(self, t: int) -> None:
    """No quantisation model for this neuron: soft reset's (:meth:`IFNeuron.quantisation_error`) is
    not this recurrence's, so the diagnostics leave its layers out of the theory overlay."""
    return None


class IFNeuron(StatefulModule):
    """Integrate-and-fire neuron, soft reset, spike amplitude ``v_threshold`` (the paper's neuron,
    ``neuron: if``), and the base of every neuron model the converter can build (:data:`NEURONS`).

    Per step ``t``: ``v += I(t) + bias_current``; ``s = v >= v_threshold``;
    ``v -= s * v_threshold``; output ``s * v_threshold``.

    A neuron model is a subclass registered under a name (:func:`register_neuron`); it says what
    differs from this one and nothing else: its recurrence over a chunk (:meth:`_steps`), how its
    spike counts are read back for the diagnostics (:meth:`spike_counts`), how many synaptic
    events its counts make (:meth:`events`), its quantisation error per step for the diagnostics'
    theory overlay (:meth:`quantisation_error`) and whether it emits negative spikes
    (:attr:`emits_negative`). Threshold, initial membrane, bias current, time folding, spike
    recording and validation are the base's. A subclass with its own recurrence must also say how
    its counts are read (soft reset's charge conservation is this class's alone), has no
    quantisation error unless it gives its own, and runs the eager update (the fused kernels are
    this class's and :class:`SignedIFNeuron`'s only).

    Args:
        v_threshold: firing threshold: a scalar (one per layer, the calibrated maximum
            activation) or a ``[C]`` vector (one per channel, dimension 1 of the input).
        v_init: membrane potential at ``t = 0`` (``v_threshold / 2`` in membrane-shift mode),
            scalar or ``[C]``.
        bias_current: constant current added every step (``v_threshold / (2T)`` in bias-shift
            mode, minus the source activation's shift, if any), scalar or ``[C]``.
        name: the activation site this neuron replaces, for error messages.
    """

    #: the name ``snn.neuron`` and ``convert(neuron=...)`` use (set by :func:`register_neuron`)
    kind: ClassVar[str] = "if"
    #: negative spikes: then no gated spiking max-pool may follow, and NIR cannot hold the neuron
    emits_negative: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "_steps" in cls.__dict__ and "spike_counts" not in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} has its own recurrence (_steps) but not its own spike_counts: the base reads "
                "counts back from soft reset's charge conservation, which another recurrence need not keep. "
                "Define spike_counts (e.g. return a count the recurrence keeps)."
            )
        if "_steps" in cls.__dict__ and "quantisation_error" not in cls.__dict__:
            cls.quantisation_error = _no_error_model  # soft reset's error model is not another recurrence's

    def __init__(
        self,
        v_threshold: float | torch.Tensor,
        v_init: float | torch.Tensor = 0.0,
        bias_current: float | torch.Tensor = 0.0,
        name: str = "",
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
        self.v: torch.Tensor | None = None
        self.record_spikes = False
        self.spike_count: torch.Tensor | None = None  # total spikes per neuron, when recorded

    def set_bias_current(self, bias_current: float | torch.Tensor) -> None:
        """Replace the constant per-step current (scalar or ``[C]``), e.g. after a correction."""
        self.bias_current = _as_tensor(bias_current, "bias_current").to(self.v_threshold.device)
        self.has_bias = bool(self.bias_current.ne(0).any())

    def reset(self) -> None:
        """Forget the membrane state and spike counts (before each new batch)."""
        self.free_state()
        self.spike_count = None

    def free_state(self) -> None:
        self.v = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        # one pass per chunk where a kernel exists: the two built-in models (a subclass has its own recurrence)
        out = fused.if_forward(self, current) if type(self) in _FUSED else None
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
        self._steps(per_step, out, vth)
        if self.record_spikes:  # every spike, whatever its sign, counted exactly (a whole number)
            counts = out.ne(0).sum(0, dtype=out.dtype)
            self.spike_count = counts if self.spike_count is None else self.spike_count + counts
        return out.view(-1, *current.shape[1:])

    def _steps(self, per_step: torch.Tensor, out: torch.Tensor, vth: torch.Tensor) -> None:
        """The recurrence over one chunk: ``per_step`` ``[steps, B, ...]`` currents (bias included),
        ``self.v`` updated in place, ``out[t]`` filled with step ``t``'s output (amplitudes)."""
        v = self.v
        # in place: ~5x faster on CPU than the out-of-place form, and as fast as torch.compile
        for t in range(per_step.shape[0]):
            v.add_(per_step[t])
            spike = out[t]
            torch.ge(v, vth, out=spike)
            v.sub_(spike.mul_(vth))  # spike now holds its amplitude V_th

    def spike_counts(self, mean_current: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each neuron's spike count after ``t`` steps, from its membrane potential now (step ``t``),
        and how many of the counts could not be recovered.

        Soft reset conserves charge: ``v_t = v_0 + sum_s (I_s + bias) - V_th N_t``, so
        ``N_t = (v_0 + t (mean(I) + bias) - v_t) / V_th``, rounded (it is a whole number; the
        rounding removes the float error of the sums). A neuron fires at most once per step, so the
        true count lies in ``[0, t]`` and this recovery lands within ``[-1/2, t + 1/2]`` whenever its
        float error is below ``V_th / 2``: a value outside proves the error larger (currents far above
        ``V_th``, as in a network whose training diverged, leave float32 no digits for the count). Such
        counts are clamped to ``[0, t]`` (every rate stays physical) and counted as lost, which
        :meth:`~lightning_snn.diagnostics.Diagnostics.to_json` refuses loudly.

        Args:
            mean_current: ``[B, ...]``, the input current averaged over the ``t`` steps.

        Returns:
            ``(counts [B, ...], lost)``: net counts (positive minus negative spikes); ``lost`` a 0-d
            tensor, the number of counts out of range.
        """
        dims = mean_current.dim() - 1
        dtype = mean_current.dtype
        vth = _per_channel(self.v_threshold.to(dtype), dims)
        charge = _per_channel(self.v_init.to(dtype), dims) - self.v
        charge = charge.add_(mean_current, alpha=t)
        if self.has_bias:
            charge = charge.add_(_per_channel(self.bias_current.to(dtype), dims), alpha=t)
        counts = charge.div_(vth)
        lost = torch.count_nonzero((counts < -0.5) | (counts > t + 0.5))
        return counts.round_().clamp_(0, t), lost

    def events(self, counts: torch.Tensor) -> torch.Tensor:
        """Synaptic events (spikes of either sign) behind the net ``counts`` of :meth:`spike_counts`."""
        return counts

    def quantisation_error(self, t: int) -> float | None:
        """The theory overlay's error at ``T = t`` in steps of ``V_th / t`` (the paper's eq. (14)-(15)):
        the mean ``|rate x V_th - a|`` of a neuron whose activation ``a`` is inside ``(0, V_th)``, ``a``
        taken uniform within each step. Soft reset makes the count a floor of the charge, offset by
        ``o = v_0 / V_th + t b / V_th`` steps by the initial membrane and the bias current (channels
        averaged): :func:`quantisation_factor`, 1/4 at the paper's shift, 1/2 without. Negative
        currents (an ANN trained with a shifted ReLU subtracts its shift) are the ANN's own, not a
        shift of the floor: left out, as the model compares with that ANN.

        A neuron model with its own recurrence gives its own, or ``None`` (the default for one that
        does not define it): the diagnostics then leave its layers out of the overlay and say so.
        """
        vth = self.v_threshold.to(torch.float64)
        offset = float((self.v_init.to(torch.float64) / vth).clamp(min=0).mean())
        offset += t * float((self.bias_current.to(torch.float64) / vth).clamp(min=0).mean())
        return quantisation_factor(offset)

    def extra_repr(self) -> str:
        def show(t: torch.Tensor) -> str:
            return f"{t.item():.4g}" if t.dim() == 0 else f"[{t.numel()} channels]"

        return (
            f"v_threshold={show(self.v_threshold)}, v_init={show(self.v_init)}, bias_current={show(self.bias_current)}"
        )


class SignedIFNeuron(IFNeuron):
    """An IF neuron that also fires *negative* spikes (Wang et al. 2022, "signed neuron with
    memory"; ``neuron: signed``).

    When ``v < 0`` and the neuron's net spike count so far is positive, it emits ``-v_threshold``
    and ``v += v_threshold``. Its net count after ``t`` steps is then a function of the total
    charge alone, not of when it arrived: if every step's input satisfies
    ``|I + bias_current| <= v_threshold``,
    ``N_t = clamp(floor((v_init + sum_s (I_s + bias)) / v_threshold), 0, t)`` exactly (the plain IF
    neuron only reaches that for inputs that are constant in time). This removes the error of early
    spikes that later input would have cancelled (the "unevenness error" of Bu et al. 2022), which
    dominates at T <= 8. Downstream layers receive signed spikes (an event either way), so a gated
    spiking max-pool cannot follow. Arguments as :class:`IFNeuron`.
    """

    emits_negative: ClassVar[bool] = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.net_count: torch.Tensor | None = None  # positive minus negative spikes so far
        self.negative_count: torch.Tensor | None = None  # negative spikes so far (events)

    def free_state(self) -> None:
        super().free_state()
        self.net_count = self.negative_count = None

    def _steps(self, per_step: torch.Tensor, out: torch.Tensor, vth: torch.Tensor) -> None:
        """The signed recurrence over one chunk (``self.v`` in place, ``out`` filled).

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

    def spike_counts(self, mean_current: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The net count the neuron keeps itself (never negative: it takes a spike back only after it
        has fired), as is; nothing is lost."""
        return self.net_count.to(mean_current.dtype).clone(), mean_current.new_zeros(())

    def events(self, counts: torch.Tensor) -> torch.Tensor:
        """Every spike is an event, whatever its sign: the net count plus twice the negative spikes."""
        return counts + 2 * self.negative_count.to(counts.dtype)

    def quantisation_error(self, t: int) -> float:
        """The IF neuron's (:meth:`IFNeuron.quantisation_error`): the net count is the same floor of
        the total charge, offset by the same initial membrane and bias current."""
        return super().quantisation_error(t)


#: The neuron models by name (``snn.neuron``, ``convert(neuron=...)``): ``"if"`` and ``"signed"``
#: here; :func:`register_neuron` adds more, from any module.
NEURONS: dict[str, type[IFNeuron]] = {}


def register_neuron(kind: str) -> Callable[[type[IFNeuron]], type[IFNeuron]]:
    """Class decorator: make a subclass of :class:`IFNeuron` available under ``kind``.

    Example (a neuron that resets to zero instead of subtracting the threshold)::

        @register_neuron("reset_to_zero")
        class ResetToZero(IFNeuron):
            def _steps(self, per_step, out, vth): ...
            def spike_counts(self, mean_current, t): ...
            # optional: def quantisation_error(self, t): ... (None without: no theory overlay)
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"a neuron kind is a non-empty string, got {kind!r}.")

    return register_class(NEURONS, kind, IFNeuron, "neuron kind", "register_neuron")


def neuron_class(kind: str) -> type[IFNeuron]:
    """The neuron model registered under ``kind``, or, for a dotted name not registered, the
    :class:`IFNeuron` subclass at that import path (``my_package.neurons.ResetToZero``: a config
    names it as it names a model class). Anything else is refused with the known names."""
    return find_class(NEURONS, kind, IFNeuron, "neuron", "lightning_snn.neurons.register_neuron")


register_neuron("if")(IFNeuron)
register_neuron("signed")(SignedIFNeuron)
#: the models the fused kernels implement (exactly these classes, not their subclasses)
_FUSED = (IFNeuron, SignedIFNeuron)


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
