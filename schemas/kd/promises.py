"""What a step's output will be, known from its config before anything runs.

A component says it with `orchestrator.Component.promise` and its consumers read it in their
`check_wiring` (`kdorch validate` runs both). Each field is what is known; None is unknown, and
an unknown fact is never held against a consumer.
"""

from __future__ import annotations

from pydantic import Field

from schemas.base import Model


class DatasetPromise(Model):
    """The `Dataset` a dataset step will write, as far as its config tells."""

    source: str = Field(description="Where the rows come from, for messages ('mnist5k').")
    splits: list[str] | None = Field(None, description="Split names, in order.")
    domains: list[str] | None = Field(
        None, description="Domain names ([] for a dataset without domains)."
    )
    feature_shape: list[int] | None = Field(None, description="Shape of one example.")
    num_classes: int | None = None
