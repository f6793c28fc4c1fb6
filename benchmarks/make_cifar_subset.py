"""Write the first N train / test images of CIFAR-10 ``train.npz``/``test.npz`` into a new folder,
in the same layout (``--data.data_dir <out>`` reads it like the full set; 15000 + 2000 images ~52 MB)::

    python benchmarks/make_cifar_subset.py --src ../shared/data/cifar10 --out .device_data/cifar10_subset
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

DEFAULT_SRC = os.environ.get("LIGHTNING_SNN_CIFAR10", str(Path(__file__).resolve().parents[2] / "shared/data/cifar10"))


def make_subset(src: Path | None, out: Path, train: int, test: int, seed: int = 0) -> dict[str, int]:
    """Copy the first ``train``/``test`` images of ``src`` into ``out`` (``src=None``: random images and
    labels, for smoke tests without the data set); returns the counts."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = {}
    for split, n in (("train", train), ("test", test)):
        if n <= 0:
            raise ValueError(f"--{split} must be > 0, got {n}.")
        if src is None:
            images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
            labels = np.arange(n) % 10
        else:
            with np.load(src / f"{split}.npz") as f:
                images, labels = f["images"][:n], f["labels"][:n]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{split}.npz: expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}.")
        np.savez(out / f"{split}.npz", images=images, labels=labels.astype(np.int64))
        counts[split] = int(labels.shape[0])
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", default=DEFAULT_SRC, help=f"folder with train.npz/test.npz (default {DEFAULT_SRC})")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=int, default=15000, help="first N training images (default 15000: the GPU payload)")
    p.add_argument("--test", type=int, default=2000, help="first N test images (default 2000)")
    p.add_argument("--synthetic", action="store_true", help="random images and labels instead of --src")
    args = p.parse_args(argv)
    counts = make_subset(None if args.synthetic else Path(args.src), Path(args.out), args.train, args.test)
    kind = "synthetic" if args.synthetic else f"CIFAR-10 from {args.src}"
    print(f"wrote {args.out}: {counts['train']} train + {counts['test']} test images ({kind})")


if __name__ == "__main__":
    main()
