"""ANN -> SNN conversion (Deng & Gu 2021, Algorithm 1), in plain PyTorch.

* :func:`~lightning_snn.calibration.calibrate_thresholds` (in :mod:`lightning_snn.calibration`,
  re-exported here) -- per-site ``V_th`` = max activation over a calibration set (the paper), or a
  percentile, one per channel, or QCFS's ``lambda``; identical on every rank under
  ``torch.distributed``, equal to one process's.
* :func:`convert` -- the SNN: the model's prepared graph (:func:`lightning_snn.graph.prepare`)
  with every activation site replaced by an :class:`~lightning_snn.neurons.IFNeuron` (soft
  reset, spike amplitude ``V_th``) and every max pooling by a
  :class:`~lightning_snn.neurons.SpikingMaxPool2d`.

How the converter understands a network: through its torch.fx graph. Every call site of a
ReLU-like activation (a reused module, ``F.relu``, ``clamp(min=0)`` included) is its own
site with its own threshold and neuron, batch norm is folded into the conv before it, and
every other operation must be on an allow-list of linear, time-invariant operations that
run unchanged on time-folded ``[steps * B, ...]`` tensors (see :mod:`lightning_snn.neurons`).
Anything else is refused by name (:class:`~lightning_snn.graph.ConversionError`) before any
work, never converted wrongly. A residual block's activation after the add becomes one IF
neuron that integrates branch + shortcut, with the same shift as every other neuron.
"""

from __future__ import annotations

import torch
from torch import fx, nn

from lightning_snn.activations import ThresholdReLU
from lightning_snn.calibration import CALIBRATION_METHODS, OUTPUT_KEY, calibrate_thresholds, check_calibration
from lightning_snn.graph import (
    ConversionError,
    activation_sites,
    max_pool_sites,
    prepare,
    record_sites,
    set_submodule,
)
from lightning_snn.neurons import IFNeuron, SpikingMaxPool2d, StatefulModule, neuron_class
from lightning_snn.shift import PAPER_CONSTANT_SHIFT, SHIFT_MODES, check_shift, shift_terms
from lightning_snn.snn import ConvertedSNN

READOUTS = ("analog", "spiking")


def activation_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The activation sites of ``model`` (one per call site), by name, in execution order.

    The modules are those of the prepared copy (:func:`lightning_snn.graph.prepare`), not of
    ``model``: a module called twice gives two sites.
    """
    return activation_sites(prepare(model))


def check_convertible(model: nn.Module) -> None:
    """Raise a :class:`~lightning_snn.graph.ConversionError` (a TypeError) if ``model`` cannot be
    converted exactly: untraceable, an operation off the allow-list (named), or no activation."""
    prepare(model)


@torch.no_grad()
def site_activations(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The ANN's activation at every site on the batch ``x``, and its output.

    Returns ``({site name: activation}, output)``, from the prepared copy (eval mode, batch norm
    folded), under the names the thresholds and the SNN's neurons use.
    """
    gm = prepare(model).to(x.device)
    acts: dict[str, torch.Tensor] = {}
    with record_sites(activation_sites(gm), lambda name, out: acts.__setitem__(name, out.clone())):
        out = gm(x)
    return acts, out


def check_neuron(neuron: str, model: nn.Module | None = None) -> None:
    """Refuse an unknown neuron model by name (:data:`~lightning_snn.neurons.NEURONS`), and (given
    the model) one that emits negative spikes into a gated spiking max-pool, before any training or
    calibration."""
    cls = neuron_class(neuron)
    if model is not None and cls.emits_negative:
        refuse_negative_spikes_into_pools(neuron, max_pool_sites(prepare(model)))


def refuse_negative_spikes_into_pools(neuron: str, spike_pools: dict) -> None:
    """Refuse the neuron model ``neuron`` (one that emits negative spikes) if a gated spiking max-pool
    (:func:`~lightning_snn.graph.max_pool_sites`) would take its spikes."""
    if spike_pools:
        raise ConversionError(
            f"max-pool(s) {sorted(spike_pools)} gate spike trains by their counts, which needs positive spikes: "
            f"{neuron!r} neurons fire negative ones and cannot feed them. Convert with neuron='if', or replace the "
            "max-pool by an average pool (or move it before the activation, where it is exact)."
        )


