from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CIFAR10_DIR = Path(os.environ.get("LIGHTNING_SNN_CIFAR10", REPO.parent / "shared" / "data" / "cifar10"))

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def heap_rule_as_glibc_default(monkeypatch):
    """Every test sees the chunk rule of a process that did not keep its heap: the command line's
    ``keep_freed_memory()`` (tests run ``main()`` in-process) must not change later tests' chunks."""
    from lightning_snn import heap

    monkeypatch.setattr(heap, "_kept", False)


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    if not (CIFAR10_DIR / "train.npz").is_file():
        pytest.skip(f"real CIFAR-10 npz files not found at {CIFAR10_DIR} (set LIGHTNING_SNN_CIFAR10)")
    return CIFAR10_DIR


@pytest.fixture(scope="session")
def cifar_batches(cifar10_dir):
    """(train subset, test subset) of real, normalised CIFAR-10 tensors."""
    from lightning_snn.data import CIFAR10DataModule

    dm = CIFAR10DataModule(str(cifar10_dir), download=False, num_workers=0, train_samples=4096)
    dm.setup("fit")
    train = torch.stack([dm.calibration_set()[i][0] for i in range(4096)]), dm.train_labels
    test_x = torch.stack([dm.test_set[i][0] for i in range(512)])
    test_y = torch.stack([dm.test_set[i][1] for i in range(512)])
    return train, (test_x, test_y)


@pytest.fixture(scope="session")
def trained_vgg(cifar_batches):
    """A small VGG-11 with threshold ReLU trained for a few seconds on real CIFAR-10."""
    from lightning_snn.activations import set_threshold_enabled
    from lightning_snn.models import create_model

    torch.manual_seed(0)
    model = create_model("vgg11", width=0.125, conv_dropout=0.0, fc_dropout=0.0)
    set_threshold_enabled(model, True)
    (x, y), _ = cifar_batches
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _epoch in range(3):
        for i in range(0, x.shape[0], 128):
            loss = torch.nn.functional.cross_entropy(model(x[i : i + 128]), y[i : i + 128])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()
