"""Hostile or odd YAML: bounded, located, never a traceback (more cases: tests/resources/bad)."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from orchestrator import load_pipeline, validate
from orchestrator.errors import ConfigError, ValidationFailed
from orchestrator.frontend import yaml_limits
from orchestrator.frontend.yaml_source import load_yaml


def write(tmp_path: Path, text: str | bytes, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def bomb(levels: int, width: int = 9) -> str:
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly_without_growing_memory(tmp_path: Path) -> None:
    path = write(tmp_path, bomb(9) + "name: x\nsteps: [{id: a, component: toy_source}]\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ValidationFailed, match="aliases expand to more than 100,000 values"):
        load_yaml(path)
    assert time.perf_counter() - start < 5
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # kB on Linux
    assert grown_mb < 100


def test_many_small_aliases_are_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_limits, "MAX_ALIASES", 5)
    text = "base: &b 1\nrefs: [" + ", ".join(["*b"] * 6) + "]\n"
    with pytest.raises(ValidationFailed, match=r"(?s)p.yaml:2:\d+: .*more than 5 aliases"):
        load_yaml(write(tmp_path, text))


def test_ordinary_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: x\n"
        "defaults: &d {count: 2, start: 1.0}\n"
        "steps:\n"
        "- {id: a, component: toy_source, config: *d}\n"
        "- {id: b, component: toy_source, config: {<<: *d, count: 5}}\n",
    )
    data, _ = load_yaml(path)
    assert data["steps"][0]["config"] == {"count": 2, "start": 1.0}
    assert data["steps"][1]["config"] == {"count": 5, "start": 1.0}


def test_set_on_an_aliased_value_changes_only_that_place(tmp_path: Path) -> None:
    # The constructor hands every alias the anchor's very object; an in-place `--set` through
    # one step would otherwise change every step that uses the alias.
    path = write(
        tmp_path,
        "name: x\nsteps:\n"
        "- {id: a, component: toy_source, config: &c {count: 2}}\n"
        "- {id: b, component: toy_source, config: *c}\n",
    )
    spec = load_pipeline(path, ["steps.a.config.count=7"]).spec
    assert [s.config["count"] for s in spec.steps] == [7, 2]


def test_deep_nesting_is_refused_at_the_limit(tmp_path: Path) -> None:
    depth = yaml_limits.MAX_DEPTH
    ok = write(tmp_path, "x: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n", "ok.yaml")
    load_yaml(ok)  # the mapping plus depth - 1 lists: exactly at the limit
    deep = write(tmp_path, "x: " + "[" * depth + "]" * depth + "\n", "deep.yaml")
    with pytest.raises(ValidationFailed, match=rf"(?s)deep.yaml:1:{depth + 3}: .*nesting deeper"):
        load_yaml(deep)


def test_ten_thousand_brackets_do_not_recurse(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nsteps: " + "[" * 10_000 + "]" * 10_000 + "\n")
    with pytest.raises(ValidationFailed, match="nesting deeper than 64 levels") as info:
        validate(path)
    assert "RecursionError" not in repr(info.value.__context__)


def test_a_value_that_contains_itself_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match=r"(?s)p.yaml:1:15: .*'\*me' refers to a value"):
        load_yaml(write(tmp_path, "a: &me [1, 2, *me]\n"))


def test_invalid_utf8_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, b"name: x\nsteps:\n- id: a\n  component: toy_source\n  x: \xc3\x28\n")
    with pytest.raises(ValidationFailed, match=r"(?s)p.yaml:5:6: .*not valid UTF-8: byte 0xc3"):
        load_yaml(path)


def test_utf8_text_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ndescription: Schüler → Lehrer\nsteps: []\n")
    assert load_yaml(path)[0]["description"] == "Schüler → Lehrer"


def test_control_character_is_located_and_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ndescription: 'a\x1b[2Jb'\n")
    with pytest.raises(ValidationFailed) as info:
        load_yaml(path)
    message = str(info.value)
    assert r"p.yaml:2:16: (yaml)" in message and r"'\x1b' (#x001b)" in message
    assert "\x1b" not in message  # the quoted line must not drive the terminal


@pytest.mark.parametrize(
    ("value", "message"),
    [("[" * 5_000, "nesting deeper than 64 levels"), (bomb(9).replace("\n", ", "), "alias bomb")],
)
def test_set_values_are_read_with_the_same_limits(tmp_path: Path, value: str, message: str) -> None:
    path = write(tmp_path, "name: x\nsteps: [{id: a, component: toy_source}]\n")
    flow = "{" + value + "}" if value.startswith("a0") else value
    with pytest.raises(ConfigError, match=message) as info:
        validate(path, overrides=[f"steps.a.config.count={flow}"])
    assert len(str(info.value)) < 1_000
