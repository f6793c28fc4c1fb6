"""What the study scripts (fidelity.py, low_latency.py) share: a quiet Lightning fit, the
checkpoint hash, and the fixed calibration / test images every variant is evaluated on.

Imported as ``study`` by the scripts beside it (``python benchmarks/<script>.py`` puts this
folder on ``sys.path``); not part of the installed library.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Subset

from lightning_snn.data import CIFAR10DataModule

REPO = Path(__file__).resolve().parents[1]


def portable(args) -> dict:
    """The script's settings for its results JSON, with absolute paths made relative to the
    checkout (a committed file must not name this machine's folders)."""
    out = dict(vars(args))
    for key, value in out.items():
        if isinstance(value, str) and Path(value).is_absolute():
            out[key] = os.path.relpath(Path(value).resolve(), REPO)  # e.g. ../shared/data/cifar10
    return out


def sha256(path: Path) -> str:
    """Hex sha256 of a file (the checkpoint identity recorded in the docs)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fit_quietly(
    module: pl.LightningModule, args, work: Path, resume_dir: Path | None = None, callbacks: list | None = None
) -> tuple[pl.Trainer, float]:
    """Train ``module`` on real CIFAR-10 for ``args.epochs`` with ``args.seed``; no logger,
    progress bar or validation (the studies evaluate afterwards on fixed images).

    With ``resume_dir``, the state after every epoch goes to ``resume_dir/last.ckpt`` and a fit
    that finds one there goes on from it (a long study killed midway loses at most one epoch;
    the data order after a resume differs from an uninterrupted run's). Without it, nothing is
    checkpointed. ``callbacks`` are added to the trainer's. Returns the trainer (to save a Lightning
    checkpoint) and this call's training wall time in seconds."""
    pl.seed_everything(args.seed, workers=True)
    dm = CIFAR10DataModule(args.data_dir, download=False, num_workers=2, train_samples=args.train_samples)
    callbacks, ckpt_path = list(callbacks or []), None
    if resume_dir is not None:
        from pytorch_lightning.callbacks import ModelCheckpoint

        # save_top_k=1 (the newest epoch, monitor=None), not 0: Lightning >= 2.5 writes last.ckpt only in a
        # step where it saved a top-k checkpoint, so with 0 it came only at the end of training
        callbacks.append(ModelCheckpoint(dirpath=resume_dir, save_last=True, save_top_k=1, every_n_epochs=1))
        last = Path(resume_dir) / "last.ckpt"
        ckpt_path = str(last) if last.exists() else None
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=resume_dir is not None,
        callbacks=callbacks,
        enable_progress_bar=False,
        default_root_dir=work,
        limit_val_batches=0,
    )
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return trainer, time.perf_counter() - t0


def evaluation_images(args, calibration: bool = True) -> tuple[list[torch.Tensor] | None, list]:
    """The calibration batches (``args.calibration_samples`` fixed, seeded, un-augmented training
    images; ``None`` where ``calibration`` is false) and the test batches (the first
    ``args.test_samples`` test images), both in ``args.batch_size`` chunks: the same for every
    variant of a study."""
    dm = CIFAR10DataModule(args.data_dir, download=False, num_workers=0)
    dm.setup("fit")
    test = Subset(dm.test_set, range(min(args.test_samples, len(dm.test_set))))
    if not calibration:
        return None, list(DataLoader(test, batch_size=args.batch_size))
    calib = dm.calibration_set(args.calibration_samples, seed=0)
    calib_x = list(torch.stack([calib[i][0] for i in range(len(calib))]).split(args.batch_size))
    return calib_x, list(DataLoader(test, batch_size=args.batch_size))
