"""Bad CIFAR files and settings are refused with the file, what is wrong and what to do."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest

from lightning_snn.data import CIFAR10DataModule, CIFAR100DataModule, load_npz_split


def write_split(folder, split: str, images=None, labels=None, n: int = 20, classes: int = 10, **arrays) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) if images is None else images
    labels = np.arange(len(images)) % classes if labels is None else labels
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{split}.npz", images=images, labels=labels, **arrays)


def cifar_dir(tmp_path, classes: int = 10, **train):
    write_split(tmp_path, "train", classes=classes, **train)
    write_split(tmp_path, "test", classes=classes)
    return tmp_path


def setup_error(module_cls, folder, **kwargs) -> str:
    dm = module_cls(str(folder), download=False, num_workers=0, **kwargs)
    with pytest.raises(ValueError) as info:
        dm.setup("fit")
    return str(info.value)


def test_a_good_file_loads(tmp_path):
    dm = CIFAR10DataModule(str(cifar_dir(tmp_path)), download=False, num_workers=0)
    dm.setup("fit")
    assert len(dm.train_set) == 20 and tuple(dm.train_set[0][0].shape) == (3, 32, 32)


def test_truncated_file_names_the_file_and_the_format(tmp_path):
    cifar_dir(tmp_path)
    data = (tmp_path / "train.npz").read_bytes()
    (tmp_path / "train.npz").write_bytes(data[: len(data) // 2])
    message = setup_error(CIFAR10DataModule, tmp_path)
    assert str(tmp_path / "train.npz") in message and "uint8, [N, 32, 32, 3]" in message


def test_garbage_file_names_the_file(tmp_path):
    cifar_dir(tmp_path)
    (tmp_path / "test.npz").write_bytes(b"not a zip file at all")
    assert str(tmp_path / "test.npz") in setup_error(CIFAR10DataModule, tmp_path)


def test_other_keys_are_named(tmp_path):
    cifar_dir(tmp_path)
    np.savez(tmp_path / "train.npz", x=np.zeros((2, 32, 32, 3), np.uint8), y=np.zeros(2, np.int64))
    message = setup_error(CIFAR10DataModule, tmp_path)
    assert "['x', 'y']" in message and "'images'" in message


def test_a_single_array_file_is_refused(tmp_path):
    cifar_dir(tmp_path)
    with open(tmp_path / "train.npz", "wb") as f:  # np.save writes .npy content, whatever the name
        np.save(f, np.zeros((2, 32, 32, 3), np.uint8))
    assert "one array" in setup_error(CIFAR10DataModule, tmp_path)


@pytest.mark.parametrize(
    "images, match",
    [
        (np.random.default_rng(0).random((20, 32, 32, 3), dtype=np.float32), "float32.*\\(images \\* 255\\)"),
        (np.zeros((20, 32, 32, 1), np.uint8), "grayscale"),
        (np.zeros((20, 3, 32, 32), np.uint8), "channels-first"),
        (np.zeros((20, 28, 28, 3), np.uint8), r"\[20, 28, 28, 3\]"),
        (np.zeros((20, 32, 32), np.uint8), "expected \\[N, 32, 32, 3\\]"),
        (np.zeros((20, 32, 32, 3), np.int64), "int64.*uint8"),
    ],
)
def test_images_that_are_not_uint8_hwc_32x32_rgb_are_refused(tmp_path, images, match):
    cifar_dir(tmp_path, images=images)
    with pytest.raises(ValueError, match=match):
        load_npz_split(tmp_path, "train")


@pytest.mark.parametrize(
    "n_images, n_labels",
    [(20, 18), (18, 20)],  # 1000 images + 900 labels silently dropped 100; the reverse was an IndexError
)
def test_label_count_must_match_the_images(tmp_path, n_images, n_labels):
    images = np.zeros((n_images, 32, 32, 3), np.uint8)
    cifar_dir(tmp_path, images=images, labels=np.arange(n_labels) % 10)
    assert f"{n_images} images but {n_labels} labels" in setup_error(CIFAR10DataModule, tmp_path)


def test_float_labels_are_refused(tmp_path):
    cifar_dir(tmp_path, labels=(np.arange(20) % 10).astype(np.float32))
    assert "labels are float32" in setup_error(CIFAR10DataModule, tmp_path)


@pytest.mark.parametrize("bad", [10, -1])
def test_a_test_label_outside_the_classes_is_refused_before_training(tmp_path, bad):
    cifar_dir(tmp_path)
    labels = np.arange(20) % 10
    labels[7] = bad
    write_split(tmp_path, "test", labels=labels)
    message = setup_error(CIFAR10DataModule, tmp_path, val_split=0.2)  # with val_split it was scored as wrong
    assert f"label {bad} (image 7)" in message and "test.npz" in message


def test_cifar100_on_cifar10_files_is_refused(tmp_path):
    message = setup_error(CIFAR100DataModule, cifar_dir(tmp_path, classes=10))
    assert "go up to 9 only" in message and "100-class" in message


@pytest.mark.parametrize("train_samples", [0, -500])
def test_train_samples_must_be_positive(tmp_path, train_samples):
    with pytest.raises(ValueError, match="train_samples must be > 0"):
        CIFAR10DataModule(str(tmp_path), train_samples=train_samples)


@pytest.mark.parametrize("val_split", [-0.1, 1.5])
def test_val_split_must_be_a_fraction_or_a_count(tmp_path, val_split):
    with pytest.raises(ValueError, match="val_split"):
        CIFAR10DataModule(str(tmp_path), val_split=val_split)


def test_offline_download_says_how_to_use_local_files(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    dm = CIFAR10DataModule(str(tmp_path / "cifar10"), download=True)
    with pytest.raises(ConnectionError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "downloading CIFAR10" in message and "name resolution" in message
    assert "--data.init_args.data_dir" in message and "train.npz" in message and "download false" in message
