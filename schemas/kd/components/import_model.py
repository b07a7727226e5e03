"""The `import_model` component's models."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from schemas.base import Model
from schemas.kd.artifacts import Dataset, ModelCheckpoint
from schemas.kd.models import ModelSpec, SourceModelSpec


class ImportModelConfig(Model):
    """A model trained elsewhere: a model source spec with its `weights` file."""

    model: ModelSpec = Field(
        description="A model source (torchvision, timm or python) with `weights`; "
        "num_classes/input_shape come from the `data` input when it is connected."
    )
    seed: int = Field(0, description="Seeds a replaced head (`head: {replace: ...}`).")

    @field_validator("model")
    @classmethod
    def _source_with_weights(cls, value: ModelSpec) -> ModelSpec:
        if not isinstance(value, SourceModelSpec):
            raise ValueError(
                f"arch {value.arch!r} is a zoo model, trained by `train`; import_model takes a "
                "model source (arch: torchvision, timm or python) with `weights`"
            )
        if value.weights is None:
            raise ValueError(
                "needs `weights`: the state-dict file (.pt/.pth/.safetensors) of the model "
                "trained elsewhere"
            )
        return value


class ImportModelInputs(BaseModel):
    data: Dataset | None = Field(None, description="Fills and checks num_classes/input_shape.")


class ImportModelOutputs(BaseModel):
    model: ModelCheckpoint
