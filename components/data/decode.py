"""One encoded image (PNG, JPEG, ... bytes) into uint8 pixels [C, H, W], with Pillow.

The conversions are the ones torchvision's ImageFolder loader makes, so a model sees the same
pixels either way: 3 channels is Pillow's ``convert("RGB")`` (an alpha channel is dropped), 1
channel ``convert("L")`` (a 16-bit grey image keeps its top 8 bits). A resize is Pillow's
bilinear filter, antialiased when shrinking (torchvision's ``Resize`` on a PIL image); a JPEG
that shrinks is first decoded at the smallest DCT scale that is still at least the target size
(Pillow's ``draft``), which is much faster and as sharp. Pixels stay uint8 until the dataset
writes them, then they are scaled and normalised per channel (`components.data.image_build`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: Pillow modes that are one grey channel (the rest are read as RGB).
_GREY_MODES = ("1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")


class UnreadableImage(Exception):
    """Bytes that Pillow cannot read as an image (the message says why)."""


class SizeMismatch(Exception):
    """An image whose size differs from the first image's, with no `image_size` to resize to.
    Its arguments are its state, so it crosses a process boundary whole."""

    def __init__(self, size: tuple[int, int], row: int = -1):
        super().__init__(size, row)
        self.size = size  # (width, height), as Pillow says
        self.row = row  # the listing's row, once known


@dataclass(frozen=True)
class ImageShape:
    """What every decoded image becomes: ``channels`` x ``height`` x ``width``; ``resize``:
    resize to it (`image_size` given), else every image must already have that size."""

    channels: int
    height: int
    width: int
    resize: bool

    def as_list(self) -> list[int]:
        return [self.channels, self.height, self.width]

    def describe(self) -> str:
        """For the dataset's ``transform``: what was done to every image."""
        mode = "L" if self.channels == 1 else "RGB"
        size = f"{self.height}x{self.width}"
        return f"decode:{mode}" + (f";resize:{size}:bilinear" if self.resize else f";size:{size}")


def _open(data: bytes | None) -> PILImage:
    from PIL import Image, UnidentifiedImageError

    if data is None:
        raise UnreadableImage("no image (the cell is null)")
    if not data:
        raise UnreadableImage("the file is empty (0 bytes)")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as e:  # its message holds an object's address: not kept
        raise UnreadableImage("not an image Pillow can read (no known image format)") from e
    except Exception as e:  # DecompressionBombError, ...
        raise UnreadableImage(f"not an image Pillow can read ({type(e).__name__}: {e})") from e


def probe(data: bytes | None) -> tuple[int, tuple[int, int]]:
    """(channels, (height, width)) of an image from its header."""
    image = _open(data)
    with image as img:
        channels = 1 if img.mode in _GREY_MODES else 3
        return channels, (img.height, img.width)


def decode(data: bytes | None, shape: ImageShape) -> np.ndarray:
    """uint8 pixels (C, H, W) of one encoded image; `UnreadableImage` for bytes that are not a
    whole image, `SizeMismatch` for an image of another size when there is no resize."""
    from PIL import Image

    image = _open(data)
    target = (shape.width, shape.height)
    try:
        with image as img:
            if shape.resize and img.format == "JPEG":
                img.draft("L" if shape.channels == 1 else "RGB", target)
            if not shape.resize and img.size != target:
                raise SizeMismatch(img.size)
            if shape.channels == 1 and img.mode.startswith("I;16"):
                wide = np.asarray(img, dtype=np.uint16)
                img = Image.fromarray((wide >> 8).astype(np.uint8), mode="L")
            else:
                img = img.convert("L" if shape.channels == 1 else "RGB")  # decodes the pixels
    except SizeMismatch:
        raise
    except Exception as e:  # truncated or corrupt data: OSError, SyntaxError, ValueError, ...
        raise UnreadableImage(f"corrupt or truncated image ({type(e).__name__}: {e})") from e
    if img.size != target:
        img = img.resize(target, Image.Resampling.BILINEAR)
    pixels = np.asarray(img, dtype=np.uint8)
    # C-contiguous (C, H, W): a chunk of them stacks into the bytes its spill file holds.
    return pixels[None] if pixels.ndim == 2 else np.ascontiguousarray(pixels.transpose(2, 0, 1))


def read_payload(fs: Any, payload: str | bytes | None) -> bytes | None:
    """An image's bytes: a path is read through ``fs``; bytes (a table's cell) or None (a null
    cell) are the image already."""
    if isinstance(payload, str):
        data: bytes = fs.cat_file(payload)
        return data
    return payload


@dataclass
class Chunk:
    """One decoding task's result: the rows that decoded, their pixels (N, C, H, W) uint8, the
    bad rows with why, and the per-channel histogram (C, 256) of the rows asked for (``fit``)."""

    rows: np.ndarray
    pixels: np.ndarray
    bad: list[tuple[int, str]]
    histogram: np.ndarray


def decode_chunk(
    fs: Any, items: list[tuple[int, Any]], fit: list[bool], *, shape: ImageShape
) -> Chunk:
    """Decode (row, payload) items, in a thread or a worker process (it imports nothing of
    kdorch's beyond this module); unreadable images are the chunk's bad rows, a size mismatch
    raises with its row. The rows whose ``fit`` is true are counted in the histogram (the
    split the normalisation is fitted on), here, where the work is spread over the workers."""
    rows, pixels, bad = [], [], []
    histogram = np.zeros((shape.channels, 256), np.int64)
    for (row, payload), counted in zip(items, fit, strict=True):
        try:
            image = decode(read_payload(fs, payload), shape)
        except UnreadableImage as e:
            bad.append((row, str(e)))
            continue
        except OSError as e:  # removed or unreachable since it was listed
            bad.append((row, f"cannot be read ({type(e).__name__}: {e})"))
            continue
        except SizeMismatch as e:
            raise SizeMismatch(e.size, row) from None
        rows.append(row)
        pixels.append(image)
        if counted:
            for c in range(shape.channels):
                histogram[c] += np.bincount(image[c].ravel(), minlength=256)
    empty = np.zeros((0, *shape.as_list()), np.uint8)
    return Chunk(np.array(rows, np.int64), np.stack(pixels) if pixels else empty, bad, histogram)


def decode_task(
    fs: Any, task: tuple[list[tuple[int, Any]], list[bool]], *, shape: ImageShape
) -> Chunk:
    """`decode_chunk` of one (items, fit) task, as a pool maps it."""
    return decode_chunk(fs, *task, shape=shape)
