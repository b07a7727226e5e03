"""Loss specs: defaults from METHODS.md, field validation, and documented fields."""

from __future__ import annotations

import typing

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.kd.losses import DKDLoss, KDLoss, LossSpec, NDLoss, PLDLoss, TAIDLoss, TopKKLLoss

SPECS = TypeAdapter(list[LossSpec])


def parse(*items: dict) -> list:
    return SPECS.validate_python(list(items))


def test_defaults() -> None:
    kd, dkd, pld, nd, taid, topk = parse(
        {"type": "kd"}, {"type": "dkd"}, {"type": "pld"}, {"type": "nd"}, {"type": "taid"},
        {"type": "topk_kl"},
    )  # fmt: skip
    assert (kd.temperature, kd.alpha, kd.weight) == (4.0, 0.9, 1.0)
    assert isinstance(dkd, DKDLoss)
    assert (dkd.alpha, dkd.beta, dkd.temperature, dkd.warmup, dkd.ce_weight) == (1, 8, 4, 20, 1)
    assert isinstance(pld, PLDLoss) and pld.temperature == 1.0
    assert isinstance(nd, NDLoss) and nd.weight == 2.0
    assert isinstance(taid, TAIDLoss)
    assert (taid.t_start, taid.t_end, taid.alpha, taid.beta) == (0.4, 1.0, 5e-4, 0.99)
    assert isinstance(topk, TopKKLLoss) and topk.rule == "uniform"


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"type": "kd", "temperature": 0}, "temperature"),
        ({"type": "kd", "alpha": 1.5}, "alpha"),
        ({"type": "dkd", "beta": -1}, "beta"),
        ({"type": "ce", "label_smoothing": 1.0}, "label_smoothing"),
        ({"type": "topk_kl", "rule": "drop"}, "rule"),
        ({"type": "taid", "t_end": 1.5}, "t_end"),
        ({"type": "meal", "weight": -1}, "weight"),
        ({"type": "kd", "temprature": 2}, "temprature"),
    ],
)
def test_bad_fields_are_named(item: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        parse(item)


def test_unknown_type_and_inconsistent_taid() -> None:
    with pytest.raises(ValidationError, match=r"does not match any of the expected tags.*'kdd'"):
        parse({"type": "kdd"})
    with pytest.raises(ValidationError, match="t_start"):
        parse({"type": "taid", "t_start": 0.9, "t_end": 0.5})


def test_specs_are_frozen_values() -> None:
    spec = KDLoss()
    with pytest.raises(ValidationError):
        spec.temperature = 2.0  # type: ignore[misc]
    assert KDLoss(temperature=2) == KDLoss(temperature=2.0)


def test_every_parameter_is_described() -> None:
    union = typing.get_args(typing.get_args(LossSpec)[0])
    assert len(union) == 13
    for model in union:
        assert model.__doc__
        for name, field in model.model_fields.items():
            assert name == "type" or field.description, f"{model.__name__}.{name}"
