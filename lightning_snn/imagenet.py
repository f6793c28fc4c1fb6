"""ImageNet (or any ImageFolder data set) for conversion experiments.

The folder layout is torchvision's ImageFolder, one subfolder per class in each split::

    data_dir/train/<class>/*.JPEG
    data_dir/val/<class>/*.JPEG

(the official validation tarball is flat: sort it into class folders first, e.g. with the
``valprep.sh`` script that the PyTorch ImageNet example points to). Training uses the
standard ``RandomResizedCrop(224)`` + horizontal flip; validation, test and calibration use
``Resize(256)`` + ``CenterCrop(224)``; both normalise with the ImageNet mean and std. As in
the paper (and as for CIFAR), validation and test use the ``val`` split.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from lightning_snn.data import ConversionDataModule, check_loader_settings, seeded_subset

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPLITS = ("train", "val")


def class_folders(split_dir: Path) -> list[str]:
    """Sorted class-folder names of one split (ImageFolder's class order)."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


class ImageNetDataModule(ConversionDataModule):
    """ImageFolder ``train/`` and ``val/`` splits with the standard ImageNet transforms.

    Offers the interface of :class:`lightning_snn.data.CIFARDataModule` that the conversion
    callback and the CLI use: ``num_classes`` (counted from the class folders when the
    module is built, so the CLI can link it to the model), ``eval_batch_size``,
    ``num_workers``, ``test_set`` and :meth:`calibration_set`.

    Args:
        data_dir: the folder holding ``train/`` and ``val/``.
        batch_size: training batch size (evaluation uses ``eval_batch_size``).
        eval_batch_size: batch size of validation, test and calibration loaders.
        num_workers: DataLoader worker processes (JPEG decoding is the bottleneck: use many).
        image_size: crop size (224 for the standard VGG-16).
        resize_size: shorter side before the centre crop of evaluation images (256).
        train_samples: use a fixed, seeded random subset of N training images (quick runs).
        val_samples: use a fixed, seeded random subset of N validation images (quick runs).
        seed: seed of those subsets and of the calibration subset.
    """

    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(
        self,
        data_dir: str = "data/imagenet",
        batch_size: int = 128,
        eval_batch_size: int = 128,
        num_workers: int = 8,
        image_size: int = 224,
        resize_size: int = 256,
        train_samples: int | None = None,
        val_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_loader_settings(batch_size, eval_batch_size, train_samples=train_samples, val_samples=val_samples)
        if not 0 < image_size <= resize_size:
            raise ValueError(f"need 0 < image_size <= resize_size, got {image_size} and {resize_size}.")
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers
        self.image_size, self.resize_size = image_size, resize_size
        self.train_samples, self.val_samples, self.seed = train_samples, val_samples, seed
        self.classes = self._check_folders()
        self.num_classes = len(self.classes)

    def _check_folders(self) -> list[str]:
        missing = [s for s in SPLITS if not (self.data_dir / s).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"ImageNet folder(s) {[str(self.data_dir / s) for s in missing]} not found: --data.init_args.data_dir "
                "must hold train/<class>/*.JPEG and val/<class>/*.JPEG (sort the official validation images "
                "into class folders first)."
            )
        classes = {s: class_folders(self.data_dir / s) for s in SPLITS}
        if not classes["train"]:
            raise FileNotFoundError(f"{self.data_dir / 'train'} has no class folders (expected train/<class>/*.JPEG).")
        if classes["train"] != classes["val"]:
            only_train = sorted(set(classes["train"]) - set(classes["val"]))[:5]
            only_val = sorted(set(classes["val"]) - set(classes["train"]))[:5]
            raise ValueError(
                f"train/ and val/ of {self.data_dir} have different class folders (only in train: {only_train}, "
                f"only in val: {only_val}); labels would not match. Give both splits the same class folders."
            )
        return classes["train"]

    # ---- transforms ----------------------------------------------------------------------
    def train_transform(self):
        from torchvision import transforms as T

        return T.Compose(
            [
                T.RandomResizedCrop(self.image_size),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(self.mean, self.std),
            ]
        )

    def eval_transform(self):
        from torchvision import transforms as T

        return T.Compose(
            [
                T.Resize(self.resize_size),
                T.CenterCrop(self.image_size),
                T.ToTensor(),
                T.Normalize(self.mean, self.std),
            ]
        )

    # ---- data sets -----------------------------------------------------------------------
    def _folder(self, split: str, transform):
        from torchvision.datasets import ImageFolder

        return ImageFolder(str(self.data_dir / split), transform=transform)

    def _train_indices(self, n_train: int) -> list[int]:
        if self.train_samples is None or self.train_samples >= n_train:
            return list(range(n_train))
        gen = torch.Generator().manual_seed(self.seed)
        return torch.randperm(n_train, generator=gen)[: self.train_samples].sort().values.tolist()

    def setup(self, stage: str | None = None) -> None:
        train = self._folder("train", self.train_transform())
        if len(train) == 0:
            raise FileNotFoundError(f"no images found under {self.data_dir / 'train'}.")
        self._train_idx = self._train_indices(len(train))
        self.train_set = Subset(train, self._train_idx) if len(self._train_idx) < len(train) else train
        self.test_set = seeded_subset(self._folder("val", self.eval_transform()), self.val_samples, self.seed)
        self.val_set = self.test_set

    def _calibration_base(self) -> Dataset:
        # the training images with the evaluation (un-augmented) transform
        return Subset(self._folder("train", self.eval_transform()), self._train_idx)
