"""Run a ``.nir`` file written by lightning_snn.export in other simulators, as their users would: each runner
``run(path, x, timesteps, fixes) -> predictions [B]`` reads the file with ``nir.read``, imports it with the
simulator's own importer, applies the user-side settings ``fixes`` (docs/EXPORT.md), feeds the analog image at
each of T steps and takes the argmax of the output summed over the steps. Used by nir_check.py and
tests/test_export_simulators.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Per simulator, the user-side settings (applied after import) that give our neuron; the runners accept
#: any subset. What each changes and why: docs/EXPORT.md.
FIXES: dict[str, tuple[str, ...]] = {
    "sinabs": ("single_spike", "no_floor"),  # spike_fn = SingleSpike; min_v_mem = None (from_nir clips at -V_th)
    # init_hidden = True; Flatten(start_dim=1) (NIR's start_dim 0 flattens the batch away); beta = 1 (from_nir:
    # 0.9); reset_delay = True (the reset at the next step, our neuron read before its reset); threshold = the next
    # float below V_th (Leaky fires at v > threshold, ours at v >= V_th)
    "snntorch": ("hidden_state", "batch_flatten", "no_leak", "reset_delay", "fire_at_ge"),
    # Flatten(start_dim=1) as for snnTorch; IAFCell.activation = our step (fire at v >= V_th, subtract V_th)
    "norse": ("batch_flatten", "subtract_step"),
}


def _stepped(net, x: torch.Tensor, timesteps: int, fixes: frozenset[str]) -> torch.Tensor:
    """Predictions of a nirtorch graph fed ``x`` at each of ``timesteps`` steps ((output, state) per step)."""
    for m in net.modules():  # NIR's start_dim 0 (the first feature dimension) would flatten the batch away
        if isinstance(m, torch.nn.Flatten) and "batch_flatten" in fixes and m.start_dim == 0:
            m.start_dim = 1
    total, state = 0.0, None
    for _ in range(timesteps):
        out, state = net(x, state)
        total = total + out
    return total.argmax(-1)


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
    return out.reshape(x.shape[0], timesteps, -1).sum(1).argmax(-1)


@torch.no_grad()
def run_snntorch(path: str, x: torch.Tensor, timesteps: int, fixes: frozenset[str] = frozenset()) -> torch.Tensor:
    import nir
    import snntorch
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(nir.read(path))
    for m in net.modules():
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
    return _stepped(net, x, timesteps, fixes)


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
        if isinstance(m, norse.IAFCell) and "subtract_step" in fixes:
            m.activation = _subtractive_iaf_step
    return _stepped(net, x, timesteps, fixes)


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
