"""Augmented views of image rows: how each view is made, and how many a step uses.

A view is a deterministic function of (``view_seed``, ``row_id``, view index): the teacher's
outputs can be cached per view (`teacher_inference`) and a student that draws a view later
regenerates the identical tensor (`components.data.augment`). See docs/caching.md, "Augmented
views with exact teacher targets".
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from schemas.base import Model


def _bounds(name: str, value: tuple[float, float], upper: float | None) -> tuple[float, float]:
    low, high = value
    if not 0 < low <= high or (upper is not None and high > upper):
        limit = f" <= {upper:g}" if upper is not None else ""
        raise ValueError(f"{name} must be [low, high] with 0 < low <= high{limit}, got {value}")
    return value


class CropSpec(Model):
    """Random-resized crop, as torchvision's ``RandomResizedCrop``: a box whose area is a
    uniform fraction ``scale`` of the image and whose aspect ratio (width / height) is
    log-uniform in ``ratio`` (ten tries; then the centre crop at the nearest allowed ratio),
    resized back to the image's own size (bilinear)."""

    scale: tuple[float, float] = Field(
        (0.08, 1.0), description="Range of the box's area as a fraction of the image's."
    )
    ratio: tuple[float, float] = Field(
        (3 / 4, 4 / 3), description="Range of the box's aspect ratio (width / height)."
    )

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _bounds("scale", value, 1.0)

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _bounds("ratio", value, None)


class AugmentSpec(Model):
    """How one augmented view of an image row is made: a random-resized crop, then a
    horizontal flip with probability 1/2. Output at the image's own size."""

    crop: CropSpec | None = Field(
        default_factory=CropSpec, description="The random-resized crop (null: no crop)."
    )
    flip: bool = Field(True, description="Flip horizontally with probability 1/2.")

    def varies(self) -> bool:
        """Whether two views of a row can differ: a flip, or a crop whose box is random (a
        range of scale or ratio, or a scale below 1, so that the box can move)."""
        crop = self.crop
        moving = crop is not None and (
            crop.scale[0] < crop.scale[1] or crop.scale[1] < 1 or crop.ratio[0] < crop.ratio[1]
        )
        return self.flip or moving

    def describe(self) -> str:
        """One line for logs and reports, e.g. 'random-resized crop (scale 0.08-1, ratio
        0.75-1.33), horizontal flip'."""
        parts = []
        if self.crop is not None:
            (s0, s1), (r0, r1) = self.crop.scale, self.crop.ratio
            parts.append(f"random-resized crop (scale {s0:g}-{s1:g}, ratio {r0:.3g}-{r1:.3g})")
        if self.flip:
            parts.append("horizontal flip")
        return ", ".join(parts) or "none"


class ViewSettings(Model):
    """``views`` augmented views per row, made as ``augment`` says, seeded by ``view_seed``."""

    views: int = Field(
        0,
        ge=0,
        description="Augmented views per row (0: the clean rows, no augmentation). Each view is "
        "a function of (view_seed, row_id, view index).",
    )
    augment: AugmentSpec = Field(
        default_factory=AugmentSpec, description="How each view is made (with views > 0)."
    )
    view_seed: int = Field(0, ge=0, description="Seeds every view's crop box and flip.")

    @model_validator(mode="after")
    def _views_need_an_augmentation(self) -> ViewSettings:
        unused = sorted({"augment", "view_seed"} & self.model_fields_set)
        if self.views == 0 and unused:
            raise ValueError(
                f"`{'` and `'.join(unused)}` only take effect with `views` > 0 (views: 0 means "
                "the clean rows): set views, or leave them out"
            )
        if self.views > 0 and not self.augment.varies():
            raise ValueError(
                f"views: {self.views} with an `augment` that does nothing (every view would be "
                "the same image): set `augment.flip: true`, or a crop whose scale or ratio is a "
                "range (e.g. crop: {scale: [0.5, 1.0]}), or views: 0"
            )
        return self

    def view_spec(self) -> tuple[int, AugmentSpec | None, int | None]:
        """(views, augment, view_seed) as an artifact records them: (0, None, None) for the
        clean rows."""
        if self.views == 0:
            return 0, None, None
        return self.views, self.augment, self.view_seed
