"""Small real image sources for the tests: PNG/JPEG files in class folders, written by Pillow."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def image(seed: int, size: tuple[int, int], mode: str = "RGB", level: int = 0) -> Image.Image:
    """A noisy image around grey ``level`` (0..195): classes of different levels are learnable."""
    rng = np.random.default_rng(seed)
    shape = (size[0], size[1], 3) if mode == "RGB" else size
    return Image.fromarray((rng.random(shape) * 60 + level).astype(np.uint8), mode=mode)


def encoded(img: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def write_folder(
    root: Path,
    classes: int = 3,
    per_class: int = 20,
    size: tuple[int, int] = (12, 10),
    mode: str = "RGB",
    fmt: str = "png",
) -> Path:
    """``root/c<k>/<i>.<fmt>``: ``per_class`` images of (height, width) ``size`` per class."""
    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = image(1000 * k + i, size, mode, level=k * 60)
            kind = "JPEG" if fmt in ("jpg", "jpeg") else fmt.upper()
            (root / f"c{k}" / f"{i:03d}.{fmt}").write_bytes(encoded(img, kind))
    return root


def truncate(path: Path) -> Path:
    """Cut an image file in half: a corrupt image, as a failed copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
