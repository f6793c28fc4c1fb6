"""Run a ``.nir`` file written by lightning_snn.export in other simulators, as their users would.

Each runner reads the file with ``nir.read``, imports it with the simulator's own importer
(``sinabs.from_nir``, ``snntorch.import_nir.import_from_nir``, ``norse.torch.from_nir``),
optionally applies the user-side settings that give our neuron's semantics (``fixes``), feeds the
analog image at every one of T steps and returns the predictions (argmax of the output summed
over the steps). The settings, what each one changes and why, are documented in docs/EXPORT.md;
benchmarks/nir_check.py and tests/test_export_simulators.py call these.

Runner signature: ``run(path, x, timesteps, fixes) -> predictions [B]`` (long tensor).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Per simulator, the user-side settings (applied after import) that give our neuron:
#: their name -> what it changes. The runners accept any subset.
FIXES: dict[str, dict[str, str]] = {
    "sinabs": {
        "single_spike": "spike_fn = SingleSpike (default MultiSpike: floor(v / V_th) spikes in one step)",
        "no_floor": "min_v_mem = None (from_nir sets min_v_mem = -V_th: the membrane is clipped below)",
    },
    "snntorch": {
        "hidden_state": "init_hidden = True on every Leaky (from_nir builds them with init_hidden=False: they "
        "return (spikes, membrane) and nirtorch hands the tuple to the next layer, which fails)",
        "batch_flatten": "Flatten(start_dim=1) (import_from_nir passes NIR's start_dim 0, which counts from the first "
        "feature dimension, to torch.nn.Flatten, which counts from the batch: it flattens the batch away)",
        "no_leak": "beta = 1 (import_from_nir maps NIR's IF to Leaky(beta=0.9): a leak of 10% per step)",
        "reset_delay": "reset_delay = True (import_from_nir sets False: a neuron whose membrane stays above the "
        "threshold after its spike must then exceed twice the threshold to fire again; with True, the reset is "
        "subtracted at the next step, which is exactly our neuron read before its reset)",
        "fire_at_ge": "threshold = the next float below V_th (Leaky fires at v > threshold, ours at v >= V_th)",
    },
    "norse": {
        "batch_flatten": "Flatten(start_dim=1) (as for snnTorch: NIR's start_dim 0 given to torch.nn.Flatten)",
        "subtract_step": "IAFCell.activation = a step that fires at v >= V_th and subtracts V_th (from_nir's "
        "IAFCell fires at v > V_th and resets to v_reset = 0; no from_nir setting changes it)",
    },
}


def _summed(outputs: torch.Tensor, batch: int, steps: int) -> torch.Tensor:
    return outputs.reshape(batch, steps, -1).sum(1)


@torch.no_grad()
def run_sinabs(path: str, x: torch.Tensor, timesteps: int, fixes: frozenset[str] = frozenset()) -> torch.Tensor:
    import nir
    import sinabs
    from sinabs.activation import SingleSpike

    net = sinabs.from_nir(nir.read(path), batch_size=x.shape[0])
    for m in net.modules():
        if isinstance(m, sinabs.layers.IAF):
            if "single_spike" in fixes:
                m.spike_fn = SingleSpike
            if "no_floor" in fixes:
                m.min_v_mem = None
    sinabs.reset_states(net)
    # sinabs' squeeze layers take [batch * time, ...], batch-major: every image repeated T times
    frames = x.unsqueeze(1).expand(x.shape[0], timesteps, *x.shape[1:]).reshape(-1, *x.shape[1:])
    out, _ = net(frames)
    return _summed(out, x.shape[0], timesteps).argmax(-1)


@torch.no_grad()
def run_snntorch(path: str, x: torch.Tensor, timesteps: int, fixes: frozenset[str] = frozenset()) -> torch.Tensor:
    import nir
    import snntorch
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(nir.read(path))
    for m in net.modules():
        if isinstance(m, torch.nn.Flatten) and "batch_flatten" in fixes and m.start_dim == 0:
            m.start_dim = 1
        if isinstance(m, snntorch.Leaky):
            if "hidden_state" in fixes:
                m.init_hidden = True
            if "no_leak" in fixes:
                m.beta = torch.ones_like(m.beta)
            if "reset_delay" in fixes:
                m.reset_delay = True
            if "fire_at_ge" in fixes:
                m.threshold = torch.nextafter(m.threshold.float(), torch.tensor(-float("inf")))
            m.reset_mem()
    total, state = 0.0, None
    for _ in range(timesteps):
        out, state = net(x, state)  # nirtorch's GraphModule: (output, state) per step
        total = total + out
    return total.argmax(-1)


def _subtractive_iaf_step(x: torch.Tensor, state, p, dt: float = 0.001):
    """Our neuron as a Norse IAF step: v += I; fire at v >= V_th; subtract V_th."""
    from norse.torch.functional.iaf import IAFFeedForwardState

    v = state.v + x
    z = (v >= p.v_th).to(v.dtype)
    return z, IAFFeedForwardState(v=v - z * p.v_th)


@torch.no_grad()
def run_norse(path: str, x: torch.Tensor, timesteps: int, fixes: frozenset[str] = frozenset()) -> torch.Tensor:
    import nir
    import norse.torch as norse

    net = norse.from_nir(nir.read(path))
    for m in net.modules():
        if isinstance(m, torch.nn.Flatten) and "batch_flatten" in fixes and m.start_dim == 0:
            m.start_dim = 1
        if isinstance(m, norse.IAFCell) and "subtract_step" in fixes:
            m.activation = _subtractive_iaf_step
    total, state = 0.0, None
    for _ in range(timesteps):
        out, state = net(x, state)
        total = total + out
    return total.argmax(-1)


#: The fixes without which the imported network does not run at all (the others change numbers).
REQUIRED: dict[str, tuple[str, ...]] = {
    "sinabs": (),
    "snntorch": ("hidden_state", "batch_flatten"),
    "norse": ("batch_flatten",),
}

RUNNERS: dict[str, Callable[..., torch.Tensor]] = {"sinabs": run_sinabs, "snntorch": run_snntorch, "norse": run_norse}
#: The export options each importer needs to read the file at all (nodes it does not know).
EXPORT_OPTIONS = {
    "sinabs": {"pooling": "sum", "integrator": False},  # no AvgPool2d, no I
    "snntorch": {"pooling": "avg", "integrator": False},  # no SumPool2d, no I
    "norse": {"pooling": "sum", "integrator": False},  # no AvgPool2d, no I
}


def available(name: str) -> bool:
    """Whether the simulator ``name`` imports here."""
    module = {"sinabs": "sinabs", "snntorch": "snntorch", "norse": "norse.torch"}[name]
    try:
        __import__(module)
    except Exception:  # ImportError, or a broken install raising anything on import
        return False
    return True
