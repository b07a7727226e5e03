"""The base model every kdorch schema derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Frozen, strict-about-unknown-fields base for all kdorch schemas.

    Frozen because specs, configs and artifact references are values: they are hashed into
    cache keys and shared between steps, so nothing may change them after construction.
    Unknown fields are rejected so that a typo in YAML is an error, not a silently ignored key.
    Non-finite floats (YAML's ``.inf``, ``.nan``) are refused: in a config they are a mistake
    that surfaces only as a NaN loss or a blank image at run time. A field that means them says
    so with ``Field(allow_inf_nan=True)``, and a model of measured values (where a NaN can be a
    result) with ``model_config = ConfigDict(allow_inf_nan=True)``.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )
