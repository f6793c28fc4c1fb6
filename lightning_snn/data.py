"""CIFAR DataModules: torchvision download or offline ``train.npz``/``test.npz``.

Images stay uint8 in memory; augmentation (random crop with 4-pixel padding, horizontal
flip) and normalisation run per sample in torch. Validation uses the test split, as the
paper does, unless ``val_split`` holds out part of the training set. The calibration
loader is a fixed, seeded, un-augmented subset of the training set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


class TensorImageDataset(Dataset):
    """uint8 ``[N, C, H, W]`` images + labels -> normalised float tensors, optionally augmented."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: bool = False,
        pad: int = 4,
    ) -> None:
        self.images, self.labels, self.augment, self.pad = images, labels, augment, pad
        self.mean = torch.tensor(mean).view(-1, 1, 1) * 255.0
        self.std = torch.tensor(std).view(-1, 1, 1) * 255.0

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int):
        img = self.images[i]
        if self.augment:
            h, w = img.shape[1:]
            padded = torch.nn.functional.pad(img, (self.pad,) * 4)
            top, left = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
            img = padded[:, top : top + h, left : left + w]
            if torch.rand(()) < 0.5:
                img = img.flip(-1)
        return (img.float() - self.mean) / self.std, self.labels[i]


def seeded_subset(dataset: Dataset, num_samples: int | None, seed: int) -> Dataset:
    """``num_samples`` items of ``dataset`` drawn with ``seed``, in index order (all if None)."""
    n = len(dataset)
    if num_samples is None or num_samples >= n:
        return dataset
    if num_samples <= 0:
        raise ValueError(f"calibration_samples must be > 0, got {num_samples}.")
    gen = torch.Generator().manual_seed(seed)
    return Subset(dataset, torch.randperm(n, generator=gen)[:num_samples].sort().values.tolist())


def load_npz_split(data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``{split}.npz`` with uint8 HWC ``images`` and int ``labels`` -> (uint8 NCHW, int64)."""
    with np.load(data_dir / f"{split}.npz") as f:
        images, labels = f["images"], f["labels"]
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels).long()


class ConversionDataModule(pl.LightningDataModule):
    """What the conversion callback needs from a DataModule, shared by CIFAR and ImageNet:
    loaders over ``train_set``/``val_set``/``test_set`` (set in ``setup``) and a fixed, seeded,
    un-augmented ``calibration_set`` drawn from ``_calibration_base()``."""

    batch_size: int
    eval_batch_size: int
    num_workers: int
    seed: int

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size)

    def _calibration_base(self) -> Dataset:
        raise NotImplementedError

    def calibration_set(self, num_samples: int | None = None, seed: int | None = None) -> Dataset:
        """A fixed, seeded, un-augmented subset of the training images (all of them if None)."""
        if not hasattr(self, "train_set"):
            self.setup("fit")
        return seeded_subset(self._calibration_base(), num_samples, self.seed if seed is None else seed)


class CIFARDataModule(ConversionDataModule):
    """CIFAR-10/100 for conversion experiments.

    Args:
        data_dir: a folder with ``train.npz`` and ``test.npz`` (used as is, offline), or
            torchvision's CIFAR root (downloaded there if ``download``); default
            ``data/cifar10`` or ``data/cifar100``.
        download: let torchvision download the data set when it is not in ``data_dir``.
        batch_size: training batch size (evaluation uses ``eval_batch_size``).
        eval_batch_size: batch size of validation, test and calibration loaders.
        num_workers: DataLoader worker processes.
        val_split: 0 = validate on the test split (the paper's protocol); a fraction in
            (0, 1) or a count holds that many training images out, chosen with ``seed``.
        train_samples: use only the first N training images (quick runs and tests).
        seed: seed of the hold-out split and of the calibration subset.
    """

    dataset_name = "CIFAR10"
    num_classes = 10
    mean, std = CIFAR10_MEAN, CIFAR10_STD

    def __init__(
        self,
        data_dir: str | None = None,
        download: bool = True,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        num_workers: int = 2,
        val_split: float = 0,
        train_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size <= 0 or eval_batch_size <= 0:
            raise ValueError("batch sizes must be > 0.")
        if val_split < 0:
            raise ValueError(f"val_split must be >= 0, got {val_split}.")
        self.data_dir = Path(data_dir or f"data/{self.dataset_name.lower()}").expanduser()
        self.download = download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers
        self.val_split, self.train_samples, self.seed = val_split, train_samples, seed
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    # ---- loading -------------------------------------------------------------------------
    def _has_npz(self) -> bool:
        return (self.data_dir / "train.npz").is_file() and (self.data_dir / "test.npz").is_file()

    def _torchvision(self, train: bool, download: bool):
        import torchvision

        cls = getattr(torchvision.datasets, self.dataset_name)
        return cls(str(self.data_dir), train=train, download=download)

    def prepare_data(self) -> None:
        if self._has_npz():
            return
        try:
            for train in (True, False):
                self._torchvision(train, download=self.download)
        except RuntimeError as exc:
            raise FileNotFoundError(
                f"{self.dataset_name} not found in {str(self.data_dir)!r} (no train.npz/test.npz and no "
                f"torchvision copy) and download={self.download}. Point --data.data_dir at a folder "
                "with train.npz/test.npz, or pass --data.download true."
            ) from exc

    def _load(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if self._splits is None:
            if self._has_npz():
                splits = {s: load_npz_split(self.data_dir, s) for s in ("train", "test")}
            else:
                self.prepare_data()  # raises the helpful error if nothing is there
                splits = {}
                for split in ("train", "test"):
                    ds = self._torchvision(split == "train", download=False)
                    splits[split] = (
                        torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                        torch.tensor(ds.targets, dtype=torch.long),
                    )
            labels = splits["train"][1]
            if int(labels.max()) >= self.num_classes:
                raise ValueError(
                    f"{self.data_dir} holds labels up to {int(labels.max())}, but {type(self).__name__} "
                    f"has {self.num_classes} classes: wrong data_dir?"
                )
            self._splits = splits
        return self._splits

    def setup(self, stage: str | None = None) -> None:
        splits = self._load()
        train_x, train_y = splits["train"]
        if self.train_samples is not None:
            train_x, train_y = train_x[: self.train_samples], train_y[: self.train_samples]
        n = train_y.shape[0]
        n_val = int(round(self.val_split * n)) if self.val_split < 1 else int(self.val_split)
        if n_val >= n:
            raise ValueError(f"val_split={self.val_split} leaves no training images out of {n}.")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        train_idx, val_idx = perm[n_val:].sort().values, perm[:n_val].sort().values
        self.train_images, self.train_labels = train_x[train_idx], train_y[train_idx]
        self.train_set = TensorImageDataset(self.train_images, self.train_labels, self.mean, self.std, augment=True)
        self.test_set = TensorImageDataset(*splits["test"], self.mean, self.std)
        if n_val:
            self.val_set = TensorImageDataset(train_x[val_idx], train_y[val_idx], self.mean, self.std)
        else:
            self.val_set = self.test_set

    def _calibration_base(self) -> Dataset:
        return TensorImageDataset(self.train_images, self.train_labels, self.mean, self.std, augment=False)


class CIFAR10DataModule(CIFARDataModule):
    """CIFAR-10 (10 classes)."""


class CIFAR100DataModule(CIFARDataModule):
    """CIFAR-100 (100 classes); offline files use the same ``train.npz``/``test.npz`` layout."""

    dataset_name = "CIFAR100"
    num_classes = 100
    mean, std = CIFAR100_MEAN, CIFAR100_STD
