"""Augmented views that a teacher's cache and a student agree on, bit for bit.

View ``v`` of row ``r`` under seed ``s`` is a pure function of (s, r, v): its crop box and flip
come from a counter-based hash of the three (SplitMix64 over numpy uint64, one key per row,
computed for a whole batch at once: no per-row RNG objects), and the pixels from one
`torch.nn.functional.grid_sample` over the batch. `teacher_inference` computes the teacher's
outputs of every view; a student that draws view ``v`` of row ``r`` in an epoch
(`Views.draw`, a function of (training seed, epoch, row_id)) regenerates the same tensor with
the same function (`Views.tensors`) and reads the teacher's outputs of that view.

What makes a row's view independent of the batch it sits in: its parameters depend on its own
(seed, row_id, view) only; the sampling grid is built element by element (a multiply and an add
per coordinate, no matrix product whose blocking could depend on the batch size); and
``grid_sample`` computes every output pixel from its own grid point. So on one device the same
row gives the same bits in any batch (tested on CPU). A GPU's kernels round differently from
the CPU's: a cache made on GPU and a student trained on CPU agree to float32 rounding, not bits.

The crop and flip act on normalised ``x`` as they would on the raw image: a per-channel affine
map (``(raw - mean) / std``) commutes with cropping, flipping, bilinear resizing (whose weights
sum to 1) and border padding, so augmenting the stored, normalised rows is the same as
augmenting the raw images and normalising afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from schemas.kd.augment import AugmentSpec, CropSpec

_MASK = (1 << 64) - 1
_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment (the golden ratio)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
# Domain tags: a view's parameters and an epoch's draw never share a hash stream.
_VIEW_TAG, _DRAW_TAG = 0x7669657773, 0x64726177
_TRIES = 10  # torchvision's RandomResizedCrop tries ten boxes before its centre crop
_FLIP_STREAM = 2 * _TRIES + 2  # stream indices: 2t, 2t+1 per try; then i, j; then the flip


def splitmix64(state: np.ndarray) -> np.ndarray:
    """SplitMix64's output for each state (uint64, wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = np.asarray(state, dtype=np.uint64) + _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return np.asarray(z ^ (z >> np.uint64(31)))


def _as_uint64(value: int | np.ndarray) -> np.ndarray:
    if isinstance(value, int):
        return np.asarray(value & _MASK, dtype=np.uint64)
    return np.asarray(value).astype(np.int64).astype(np.uint64)  # negative ids wrap


def hash_key(*parts: int | np.ndarray) -> np.ndarray:
    """One 64-bit key per row, folding the integer ``parts`` (scalars or arrays, broadcast)
    in with one SplitMix64 round each."""
    key = np.zeros((), dtype=np.uint64)
    for part in parts:
        key = splitmix64(key ^ _as_uint64(part))
    return key


