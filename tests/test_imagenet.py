"""ImageNetDataModule on a tiny generated ImageFolder: classes, transforms, loaders, calibration subset."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from lightning_snn.imagenet import IMAGENET_MEAN, IMAGENET_STD, ImageNetDataModule
from tests.imagefolder import make_image_folder

CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imagenet"), CLASSES, train_per_class=4, val_per_class=2)


def test_num_classes_is_known_at_construction(folder):
    dm = ImageNetDataModule(str(folder), num_workers=0)
    assert dm.num_classes == 3 and dm.classes == sorted(CLASSES)  # before setup: the CLI links it to the model
    assert dm.eval_batch_size == 128 and dm.num_workers == 0


def test_loaders_give_normalised_224_crops_with_labels(folder):
    dm = ImageNetDataModule(str(folder), batch_size=5, eval_batch_size=4, num_workers=0)
    dm.setup("fit")
    assert len(dm.train_set) == 12 and len(dm.test_set) == 6 and dm.val_set is dm.test_set
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 3, 224, 224) and x.dtype == torch.float32
    assert set(y.tolist()) <= {0, 1, 2}
    xs, ys = zip(*dm.test_dataloader(), strict=True)
    assert [len(b) for b in xs] == [4, 2]
    assert sorted(torch.cat(ys).tolist()) == [0, 0, 1, 1, 2, 2]
    assert torch.cat(xs).mean().abs() < 2  # normalised, not 0..255


def test_calibration_set_is_fixed_seeded_and_unaugmented(folder):
    dm = ImageNetDataModule(str(folder), num_workers=0, seed=3)
    a, b = dm.calibration_set(5, seed=1), dm.calibration_set(5, seed=1)
    assert len(a) == 5
    for i in range(5):
        (xa, ya), (xb, yb) = a[i], b[i]
        assert xa.shape == (3, 224, 224) and ya == yb
        assert torch.equal(xa, xb)  # no random crop / flip: the evaluation transform
    assert len(dm.calibration_set(None)) == 12 == len(dm.calibration_set(100))
    picks = {tuple(dm.calibration_set(5, seed=s).indices) for s in range(6)}
    assert len(picks) > 1  # the seed picks the subset
    assert tuple(dm.calibration_set(5).indices) == tuple(dm.calibration_set(5, seed=3).indices)  # default: dm.seed
    with pytest.raises(ValueError, match="calibration_samples"):
        dm.calibration_set(0)


def test_evaluation_transform_is_resize_center_crop_and_imagenet_normalisation(tmp_path):
    from PIL import Image

    root = tmp_path / "grey"
    for split in ("train", "val"):
        (root / split / "a").mkdir(parents=True)
        pixels = np.full((300, 400, 3), 128, dtype=np.uint8)
        pixels[:, :40] = 0  # a dark band the centre crop of the 256-resized image cuts off
        Image.fromarray(pixels).save(root / split / "a" / "0.png")
    dm = ImageNetDataModule(str(root), num_workers=0)
    dm.setup("test")
    x, y = dm.test_set[0]
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert x.shape == (3, 224, 224) and y == 0
    assert torch.allclose(x.mean((1, 2)), expected, atol=1e-3)


def test_subsets_for_quick_runs(folder):
    dm = ImageNetDataModule(str(folder), num_workers=0, train_samples=5, val_samples=3)
    dm.setup("fit")
    assert len(dm.train_set) == 5 and len(dm.test_set) == 3
    assert len(dm.calibration_set(None)) == 5  # calibration draws from the same training subset


def test_missing_or_inconsistent_folders_are_clear_errors(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="train/<class>"):
        ImageNetDataModule(str(tmp_path / "nowhere"))
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    shutil.rmtree(broken / "val" / "fox")
    with pytest.raises(ValueError, match="different class folders"):
        ImageNetDataModule(str(broken))


def test_the_conversion_callback_runs_on_an_image_folder(folder, tmp_path):
    """fit -> calibrate -> convert -> SNN accuracy, through the CLI, with the ImageNet module."""
    from lightning_snn.cli import main

    cli = main(
        [
            "fit",
            "--data.class_path=lightning_snn.imagenet.ImageNetDataModule",
            f"--data.init_args.data_dir={folder}",
            "--data.init_args.image_size=32",
            "--data.init_args.resize_size=36",
            "--data.init_args.num_workers=0",
            "--data.init_args.batch_size=6",
            "--model.arch=vgg16_imagenet",
            "--model.width=0.0625",
            "--model.model_kwargs={input_size: 32}",
            "--model.relu_warmup_epochs=0",
            "--trainer.max_epochs=1",
            "--trainer.logger=false",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={tmp_path}",
            "--snn.timesteps=[4,16]",
            "--snn.calibration_samples=4",
            "--snn.shift=bias",
        ]
    )
    results = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "SNNConversion").results
    assert cli.model.hparams.num_classes == 3
    assert results["num_test_images"] == 6 and results["calibration_images"] == 4
    assert set(results["snn_acc"]) == {"4", "16"}
    assert len(results["thresholds"]) == 15
