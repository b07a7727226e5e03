"""Which augmented views a distillation trains on: the logit caches' own, or the config's for
teachers run online; refused when they cannot agree or the rows are not images.

The student's side of the contract in docs/caching.md ("Augmented views with exact teacher
targets"): each epoch a row trains on one of its views (`components.data.augment.Views.draw`),
regenerated bit for bit as the teacher saw it, with the teacher's outputs of that view
(`components.training.objective`). No torch here: `kdorch validate` may import this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from components.data.view_checks import image_rows_issue
from schemas.kd.artifacts import Dataset, LogitShards
from schemas.kd.augment import AugmentSpec, ViewSettings

if TYPE_CHECKING:
    from components.data.augment import Views


def _recorded(cache: LogitShards) -> tuple[int, str, int | None]:
    augment = cache.augment.model_dump_json() if cache.augment is not None else ""
    return cache.views, augment, cache.view_seed


def training_views(cfg: ViewSettings, data: Dataset, logits: Sequence[LogitShards]) -> Views | None:
    """The views the student trains on (None: the clean rows). With logit caches, theirs (all
    caches must record the same views, and ``cfg``'s, when set, must repeat them); otherwise
    ``cfg``'s (teachers run online see the same views as the student)."""
    from components.data.augment import Views

    recorded = {_recorded(c) for c in logits}
    if len(recorded) > 1:
        raise ValueError(
            "the logit caches were computed on different views (views, augment, view_seed "
            f"differ: {sorted((v, s) for v, _, s in recorded)}): the student sees one tensor "
            "per row, so give every teacher_inference the same view settings"
        )
    if logits:
        cache = logits[0]
        asked = (cfg.views, cfg.augment.model_dump_json(), cfg.view_seed)
        if cfg.views and _recorded(cache) != asked:
            held = _describe(cache.views, cache.augment, cache.view_seed)
            raise ValueError(
                f"views: distill asks for {_describe(cfg.views, cfg.augment, cfg.view_seed)}, "
                f"but its logit cache holds {held}: leave `views`, `augment` and `view_seed` "
                "out of distill (a cache carries its own) or repeat the cache's"
            )
        if cache.views == 0:
            return None
        assert cache.augment is not None and cache.view_seed is not None
        views = Views(cache.views, cache.augment, cache.view_seed)
    elif cfg.views:
        views = Views(cfg.views, cfg.augment, cfg.view_seed)
    else:
        return None
    problem = image_rows_issue(views.count, data.feature_shape, f"dataset {data.source}")
    if problem is not None:
        raise ValueError(f"{problem}: set views: 0 for this dataset")
    return views


def _describe(views: int, augment: AugmentSpec | None, seed: int | None) -> str:
    if views == 0 or augment is None:
        return "the clean rows (views: 0)"
    return f"{views} views ({augment.describe()}, view_seed {seed})"


def view_mean(values: np.ndarray, views: int) -> np.ndarray:
    """Per row, the mean over its views of a per-view column (rows, views * width)."""
    if views == 0:
        return values
    return values.reshape(len(values), views, -1).mean(axis=1)


VIEWS_KEY = "views"
"""``model.json`` of a student distilled on augmented views: what they were (`views_record`)."""


def views_record(views: Views | None) -> dict[str, Any] | None:
    """What a distilled student's ``model.json`` says of its views (None: clean rows), so that
    a report can name the augmentation it was distilled with."""
    if views is None:
        return None
    return {
        VIEWS_KEY: {
            "views": views.count,
            "augment": views.augment.model_dump(mode="json"),
            "view_seed": views.seed,
            "describe": views.describe(),
        }
    }