def uniform(key: np.ndarray, stream: int | np.ndarray) -> np.ndarray:
    """Number ``stream`` of each key's sequence, uniform in [0, 1) (float64, 53 bits)."""
    with np.errstate(over="ignore"):
        state = key + _as_uint64(stream) * _GAMMA
    return (splitmix64(state) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def crop_boxes(
    crop: CropSpec | None, height: int, width: int, key: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(top, left, box height, box width) per key: torchvision's RandomResizedCrop.get_params,
    with every try of every row computed at once."""
    n = len(key)
    if crop is None:
        zeros = np.zeros(n, dtype=np.int64)
        return zeros, zeros, np.full(n, height), np.full(n, width)
    tries = np.arange(_TRIES)
    (s0, s1), (r0, r1) = crop.scale, crop.ratio
    area = height * width * (s0 + uniform(key[:, None], 2 * tries) * (s1 - s0))
    log_r0, log_r1 = np.log(r0), np.log(r1)
    aspect = np.exp(log_r0 + uniform(key[:, None], 2 * tries + 1) * (log_r1 - log_r0))
    w = np.rint(np.sqrt(area * aspect)).astype(np.int64)
    h = np.rint(np.sqrt(area / aspect)).astype(np.int64)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.argmax(axis=1)  # the first try that fits
    found = fits[np.arange(n), first]
    w, h = w[np.arange(n), first], h[np.arange(n), first]
    # No try fits: the whole image, cut to the nearest allowed ratio, centred (as torchvision).
    ratio = width / height
    if ratio < r0:
        fw, fh = width, round(width / r0)
    elif ratio > r1:
        fw, fh = round(height * r1), height
    else:
        fw, fh = width, height
    w, h = np.where(found, w, fw), np.where(found, h, fh)
    top = np.floor(uniform(key, 2 * _TRIES) * (height - h + 1)).astype(np.int64)
    left = np.floor(uniform(key, 2 * _TRIES + 1) * (width - w + 1)).astype(np.int64)
    top = np.where(found, top, (height - h) // 2)
    left = np.where(found, left, (width - w) // 2)
    return top, left, h, w


def _axis(size: int) -> np.ndarray:
    """Output pixel centres in grid_sample's coordinates (align_corners=False): (2u+1)/size - 1."""
    return (2 * np.arange(size) + 1) / size - 1


def _edge(pixel: np.ndarray, size: int) -> np.ndarray:
    """The centre of ``pixel`` in grid_sample's coordinates."""
    return (2 * pixel + 1) / size - 1


def view_tensors(
    x: torch.Tensor,
    augment: AugmentSpec,
    seed: int,
    row_id: np.ndarray,
    view: np.ndarray | int,
) -> torch.Tensor:
    """View ``view`` (per row, or one for all) of each image row of ``x`` (B, C, H, W), as
    float32 on ``x``'s device: crop box resized to (H, W) bilinearly, flipped when drawn."""
    if x.dim() != 4:
        raise ValueError(f"augmented views need image rows (B, C, H, W), got shape {list(x.shape)}")
    n, _, height, width = x.shape
    key = hash_key(_VIEW_TAG, seed, np.asarray(row_id), np.asarray(view))
    key = np.broadcast_to(key, (n,))
    top, left, h, w = crop_boxes(augment.crop, height, width, key)
    flip = augment.flip & (uniform(key, _FLIP_STREAM) < 0.5)
    # The box in grid coordinates: grid = scale * (output pixel centre) + centre of the box.
    scale_x = np.where(flip, -w / width, w / width)
    centre_x = (2 * left + w) / width - 1
    scale_y, centre_y = h / height, (2 * top + h) / height - 1

    def column(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(values.astype(np.float32)).to(x.device)[:, None]

    def axis(size: int) -> torch.Tensor:
        return torch.from_numpy(_axis(size).astype(np.float32)).to(x.device)[None, :]

    # One multiply and one add per coordinate, element by element: no batched matrix product
    # (affine_grid), whose rounding could depend on how many rows share the batch. Clamped to
    # the box's outer pixel centres, so that (as torchvision's resized_crop) no pixel outside
    # the box bleeds in at its edges.
    gx = column(scale_x) * axis(width) + column(centre_x)  # (B, W)
    gy = column(scale_y) * axis(height) + column(centre_y)  # (B, H)
    gx = torch.minimum(
        torch.maximum(gx, column(_edge(left, width))), column(_edge(left + w - 1, width))
    )
    gy = torch.minimum(
        torch.maximum(gy, column(_edge(top, height))), column(_edge(top + h - 1, height))
    )
    grid = torch.stack(
        (gx[:, None, :].expand(n, height, width), gy[:, :, None].expand(n, height, width)), dim=-1
    )
    return F.grid_sample(
        x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


@dataclass(frozen=True)
class Views:
    """``count`` augmented views of every row, made by ``augment`` under ``seed``."""

    count: int
    augment: AugmentSpec
    seed: int

    def tensors(self, x: torch.Tensor, row_id: np.ndarray, view: np.ndarray | int) -> torch.Tensor:
        """The view tensors (`view_tensors`); ``view`` per row or one for the batch."""
        return view_tensors(x, self.augment, self.seed, row_id, view)

    def draw(self, seed: int, epoch: int, row_id: np.ndarray) -> np.ndarray:
        """The view each row trains on in ``epoch`` of a run seeded ``seed``: uniform over the
        ``count`` views, a function of (seed, epoch, row_id) alone (not of the batch, the
        worker or the shuffle)."""
        key = hash_key(_DRAW_TAG, seed, epoch, np.asarray(row_id))
        return (key % np.uint64(self.count)).astype(np.int64)

    def describe(self) -> str:
        """One line for logs and reports."""
        return f"{self.count} views: {self.augment.describe()} (view_seed {self.seed})"
