"""`--set` and profiles speak the tune spaces' path language (`schemas.engine.paths`) on the
parsed YAML: step ids or positions inside ``steps``, list items as ``[0]`` or ``.0``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import load_pipeline
from orchestrator.errors import ConfigError
from orchestrator.frontend.overrides import apply_override, apply_overrides
from schemas.engine.paths import ItemIds, PathError, format_path, parse_path, set_in_data

DATA: dict[str, Any] = {
    "name": "p",
    "steps": [
        {"id": "data", "component": "dataset", "config": {"max_rows": 100}},
        {
            "id": "teacher",
            "component": "distill",
            "config": {"epochs": 3, "losses": [{"type": "kd", "alpha": 0.5}]},
        },
    ],
}


def edited(*assignments: str) -> dict[str, Any]:
    return apply_overrides(copy.deepcopy(DATA), assignments)


@pytest.mark.parametrize(
    ("assignment", "key"),
    [
        ("steps.teacher.config.epochs=7", ("steps", 1, "config", "epochs")),
        ("steps.1.config.epochs=7", ("steps", 1, "config", "epochs")),
        ("steps[1].config.epochs=7", ("steps", 1, "config", "epochs")),
    ],
)
def test_a_step_by_id_or_position(assignment: str, key: tuple[Any, ...]) -> None:
    data = copy.deepcopy(DATA)
    path, _, value = assignment.partition("=")
    assert apply_override(data, path, int(value), shown=assignment) == key
    assert data["steps"][1]["config"]["epochs"] == 7


@pytest.mark.parametrize(
    "path",
    ["steps.teacher.config.losses[0].alpha", "steps.teacher.config.losses.0.alpha"],
)
def test_list_items_by_bracket_or_number(path: str) -> None:
    assert edited(f"{path}=0.9")["steps"][1]["config"]["losses"] == [{"type": "kd", "alpha": 0.9}]


def test_missing_mappings_are_created() -> None:
    data = edited("steps.data.config.scaling.use_gpu=true", "ray.num_cpus=2")
    assert data["steps"][0]["config"]["scaling"] == {"use_gpu": True}
    assert data["ray"] == {"num_cpus": 2}


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        (
            "steps.teachr.config.epochs=1",
            r"^--set steps.teachr.config.epochs=1: there is no step 'teachr' \(steps: data, "
            r"teacher\); did you mean 'teacher'\?$",
        ),
        (
            "steps.teacher.config.losses[2].alpha=1",
            r"index \[2\] is out of range: 'steps.teacher.config.losses' has 1 item\(s\) "
            r"\(valid: \[0\]\)$",
        ),
        ("steps.7.config.epochs=1", r"index \[7\] is out of range: 'steps' has 2 item"),
        ("steps.teacher.config.losses.x=1", r"'steps.teacher.config.losses' is a list; index it"),
        ("steps.teacher.config.epochs.x=1", r"'steps\[1\].config.epochs' holds a int, not a map"),
        ("steps.teacher.config[0]=1", r"'steps\[1\].config' is a dict, not a list; it has no \[0"),
        (
            "steps.teacher.config.optimizer[0].lr=1",
            r"'steps\[1\].config.optimizer' is not set, so it has no item \[0\]: set the whole",
        ),
        ("steps.teacher..epochs=1", r"cannot read segment ''"),
    ],
)
def test_bad_paths_say_why(assignment: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        edited(assignment)


def test_profiles_and_sets_record_where_they_came_from(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(
        yaml.safe_dump({**DATA, "profiles": {"small": {"steps.data.config.max_rows": 10}}})
    )
    setting = "steps.teacher.config.losses[0].alpha=1"
    loaded = load_pipeline(file, [setting], profile="small")
    assert loaded.source_map is not None and loaded.source_map.overrides == {
        ("steps", 0, "config", "max_rows"): "profile 'small' (steps.data.config.max_rows)",
        ("steps", 1, "config", "losses", 0, "alpha"): f"--set {setting}",
    }
    assert loaded.spec.steps[1].config["losses"] == [{"type": "kd", "alpha": 1}]


def test_the_grammar_is_shared() -> None:
    assert parse_path("steps.teacher.config.losses[0].alpha") == (
        "steps", "teacher", "config", "losses", 0, "alpha",
    )  # fmt: skip
    assert parse_path("losses.0.alpha") == ("losses", "0", "alpha")  # as written
    assert format_path(parse_path("a.0.b[1]")) == "a.0.b[1]"
    data: dict[str, Any] = {"custom": {}, "items": [{"name": "x"}]}
    assert set_in_data(data, "custom.accelerator_type:A100", 1) == (
        "custom",
        "accelerator_type:A100",
    )
    ids = {("items",): ItemIds(field="name", noun="item")}
    assert set_in_data(data, "items.x.size", 2, ids=ids) == ("items", 0, "size")
    assert data == {"custom": {"accelerator_type:A100": 1}, "items": [{"name": "x", "size": 2}]}
    with pytest.raises(PathError, match=r"^items.y: there is no item 'y' \(items: x\)$"):
        set_in_data(data, "items.y", 1, ids=ids)
