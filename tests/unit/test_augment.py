"""Augmented views as a pure function of (seed, row_id, view): batch-invariant bits, the crop and
flip torchvision makes, epoch draws, and the view settings' own checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from pydantic import ValidationError

from components.data.augment import (
    _FLIP_STREAM,
    _VIEW_TAG,
    Views,
    crop_boxes,
    hash_key,
    uniform,
    view_tensors,
)
from schemas.kd.augment import AugmentSpec, CropSpec, ViewSettings
from schemas.kd.components.distill import DistillConfig
from schemas.kd.components.teacher_inference import TeacherInferenceConfig
from tests.support.cli import kdorch


def images(rows: int = 120, shape: tuple[int, ...] = (3, 20, 24), seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(rows, *shape)).astype("f4"))


def test_a_rows_view_has_the_same_bits_in_any_batch() -> None:
    x, ids = images(), np.arange(5000, 5120)
    views = Views(4, AugmentSpec(), seed=3)
    drawn = views.draw(0, 2, ids)
    whole = views.tensors(x, ids, drawn)
    rng = np.random.default_rng(1)
    for size in (1, 2, 7, 64, 119):
        rows = rng.permutation(120)[:size]
        assert torch.equal(views.tensors(x[rows], ids[rows], drawn[rows]), whole[rows]), size
    # one view index for the batch, or per row: the same tensors
    assert torch.equal(views.tensors(x, ids, 2), views.tensors(x, ids, np.full(120, 2)))
    # a different seed, row_id or view index gives another view
    assert not torch.equal(Views(4, AugmentSpec(), seed=4).tensors(x, ids, drawn), whole)
    assert not torch.equal(views.tensors(x, ids + 1, drawn), whole)
    assert not torch.equal(views.tensors(x, ids, (drawn + 1) % 4), whole)


def test_views_are_torchvisions_resized_crop_and_flip() -> None:
    """The same box, resized as torchvision resizes it (bilinear, no antialias: every crop is
    enlarged to the image's size), flipped when drawn."""
    x, ids = images(60, (3, 32, 40)), np.arange(60)
    augment = AugmentSpec(crop=CropSpec(scale=(0.2, 1.0)))
    out = view_tensors(x, augment, 5, ids, 2)
    key = np.broadcast_to(hash_key(_VIEW_TAG, 5, ids, np.asarray(2)), (60,))
    top, left, h, w = crop_boxes(augment.crop, 32, 40, key)
    flips = uniform(key, _FLIP_STREAM) < 0.5
    assert 10 < flips.sum() < 50 and len(set(zip(h, w, strict=True))) > 30
    for k in range(60):
        box = (int(top[k]), int(left[k]), int(h[k]), int(w[k]))
        expected = TF.resized_crop(x[k], *box, [32, 40], antialias=False)
        expected = expected.flip(-1) if flips[k] else expected
        assert torch.allclose(out[k], expected, atol=1e-4), k


def test_crop_boxes_follow_scale_and_ratio() -> None:
    crop = CropSpec(scale=(0.3, 0.6), ratio=(0.5, 2.0))
    top, left, h, w = crop_boxes(crop, 64, 64, hash_key(9, np.arange(20_000)))
    area = h * w / 64**2
    assert ((h >= 1) & (w >= 1) & (top + h <= 64) & (left + w <= 64)).all()
    assert area.min() > 0.28 and area.max() < 0.62  # the scale range, up to rounding
    assert (w / h).min() > 0.45 and (w / h).max() < 2.2
    assert abs(np.mean(left + w / 2) - 32) < 0.5  # boxes spread evenly over the image
    # No box can fit (ratio far from the image's): torchvision's centre crop at the nearest ratio
    top, left, h, w = crop_boxes(CropSpec(scale=(1.0, 1.0), ratio=(3.0, 4.0)), 30, 30, np.arange(5))
    assert (w == 30).all() and (h == 10).all() and (top == 10).all() and (left == 0).all()


def test_views_commute_with_a_per_channel_affine() -> None:
    """Augmenting normalised rows = normalising augmented raw rows (the cache's rows are
    normalised)."""
    raw, ids = images(30, (3, 16, 16)), np.arange(30)
    mean, std = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.2, 3.0, 1.5])

    def normalised(t: torch.Tensor) -> torch.Tensor:
        return (t - mean[:, None, None]) / std[:, None, None]

    views = Views(3, AugmentSpec(crop=CropSpec(scale=(0.1, 1.0))), seed=0)
    drawn = views.draw(0, 0, ids)
    assert torch.allclose(
        views.tensors(normalised(raw), ids, drawn),
        normalised(views.tensors(raw, ids, drawn)),
        atol=1e-5,
    )


