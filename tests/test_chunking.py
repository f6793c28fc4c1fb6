"""time_chunk="auto": sized by the bytes of a folded tensor, bounded by memory, exact like any chunk."""

from __future__ import annotations

import pytest
import torch

from lightning_snn import heap
from lightning_snn.activations import set_threshold_enabled
from lightning_snn.chunking import (
    CPU_KEPT_HEAP_TARGET,
    LIVE_TENSORS,
    MEMORY_SHARE,
    TARGET_BYTES,
    auto_time_chunk,
    available_memory,
    largest_activation_bytes,
    largest_state_bytes,
)
from lightning_snn.conversion import calibrate_thresholds, convert, stateful_modules
from lightning_snn.models import create_model
from lightning_snn.simulation import simulate

KB = 1024
PLENTY = 2**40  # available memory that bounds nothing


def test_cpu_rule_counts_bytes_per_folded_tensor():
    # VGG-16 on CIFAR: largest activation 64 x 32 x 32 floats = 256 KiB per sample at full width
    assert auto_time_chunk("cpu", 8, 256 * KB, PLENTY) == TARGET_BYTES["cpu"] // (8 * 256 * KB)
    assert auto_time_chunk("cpu", 256, 64 * KB, PLENTY) == 1  # 16 MiB per step already
    assert auto_time_chunk("cpu", 1, 1, PLENTY) == TARGET_BYTES["cpu"]  # tiny: as long as T allows


def test_cpu_rule_aims_at_64_mb_where_the_heap_is_kept(monkeypatch):
    """Without page faults (lightning_snn.heap) the CPU sweeps peak near 64 MB per folded tensor."""
    monkeypatch.setattr(heap, "_kept", True)
    assert auto_time_chunk("cpu", 256, 64 * KB, PLENTY) == CPU_KEPT_HEAP_TARGET // (256 * 64 * KB) == 4
    assert auto_time_chunk("cpu", 64, 64 * KB, PLENTY) == 16
    assert auto_time_chunk("cpu", 8, 256 * KB, PLENTY) == 32
    assert auto_time_chunk("cuda", 128, 256 * KB, PLENTY) * 128 == 4096  # the GPU's rule does not change
    assert auto_time_chunk("cpu", 256, 64 * KB, 64 * 2**20) == 1  # the memory bound still binds


def test_keep_freed_memory_is_idempotent_and_can_be_refused(monkeypatch):
    monkeypatch.setenv("LIGHTNING_SNN_HEAP", "trim")
    assert heap.keep_freed_memory() is False and heap.heap_kept() is False
    monkeypatch.setenv("LIGHTNING_SNN_HEAP", "sometimes")
    with pytest.raises(ValueError, match="LIGHTNING_SNN_HEAP"):
        heap.keep_freed_memory()
    monkeypatch.setenv("LIGHTNING_SNN_HEAP", "keep")
    kept = heap.keep_freed_memory()  # True on glibc (Linux CI); elsewhere a no-op
    assert heap.heap_kept() is kept and heap.keep_freed_memory() is kept


def test_cuda_rule_is_about_4096_cifar_samples_not_at_imagenet_size():
    cifar, imagenet = 256 * KB, 64 * 224 * 224 * 4
    assert auto_time_chunk("cuda", 16, cifar, PLENTY) * 16 == 4096
    assert auto_time_chunk("cuda", 128, cifar, PLENTY) * 128 == 4096
    assert auto_time_chunk("cuda", 128, imagenet, PLENTY) == 1  # one step is already 1.6 GB
    assert auto_time_chunk("cuda", 8, imagenet, PLENTY) * 8 * imagenet <= TARGET_BYTES["cuda"]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_chunk_never_exceeds_the_memory_bound(device):
    per_step = 16 * 256 * KB
    for available in (2**26, 2**28, 2**30, 2**33):
        chunk = auto_time_chunk(device, 16, 256 * KB, available)
        assert chunk >= 1
        assert chunk == 1 or LIVE_TENSORS * chunk * per_step <= MEMORY_SHARE * available
    assert auto_time_chunk(device, 16, 256 * KB, 2**20) == 1  # even with no room: one step (can't do less)


def test_available_memory_on_cpu_is_known():
    free = available_memory("cpu")
    assert free is None or free > 0


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = create_model("vgg11", width=0.0625).double().eval()
    set_threshold_enabled(model, True)
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    thresholds = calibrate_thresholds(model, [torch.randn(16, 3, 32, 32, dtype=torch.float64)])
    return model, convert(model, thresholds, shift="membrane"), x


def test_auto_runs_one_step_then_the_rule_and_changes_nothing(tiny):
    model, snn, x = tiny
    steps_seen: list[int] = []
    first = stateful_modules(snn)[0]
    handle = first.register_forward_pre_hook(lambda m, _: steps_seen.append(m.steps))
    try:
        auto = simulate(snn, x, [5, 40], "auto")
    finally:
        handle.remove()
    expected = auto_time_chunk("cpu", 8, largest_activation_bytes(model, x))
    assert expected > 1
    chunks, t = [1], 1  # one step, then chunks of the rule's size (the T list ends no chunk)
    while t < 40:
        chunks.append(min(expected, 40 - t))
        t += chunks[-1]
    assert steps_seen == chunks
    assert torch.allclose(auto, simulate(snn, x, [5, 40], 1), atol=1e-9)


def test_state_bytes_after_a_chunk_equal_the_anns_largest_activation(tiny):
    model, snn, x = tiny
    neurons = stateful_modules(snn)
    seen = []
    handle = neurons[-1].register_forward_hook(lambda *_: seen.append(largest_state_bytes(neurons, x.shape[0])))
    try:
        simulate(snn, x, [2], 1)
    finally:
        handle.remove()
    assert seen[0] == largest_activation_bytes(model, x) == 4 * 32 * 32 * 8  # vgg11 / 16: 4 channels at 32 x 32


def test_auto_chunks_every_call_alike():
    """The same SNN and batch twice: the same chunks, so (float32) bit-identical outputs."""
    torch.manual_seed(1)
    model = create_model("vgg11", width=0.0625).eval()
    set_threshold_enabled(model, True)
    x = torch.randn(4, 3, 32, 32)
    snn = convert(model, calibrate_thresholds(model, [x]), shift="membrane")
    assert torch.equal(simulate(snn, x, [7, 20], "auto"), simulate(snn, x, [7, 20], "auto"))
