"""A tiny generated ImageFolder (train/<class>/, val/<class>/ of small PNGs) for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_image_folder(
    root: Path, classes: tuple[str, ...] = ("cat", "dog", "fox"), train_per_class: int = 4, val_per_class: int = 2
) -> Path:
    """Write random RGB PNGs of varied sizes into ``root/{train,val}/<class>/``; returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = int(rng.integers(40, 80)), int(rng.integers(40, 80))
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                pixels[..., c % 3] = 200  # a class-dependent colour, so labels are learnable
                Image.fromarray(pixels).save(folder / f"{split}_{name}_{i}.png")
    return root