def test_epoch_draws_depend_on_seed_epoch_and_row_alone() -> None:
    views = Views(4, AugmentSpec(), seed=0)
    ids = np.arange(40_000)
    drawn = views.draw(7, 3, ids)
    assert set(np.unique(drawn)) == {0, 1, 2, 3}
    assert np.abs(np.bincount(drawn) / len(ids) - 0.25).max() < 0.01  # uniform
    assert np.array_equal(views.draw(7, 3, ids[::-1]), drawn[::-1])  # order does not matter
    assert np.mean(views.draw(7, 4, ids) == drawn) < 0.3  # another epoch: other views
    assert np.mean(views.draw(8, 3, ids) == drawn) < 0.3  # another seed too


def test_view_tensors_need_image_rows() -> None:
    with pytest.raises(ValueError, match=r"need image rows \(B, C, H, W\), got shape \[4, 13\]"):
        view_tensors(torch.zeros(4, 13), AugmentSpec(), 0, np.arange(4), 0)


@pytest.mark.parametrize("config", [TeacherInferenceConfig, DistillConfig])
def test_view_settings_refuse_an_augmentation_that_does_nothing(
    config: type[ViewSettings],
) -> None:
    for still in (
        {"crop": None, "flip": False},
        {"crop": {"scale": [1, 1], "ratio": [1, 1]}, "flip": False},
    ):
        with pytest.raises(ValidationError, match="augment` that does nothing"):
            config(views=2, augment=still)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="`augment` and `view_seed` only take effect"):
        config(augment={"flip": True}, view_seed=2)  # type: ignore[arg-type]
    assert config(views=2, augment={"crop": None}).views == 2  # type: ignore[arg-type]
    assert config(views=2, augment={"crop": {"scale": [0.5, 0.5]}, "flip": False}).views == 2  # type: ignore[arg-type]


def test_crop_ranges_are_checked() -> None:
    with pytest.raises(
        ValidationError, match=r"scale must be \[low, high\] with 0 < low <= high <= 1"
    ):
        CropSpec(scale=(0.5, 1.5))
    with pytest.raises(ValidationError, match="ratio must be"):
        CropSpec(ratio=(2.0, 1.0))
    assert AugmentSpec().describe() == (
        "random-resized crop (scale 0.08-1, ratio 0.75-1.33), horizontal flip"
    )


PIPELINE = """\
name: views
steps:
- id: data
  component: dataset
  config: {source: mnist5k}
- id: teacher
  component: train
  inputs: {data: data.dataset}
  config: {model: {arch: mnist_cnn}}
- id: logits
  component: teacher_inference
  inputs: {teacher: teacher.model, data: data.dataset}
  config:
"""


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "    views: 4\n    augment: {crop: null, flip: false}\n",
            "views: 4 with an `augment` that does nothing (every view would be the same image)",
        ),
        ("    view_seed: 3\n", "`view_seed` only take effect with `views` > 0"),
    ],
)
def test_validate_refuses_views_that_cannot_work(
    config: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE + config)
    assert kdorch("validate", str(path)) == 2
    err = capsys.readouterr().err
    assert expected in err and "steps[2] (logits).config" in err and "p.yaml:14:5" in err
    assert "Traceback" not in err
