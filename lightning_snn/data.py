"""CIFAR DataModules: torchvision download or offline ``train.npz``/``test.npz``.

Images stay uint8 in memory; augmentation (random crop with 4-pixel padding, horizontal
flip) and normalisation run per sample in torch. Validation uses the test split, as the
paper does, unless ``val_split`` holds out part of the training set. The calibration
loader is a fixed, seeded, un-augmented subset of the training set.
"""

from __future__ import annotations

import zipfile
import zlib
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


def check_loader_settings(batch_size: int, eval_batch_size: int, **counts: int | None) -> None:
    """Batch sizes > 0, and each optional image count (``train_samples=...``) > 0 or None (all)."""
    if batch_size <= 0 or eval_batch_size <= 0:
        raise ValueError(f"batch sizes must be > 0, got batch_size={batch_size}, eval_batch_size={eval_batch_size}.")
    for name, n in counts.items():
        if n is not None and (isinstance(n, bool) or n <= 0):
            raise ValueError(f"{name} must be > 0 or null (all images), got {n}.")


def seeded_subset(dataset: Dataset, num_samples: int | None, seed: int) -> Dataset:
    """``num_samples`` items of ``dataset`` drawn with ``seed``, in index order (all if None)."""
    n = len(dataset)
    if num_samples is None or num_samples >= n:
        return dataset
    if num_samples <= 0:
        raise ValueError(f"calibration_samples must be > 0, got {num_samples}.")
    gen = torch.Generator().manual_seed(seed)
    return Subset(dataset, torch.randperm(n, generator=gen)[:num_samples].sort().values.tolist())


NPZ_FORMAT = "an .npz with 'images' (uint8, [N, 32, 32, 3], HWC, 0..255) and 'labels' (integers, [N])"
IMAGE_SHAPE = (32, 32, 3)


def load_npz_split(data_dir: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``{split}.npz`` with uint8 HWC ``images`` and int ``labels`` -> (uint8 NCHW, int64).

    Raises:
        ValueError: the file is not a readable .npz of that format (the message names the file,
            what is wrong and the expected format).
    """
    path = Path(data_dir) / f"{split}.npz"
    try:
        with open(path, "rb") as raw:
            magic = raw.read(6)
        # an .npz is a zip archive; anything else is refused here, before numpy would take it for a pickle
        if magic == b"\x93NUMPY":
            raise ValueError("it holds one array (.npy content), not named arrays")
        if magic[:2] != b"PK":
            raise ValueError(f"it is not a valid .npz file (not a zip archive: {path.stat().st_size} bytes)")
        with np.load(path, allow_pickle=False) as f:
            missing = sorted({"images", "labels"} - set(f.files))
            if missing:
                raise ValueError(f"it has the arrays {sorted(f.files)}, no {missing}")
            try:
                images, labels = f["images"], f["labels"]
            except ValueError as exc:  # numpy's message suggests an unsafe load: never do that here
                raise ValueError("it holds object arrays (pickled Python objects), which are never loaded") from exc
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ValueError(f"cannot read {path}: {reason}. Expected {NPZ_FORMAT}.") from exc
    check_images_and_labels(images, labels, str(path))
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels.astype(np.int64))


def check_images_and_labels(images: np.ndarray, labels: np.ndarray, source: str) -> None:
    """Refuse images that are not uint8 ``[N, 32, 32, 3]`` or labels that do not match them."""
    if images.ndim == 4 and images.shape[1] == 3 and images.shape[1:] != IMAGE_SHAPE:
        hint = "they look channels-first (CHW): store images.transpose(0, 2, 3, 1)"
    elif images.ndim == 4 and images.shape[-1] == 1:
        hint = "they are grayscale: CIFAR images have 3 colour channels"
    else:
        hint = "CIFAR images are 32x32 RGB, channels last"
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"{source}: images have shape {list(images.shape)}, expected [N, 32, 32, 3]; {hint}.")
    if images.dtype != np.uint8:
        hint = (
            "floats in [0, 1]? store (images * 255).round().astype(np.uint8)"
            if np.issubdtype(images.dtype, np.floating)
            else "store them as np.uint8 (0..255)"
        )
        raise ValueError(f"{source}: images are {images.dtype}, expected uint8 (0..255); {hint}.")
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_):
        raise ValueError(f"{source}: labels are {labels.dtype} {list(labels.shape)}, expected integers [N].")
    if images.shape[0] == 0:
        raise ValueError(f"{source}: no images (an empty array): write the split's images and labels into it.")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{source}: {images.shape[0]} images but {labels.shape[0]} labels; every image needs exactly one label."
        )


def check_label_range(labels: torch.Tensor, num_classes: int, source: str, owner: str) -> None:
    """Refuse labels outside ``[0, num_classes)`` (they crash the loss or are scored as wrong)."""
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{source}: label {int(labels[i])} (image {i}) is outside 0..{num_classes - 1}, the classes of {owner}: "
            "wrong data_dir, or labels of another data set?"
        )


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
        check_loader_settings(batch_size, eval_batch_size, train_samples=train_samples)
        if isinstance(val_split, bool) or val_split < 0 or (val_split >= 1 and val_split != int(val_split)):
            raise ValueError(
                f"val_split must be 0 (validate on the test split), a fraction in (0, 1) or a whole number of "
                f"images, got {val_split}."
            )
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
        present = [s for s in ("train", "test") if (self.data_dir / f"{s}.npz").is_file()]
        if present:  # a folder of npz files missing one: never a reason to download
            missing = "test" if present == ["train"] else "train"
            raise FileNotFoundError(
                f"{str(self.data_dir)!r} has {present[0]}.npz but no {missing}.npz: add {missing}.npz ({NPZ_FORMAT}; "
                "benchmarks/make_cifar_subset.py writes both), or set --data.init_args.data_dir to a folder with both."
            )
        where = (
            f"--data.init_args.data_dir can point at a folder with train.npz/test.npz ({NPZ_FORMAT}; "
            "benchmarks/make_cifar_subset.py writes them)"
        )
        try:
            for train in (True, False):
                self._torchvision(train, download=self.download)
        except RuntimeError as exc:
            if self.download:
                raise
            raise FileNotFoundError(
                f"{self.dataset_name} not found in {str(self.data_dir)!r} (no train.npz/test.npz and no "
                f"torchvision copy) and download={self.download}: {where}; or pass --data.init_args.download true."
            ) from exc
        except OSError as exc:  # URLError, timeouts, DNS: typically no internet on this machine
            raise ConnectionError(
                f"downloading {self.dataset_name} into {str(self.data_dir)!r} failed ({exc}): no internet here? "
                f"Download it where there is, then {where}, with --data.init_args.download false."
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
                    images, labels = np.asarray(ds.data), np.asarray(ds.targets)
                    check_images_and_labels(images, labels, f"{self.data_dir} ({split})")
                    splits[split] = (
                        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                        torch.from_numpy(labels.astype(np.int64)),
                    )
            self._check_classes(splits)
            self._splits = splits
        return self._splits

    def _check_classes(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        owner = f"{type(self).__name__} ({self.num_classes} classes)"
        for split, (_, labels) in splits.items():
            check_label_range(labels, self.num_classes, f"{self.data_dir / split}.npz", owner)
        used = int(splits["train"][1].max()) + 1
        if used < self.num_classes:
            raise ValueError(
                f"{self.data_dir}: the training labels go up to {used - 1} only, but {owner} would train a "
                f"{self.num_classes}-class output layer: are these the files of a {used}-class data set (e.g. "
                "CIFAR-10 for CIFAR-100)? Point data_dir at the right files or use the matching DataModule."
            )

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
