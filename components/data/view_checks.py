"""Checks of augmented-view settings against the rows they would augment: at validate, on the
dataset a step's `data` input promises (`view_wiring_issues`, in `check_wiring`); at run, on
the dataset itself (`image_rows_issue`). No torch here: `kdorch validate` imports this."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from schemas.kd.augment import ViewSettings

if TYPE_CHECKING:
    from orchestrator.component import ConfigIssue, Wiring


def image_rows_issue(views: int, shape: Sequence[int], where: str) -> str | None:
    """Why ``views`` cannot apply to rows of ``shape`` from ``where`` (None: they can, or no
    views): a view crops and flips an image [C, H, W]."""
    if views == 0 or len(shape) == 3:
        return None
    return (
        f"views: {views} needs image rows [C, H, W], but {where} has rows of shape "
        f"{list(shape)} (flat features cannot be cropped or flipped)"
    )


def view_wiring_issues(cfg: ViewSettings, wiring: Wiring) -> list[ConfigIssue]:
    """`views` on a dataset whose promised rows are not images, located at ``views``."""
    from components.data.promise import PromisedData
    from orchestrator.component import ConfigIssue

    data = PromisedData.of(wiring)
    if data is None or data.promise.feature_shape is None:
        return []
    problem = image_rows_issue(cfg.views, data.promise.feature_shape, data.where)
    return [ConfigIssue(problem, "views", "set views: 0 for this dataset")] if problem else []
