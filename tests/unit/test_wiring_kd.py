"""Mistakes that used to wait for the run (or pass silently), refused by `kdorch validate` from
the steps' wiring and what the dataset step promises (issue 21): a loss that needs a teacher on
a step with none, Meta-DMoE's held-out domain, teacher weights against the teachers, splits the
data lacks, a student-search space no candidate fits for the real data, a tune metric no trial
reports. Each: exit 2, the message located in the file, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import validate
from tests.support.cli import kdorch

ROOT = Path(__file__).resolve().parents[2]
META = str(ROOT / "pipelines" / "meta_dmoe.yaml")
SEARCH = str(ROOT / "pipelines" / "diswot_search.yaml")

DATA = """\
name: w
steps:
- id: data
  component: dataset
  config: {source: digits}
- id: teacher
  component: train
  inputs: {data: data.dataset}
  config: {model: {arch: mlp, hidden: [32]}}
- id: logits
  component: teacher_inference
  matrix: {batch: [64, 128]}
  inputs: {teacher: teacher.model, data: data.dataset}
  config: {batch_size: "${batch}"}
"""


def refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str, text: str | None = None
) -> str:
    """`kdorch validate` and `kdorch run` of the pipeline (``text``, or the file in ``args``):
    both exit 2 without a traceback and write nothing; the message."""
    if text is not None:
        path = tmp_path / "p.yaml"
        path.write_text(text)
        args = (str(path), *args)
    assert kdorch("validate", *args) == 2
    err = capsys.readouterr().err
    store = tmp_path / "store"
    assert kdorch("run", *args, "--storage", str(store), "--executor", "local") == 2
    assert capsys.readouterr().err == err  # the same problems, before anything runs
    assert not store.exists()
    assert "Traceback" not in err
    return err


def step(text: str) -> str:
    return DATA + text


def distill(inputs: str, config: str = "") -> str:
    """``DATA`` and a distill step 'student' with these inputs and config (YAML flow maps)."""
    text = f"- id: student\n  component: distill\n  inputs: {inputs}\n"
    return step(text + (f"  config: {config}\n" if config else ""))


def test_a_loss_that_needs_a_teacher_with_no_teacher_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = distill(
        "{data: data.dataset}", "{student: {arch: mlp}, losses: [{type: ce}, {type: kd}]}"
    )
    err = refused(tmp_path, capsys, text=text)
    assert "p.yaml:18:55: steps[3] (student).config.losses[1]" in err
    assert "losses[1] (kd) needs a teacher, but neither `logits` nor `teachers` is connected" in err
    assert "losses[0]" not in err  # ce needs no teacher
    assert "1 error in" in err


def test_a_tune_step_with_no_teacher_and_a_metric_typo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = step(
        "- id: sweep\n  component: tune\n  inputs: {data: data.dataset}\n  config:\n"
        "    distill: {student: {arch: mlp}, losses: [{type: kd}]}\n"
        '    space: {"losses[0].alpha": {uniform: [0.1, 0.9]}}\n'
        "    metric: val_acuracy\n"
    )
    err = refused(tmp_path, capsys, text=text)
    assert "steps[3] (sweep).config.distill.losses[0]" in err and "needs a teacher" in err
    assert "p.yaml:21:13: steps[3] (sweep).config.metric" in err
    assert "metric 'val_acuracy' is not reported by the trials" in err
    assert "did you mean 'val_accuracy'?" in err
    tuned = text.replace(
        "inputs: {data: data.dataset}\n  config:\n",
        'inputs: {data: data.dataset, logits: "logits[*].logits"}\n  config:\n',
    )
    for metric in ("train_kd/kl", "val_loss", "training_iteration"):
        validate_text(tmp_path, tuned.replace("val_acuracy", metric))


def validate_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    validate(path)


def test_teacher_weights_against_the_teachers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = '{data: data.dataset, logits: "logits[*].logits"}'
    weights = "{student: {arch: mlp}, teacher_weights: [1, 2, 3]}"
    err = refused(tmp_path, capsys, text=distill(inputs, weights))
    assert "steps[3] (student).config.teacher_weights" in err
    assert "teacher_weights has 3 weights for 2 teachers" in err
    validate_text(tmp_path, distill(inputs, weights.replace("[1, 2, 3]", "[1, 2]")))
    # some of the teachers may be skipped: fewer weights may fit, more never do
    skipping = weights.replace("teacher_weights", "skip_teachers_trained_on: [x], teacher_weights")
    validate_text(tmp_path, distill(inputs, skipping.replace("[1, 2, 3]", "[1]")))
    err = refused(tmp_path, capsys, text=distill(inputs, skipping))
    assert "teacher_weights has 3 weights, but only 2 teachers are connected" in err


def test_both_teacher_inputs_and_no_student(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = '{data: data.dataset, logits: "logits[64].logits", teachers: teacher.model}'
    err = refused(tmp_path, capsys, text=distill(inputs))
    assert "steps[3] (student).inputs" in err
    assert "connect either `logits` (cached teacher outputs) or `teachers`" in err
    assert "steps[3] (student).config.student" in err and "no student architecture" in err


def test_splits_and_domains_the_dataset_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DATA.replace(
        "config: {source: digits}", "config: {source: digits, splits: {fit: 0.8, check: 0.2}}"
    )
    text = text.replace("hidden: [32]}}", "hidden: [32]}, eval_split: chek, domains: [rot0]}")
    err = refused(tmp_path, capsys, text=text)
    assert "steps[1] (teacher).inputs.data" in err
    assert (
        "training reads split 'train', but dataset step 'data' (digits) has no split 'train'" in err
    )
    assert "has no split 'chek' (splits: fit, check)" in err and "did you mean 'check'?" in err
    assert "config.domains" in err and "selects domains ['rot0'], but dataset step" in err


@pytest.mark.parametrize("target", ["90", "-15", "abc", "15.0"])
def test_meta_dmoe_refuses_a_held_out_domain_the_data_lacks(
    target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(tmp_path, capsys, META, "--set", f"params.target={target}")
    held_out = f"rot{target}"
    line = f"has no domain '{held_out}'; its domains: rot0, rot15, rot30, rot45, rot60, rot75"
    for where in ("erm", "kd_experts", "aggregator", "meta"):
        assert f"({where}).config.exclude_domains[0]" in err
    assert err.count(line) == 4 and "4 errors in" in err


def test_meta_distill_eval_split_and_a_dataset_without_domains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(tmp_path, capsys, META, "--set", "steps.meta.config.eval_split=valid")
    assert "steps[7] (meta).config.eval_split" in err
    assert "has no split 'valid' (splits: train, val, test)" in err
    err = refused(tmp_path, capsys, META, "--set", "steps.data.config.domains=null")
    assert "the aggregator needs a multi-domain dataset, but dataset step 'data'" in err
    assert "meta_distill needs a multi-domain dataset" in err


def test_student_search_caps_no_candidate_meets_for_the_real_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 100 parameters fit the smallest data there is, not 28x28 MNIST digits in 10 classes
    err = refused(
        tmp_path,
        capsys,
        SEARCH,
        "--set",
        "steps.search.config.space.max_parameters=100",
        "--set",
        "steps.search.config.space.max_macs=null",
    )
    assert "steps[3] (search).config.space" in err
    assert "for inputs [1, 28, 28] and 10 classes" in err
    assert "(dataset step 'data' (mnist5k))" in err and "hint: raise max_parameters" in err


def test_the_wiring_checks_import_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom orchestrator import ValidationFailed, validate\n"
        f"try: validate({META!r}, overrides=['params.target=90'])\n"
        "except ValidationFailed as e: print('rot90' in str(e), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split() == ["True", "False"], out.stderr