def convert(
    model: nn.Module,
    thresholds: dict[str, float],
    shift: str = "membrane",
    timesteps: int | None = None,
    readout: str = "analog",
    neuron: str = "if",
    shift_scale: float = 1.0,
    shift_fraction: float | None = None,
) -> ConvertedSNN:
    """Build the SNN from the model's prepared graph; ``model`` itself is never modified.

    Args:
        model: the source ANN (anything :func:`lightning_snn.graph.prepare` accepts).
        thresholds: from :func:`calibrate_thresholds` on this model: ``{site: V_th}``, a float
            or a per-channel ``[C]`` tensor / list per site.
        shift: ``"membrane"`` (initial membrane ``V_th/2``: independent of T, so one
            simulation to ``T_max`` is valid at every ``T``), ``"bias"`` (Algorithm 1:
            ``+V_th/(2T)`` to the bias, i.e. a constant input current; valid at ``timesteps``
            only), ``"constant"`` (``+shift_fraction * V_th`` at every step, whatever T: the
            paper's Tables 2-3 shift ``V_th/1600``; one simulation gives every T) or ``"none"``.
        timesteps: the simulation length T, required for ``shift="bias"``.
        readout: ``"analog"`` (the last layer accumulates its input currents; predictions =
            argmax of the summed output) or ``"spiking"`` (the paper's IF output layer with
            threshold = max logit, no shift, as in the paper's appendix A.2).
        neuron: a registered neuron model (:data:`~lightning_snn.neurons.NEURONS`): ``"if"``
            (the paper's integrate-and-fire neuron, soft reset), ``"signed"``
            (:class:`~lightning_snn.neurons.SignedIFNeuron`, which also fires negative spikes to
            take back early ones: fewer errors at short T), or one added with
            :func:`~lightning_snn.neurons.register_neuron`. A gated spiking max-pool needs positive
            spikes, so a model with one is refused for a neuron that emits negative spikes.
        shift_scale: multiplies the membrane or bias shift (0 = no shift, 1 = the paper's; the
            paper's Fig. 3B-D sweep it); must stay 1 for the other modes.
        shift_fraction: the constant shift per step in units of ``V_th`` (default 1/1600, the
            paper's A.2); only with ``shift="constant"``. The spiking readout's output neuron
            gets no shift in any mode (A.2: "except for the output layer").

    Returns:
        The SNN (a :class:`~lightning_snn.snn.ConvertedSNN`: the body graph, the readout, the
        shift and the thresholds), in eval mode, on the model's device. Run it with
        :func:`lightning_snn.simulation.simulate`.

    Raises:
        ConversionError: the model holds something the converter cannot convert exactly.
        ValueError: bad settings, or thresholds that do not fit this model.
    """
    check_shift(shift, shift_scale, shift_fraction)
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; choose one of {list(READOUTS)}.")
    if shift == "bias" and (timesteps is None or int(timesteps) <= 0):
        raise ValueError("shift='bias' adds V_th/(2T) to the bias: pass the simulation length timesteps=T > 0.")
    make = neuron_class(neuron)
    snn = convert_graph(
        prepare(model), thresholds, shift=shift, timesteps=timesteps, readout=readout, neuron=neuron,
        neuron_type=make, shift_scale=shift_scale, shift_fraction=shift_fraction,
    )  # fmt: skip
    param = next(model.parameters(), None)
    return snn.to(param.device if param is not None else "cpu")


def convert_graph(
    gm: fx.GraphModule,
    thresholds: dict[str, float],
    *,
    shift: str,
    timesteps: int | None,
    readout: str,
    neuron: str,
    neuron_type: type[IFNeuron],
    shift_scale: float = 1.0,
    shift_fraction: float | None = None,
) -> ConvertedSNN:
    """:func:`convert`'s work on a prepared graph (:func:`lightning_snn.graph.prepare`), which it turns
    into the SNN's body in place (pass a copy to keep it), with settings checked already (by
    :func:`convert`, or a :class:`~lightning_snn.conversion_config.ConversionConfig`): nothing is
    checked again but what depends on the graph (the thresholds, the neuron and the max-pools).
    ``neuron_type`` is ``neuron``'s class (:func:`~lightning_snn.neurons.neuron_class`). Returns the
    SNN in eval mode, on the graph's device."""
    snn = gm
    sites = activation_sites(snn)
    spike_pools = max_pool_sites(snn)  # before the sites become IF neurons: it looks for the sites
    missing = [n for n in sites if n not in thresholds]
    if missing:
        raise ValueError(
            f"no threshold for activation site(s) {missing}: the thresholds come from another "
            "architecture; calibrate this model with calibrate_thresholds()."
        )
    for name, act in sites.items():
        vth = torch.as_tensor(thresholds[name], dtype=torch.float64)  # IFNeuron names a dead or NaN site
        v_init, bias = shift_terms(vth, shift, timesteps, shift_scale, shift_fraction)
        if isinstance(act, ThresholdReLU):
            bias = bias - act.shift  # the source ANN computed clamp(x - shift, 0, y_th)
        set_submodule(snn, name, neuron_type(vth, v_init=v_init, bias_current=bias, name=name))
    if neuron_type.emits_negative:
        refuse_negative_spikes_into_pools(neuron, spike_pools)
    for name, pool in spike_pools.items():
        set_submodule(snn, name, SpikingMaxPool2d.from_max_pool(pool))
    readout_neuron = None
    if readout == "spiking":
        if OUTPUT_KEY not in thresholds:
            raise ValueError("readout='spiking' needs the max logit: calibrate with include_output=True.")
        readout_neuron = IFNeuron(float(thresholds[OUTPUT_KEY]), name=OUTPUT_KEY)
    used = [*sites, OUTPUT_KEY] if readout == "spiking" else list(sites)
    snn = ConvertedSNN(
        snn,
        readout_neuron,
        shift=shift,
        timesteps=int(timesteps) if shift == "bias" else None,
        thresholds={name: thresholds[name] for name in used},
        neuron=neuron,
    )
    return snn.eval()


def neurons(snn: nn.Module) -> list[IFNeuron]:
    """The IF neurons of an SNN, in module order."""
    return [m for m in snn.modules() if isinstance(m, IFNeuron)]


def stateful_modules(snn: nn.Module) -> list[StatefulModule]:
    """Every layer of an SNN that keeps state across steps (IF neurons, spiking max-pools)."""
    return [m for m in snn.modules() if isinstance(m, StatefulModule)]


__all__ = [
    "CALIBRATION_METHODS",
    "OUTPUT_KEY",
    "PAPER_CONSTANT_SHIFT",
    "READOUTS",
    "SHIFT_MODES",
    "ConversionError",
    "ConvertedSNN",
    "activation_layers",
    "calibrate_thresholds",
    "check_calibration",
    "check_convertible",
    "check_shift",
    "convert",
    "convert_graph",
    "neurons",
    "refuse_negative_spikes_into_pools",
    "site_activations",
    "stateful_modules",
]
