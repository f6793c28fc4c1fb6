"""How many time steps ``time_chunk="auto"`` folds into one forward pass: sized by memory.

A chunk of ``c`` steps runs every stateless layer once on ``c x B`` rows, so its largest
tensor holds ``c x B x (largest activation of one sample)`` values. What is fastest depends on
that size, not on the batch alone (docs/BENCHMARKS.md, the time_chunk sweeps):

* CPU: it depends on the heap. Where freed memory stays in the process
  (:func:`lightning_snn.heap.keep_freed_memory`, which the command line calls), larger folded
  convolutions keep paying up to ~64 MB per tensor (the sweeps at batch 8, 64 and 256 all peak
  there); with glibc's defaults every large fresh tensor costs page faults, and ~8 MB is best;
* CUDA: larger kernels win up to ~4096 samples x a CIFAR VGG-16's largest activation (1 GiB);
  at ImageNet size (49x the activation) that many samples would ask for tens of GB per layer,
  so the rule counts bytes, not samples.

``chunk = clamp(floor(TARGET_BYTES[device] / (B x bytes per sample)), 1, memory bound)``, where
the memory bound keeps ``LIVE_TENSORS`` folded tensors of the largest size within
``MEMORY_SHARE`` of the memory available when the chunk is chosen.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from lightning_snn.heap import heap_kept

#: bytes of one folded tensor (chunk x batch x largest activation per sample) that "auto" aims at
TARGET_BYTES = {"cpu": 8 * 2**20, "cuda": 2**30}
#: the CPU's target where freed memory stays in the process (no page faults for a larger tensor)
CPU_KEPT_HEAP_TARGET = 64 * 2**20
#: folded tensors of the largest size alive at once during a chunk (a layer's input current, its
#: spikes, the next layer's output), with a margin for the allocator
LIVE_TENSORS = 4
#: at most this share of the available memory goes to one chunk's activations
MEMORY_SHARE = 0.5


def available_memory(device: torch.device | str) -> int | None:
    """Bytes free for new tensors on ``device`` now (``None`` if unknown): CUDA's free memory plus
    what PyTorch's caching allocator holds unused; on the CPU, MemAvailable of /proc/meminfo."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            import os

            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def auto_time_chunk(
    device: torch.device | str, batch: int, bytes_per_sample: int, available_bytes: int | None = None
) -> int:
    """Steps per chunk for a batch of ``batch`` samples whose largest activation takes
    ``bytes_per_sample`` bytes per sample (see the module docstring); ``available_bytes``
    overrides the measured free memory (:func:`available_memory`)."""
    device = torch.device(device)
    per_step = max(1, int(batch) * int(bytes_per_sample))
    target = TARGET_BYTES.get(device.type, TARGET_BYTES["cpu"])
    if device.type == "cpu" and heap_kept():
        target = CPU_KEPT_HEAP_TARGET
    chunk = max(1, target // per_step)
    available = available_memory(device) if available_bytes is None else available_bytes
    if available is not None:
        chunk = min(chunk, max(1, int(MEMORY_SHARE * available) // (LIVE_TENSORS * per_step)))
    return int(chunk)


def largest_state_bytes(modules: Iterable[nn.Module], batch: int) -> int:
    """Bytes per sample of the largest per-sample state (an IF neuron's membrane potential, a
    max-pool's count) among ``modules``, read after they ran a chunk: each is the size of the
    activation feeding that layer."""
    largest = 0
    for m in modules:
        for name in ("v", "count"):
            t = getattr(m, name, None)
            if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == batch:
                largest = max(largest, t[0].numel() * t.element_size())
    return largest


@torch.no_grad()
def largest_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes per sample of the largest output of any leaf module of ``model`` (e.g. the ANN) on
    one sample of ``x``: what the "auto" rule sees, computed without simulating."""
    sizes: list[int] = [x[0].numel() * x.element_size()]

    def hook(_module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.dim() > 0:
            sizes.append(output[0].numel() * output.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return max(sizes)
