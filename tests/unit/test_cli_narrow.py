"""Tables in an 80-column terminal: step ids stay whole (they are what a user types next), other
columns wrap or go first; counts read as 14,538; long id lists say how many more there are."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.cli.progress import summary_table
from orchestrator.cli.tables import compact_ids, number, some_ids
from orchestrator.storage.store import ArtifactStore
from tests.support.cli import kdorch
from tests.unit.test_cli_runs import record_with

#: A matrix step with a long id (as meta_dmoe's `expert_features`) and 24 instances.
FACTORS = list(range(24))
LONG = "expert_features_of_domain"
PIPELINE = f"""\
name: narrow
steps:
- id: src
  component: toy_source
- id: {LONG}
  component: toy_scale
  matrix: {{factor: {FACTORS}}}
  inputs: {{numbers: src.numbers}}
  config: {{factor: "${{factor}}"}}
- id: total
  component: toy_gather
  inputs: {{parts: "{LONG}[*].numbers"}}
"""
IDS = ["src", *(f"{LONG}[{f}]" for f in FACTORS), "total"]


@pytest.fixture
def narrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "80")
    path = tmp_path / "narrow.yaml"
    path.write_text(PIPELINE)
    return path


def rows(text: str) -> list[str]:
    return text.splitlines()


def test_plan_keeps_step_ids_whole_at_80_columns(
    narrow: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kdorch("plan", str(narrow), "--storage", str(tmp_path / "s")) == 0
    out = capsys.readouterr().out
    assert rows(out)[0] == f"plan for {narrow}"  # a path, whole (it is not in the table)
    assert all(len(line) <= 80 for line in rows(out)[1:]), out
    firsts = [line.split()[0] for line in rows(out)[3:] if line and not line.startswith(" ")]
    assert firsts == IDS  # whole, one row each (was `expert_feature…`)
    assert "…" not in out
    # The waiting steps: every instance of a matrix step as the YAML writes them all.
    assert f"after {LONG}[*]" in " ".join(out.split())
    assert kdorch("plan", str(narrow), "--storage", str(tmp_path / "s"), "--json") == 0
    total = json.loads(capsys.readouterr().out)[-1]
    assert total["reason"] == "after " + ", ".join(sorted(IDS[1:-1]))  # --json: every id


def test_show_keeps_ids_whole_and_says_how_many_more(
    narrow: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "s")
    assert kdorch("run", str(narrow), "--storage", store, "--executor", "local") == 0
    summary = capsys.readouterr().err
    assert [line.split()[0] for line in rows(summary) if line.startswith(LONG)] == IDS[1:-1]
    assert kdorch("show", "latest", "--storage", store) == 0
    out = capsys.readouterr().out
    lines = rows(out)
    table = lines[lines.index(next(x for x in lines if x.startswith("step "))) :]
    table = table[: next(i for i, x in enumerate(table) if x.startswith("final outputs"))]
    assert all(len(line) <= 80 for line in table), out  # the paths above and below aside
    shown = [line.split()[0] for line in table if re.match(r"^(src|total|expert)", line)]
    assert shown == IDS  # never folded mid-id (was `expert_features_of_d` / `omain[0]`)
    assert kdorch("show", "latest", "nosuch", "--storage", store) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "has no step 'nosuch'; steps: src, " in err
    assert f"{LONG}[18] ... and 6 more (kdorch show 2" in err and "lists them all)" in err
    assert "Traceback" not in err


def test_counts_read_with_thousands_separators(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = record_with(tmp_path)
    report = record.steps[1].outputs["report"]
    report["metrics"]["kd"]["parameters"] = 14538.0
    record.steps[1].outputs["metrics"] = {"parameters": 14538.0, "top1": 0.9312}
    ArtifactStore(str(tmp_path)).write_run(record)
    assert kdorch("show", "latest", "report", "--storage", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "14,538" in out and "e+04" not in out and "1.454" not in out
    assert "parameters=14,538, top1=0.9312" in out  # the outputs table's one-line summary


def test_run_summary_drops_columns_before_cutting_ids(tmp_path: Path) -> None:
    record = record_with(tmp_path)
    long_id = "a_step_whose_id_is_long_on_purpose_to_fill_the_width_x"
    steps = [step.model_copy(update={"step_id": long_id}) for step in record.steps[:1]]
    console = Console(width=70, record=True)
    console.print(summary_table(record.model_copy(update={"steps": steps}), console))
    text = console.export_text()
    assert long_id in text and "…" not in text.split("\n", 1)[1]
    assert "key" not in text.split("\n")[1]  # the key went first; the id stayed whole


def test_numbers_ids_and_lists() -> None:
    assert [number(v) for v in (14538.0, 14538, 0.931234, 1234567.25, 3.0, True, "x")] == [
        "14,538",
        "14,538",
        "0.9312",
        "1,234,567.2",
        "3",
        "True",
        "x",
    ]
    assert number(float("nan")) == "nan"
    every = ["a", "b[0]", "b[1]", "b[2]", "c[x,1]", "c[x,2]"]
    assert compact_ids(["a", "b[0]", "b[1]", "b[2]", "c[x,1]"], every) == "a, b[*], c[x,1]"
    assert some_ids([str(i) for i in range(20)], "see all") == ", ".join(map(str, range(20)))
    assert some_ids([str(i) for i in range(25)], "see all").endswith("19 ... and 5 more (see all)")
