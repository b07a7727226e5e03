"""The student-search schema (messages), the caps check of `kdorch validate`, candidates,
evolution and random search."""

from __future__ import annotations

import itertools
import math
import random
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

from components.models.profile import count_parameters, estimate_flops
from components.models.zoo import build_model
from components.search.candidates import Candidate, CandidateSpace, SearchSpaceError
from components.search.diswot import DiswotScorer
from components.search.evolution import random_search, regularized_evolution, run_search
from components.search.student_search import StudentSearch
from orchestrator import ValidationFailed, validate
from schemas.kd.components import student_search as schema
from schemas.kd.components.student_search import SearchSettings, SearchSpace, StudentSearchConfig
from schemas.kd.models import MnistCNNSpec

MNIST = (1, 12, 12)  # small images keep the tests fast


def example() -> dict[str, object]:
    """The config the schema module's docstring shows (its indented block)."""
    doc = schema.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    return yaml.safe_load(block)


def test_the_documented_example_parses_and_round_trips() -> None:
    cfg = StudentSearchConfig.model_validate(example())
    assert cfg.space.resnet_cifar is not None and cfg.space.resnet_cifar.kernel_size == [3]
    assert cfg.validation is not None and cfg.validation.sample == 8
    assert StudentSearch.check_config(cfg) == []
    space = CandidateSpace(cfg.space, input_shape=(1, 28, 28), num_classes=10)
    assert space.size() == 12 + 18 + 6
    dumped = yaml.safe_dump(cfg.model_dump(mode="json"))
    assert StudentSearchConfig.model_validate(yaml.safe_load(dumped)) == cfg
    mlp = SearchSpace.model_validate({"mlp": {"hidden_width": [256, 32, 64], "depth": [2, 1]}}).mlp
    assert mlp is not None and mlp.hidden_width == [32, 64, 256] and mlp.depth == [1, 2]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"resnet_cifar": {"depth": [8, 10], "width": [8]}},
            r"resnet_cifar\.depth: .*10 \(depth must be 6n\+2.*nearest: 8 or 14",
        ),
        (
            {"mnist_cnn": {"width": [8], "depth": [3], "kernel_size": [3, 4]}},
            r"mnist_cnn\.kernel_size: .*4 \(must be odd",
        ),
        (
            {"resnet_cifar": {"depth": [8], "width": [8], "kernel_size": [2]}},
            r"resnet_cifar\.kernel_size: .*2 \(must be odd",
        ),
        (
            {"mnist_cnn": {"width": [8], "depth": [1, 9]}},
            r"mnist_cnn\.depth: .*1 \(.*greater than or equal to 2\), "
            r"9 \(.*less than or equal to 8",
        ),
        (
            {"mnist_cnn": {"width": [0], "depth": [2]}},
            r"mnist_cnn\.width: .*0 \(.*greater than or equal to 1",
        ),
        (
            {"mlp": {"hidden_width": [32], "depth": [0]}},
            r"mlp\.depth: .*0 \(an MLP needs at least one hidden layer",
        ),
        (
            {"mlp": {"hidden_width": [32, 32], "depth": [1]}},
            r"mlp\.hidden_width: values repeat \(\[32\]\)",
        ),
        ({"mlp": {"hidden_width": [], "depth": [1]}}, r"hidden_width\n.*at least 1 item"),
        ({"mlp": {"widths": [32], "depth": [1]}}, r"mlp\.widths\n.*Extra inputs are not permitted"),
        ({}, r"names no architecture; give at least one of mlp, mnist_cnn, resnet_cifar"),
    ],
)
def test_space_validation_messages(space: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SearchSpace.model_validate(space)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {
                "mlp": {"hidden_width": [32, 64], "depth": [2]},
                "resnet_cifar": {"depth": [8], "width": [4]},
                "max_parameters": 500,
            },
            r"^no candidate fits under the caps, whatever the dataset: the smallest mlp "
            r"\(hidden_width=32, depth=2\) has at least 1,186 parameters > max_parameters 500; "
            r"the smallest resnet_cifar \(depth=8, width=4, kernel_size=3\) has at least 5,006 "
            r"parameters > max_parameters 500\. Raise max_parameters/max_macs or allow smaller "
            r"knob values\.$",
        ),
        (
            {"mnist_cnn": {"width": [4], "depth": [2]}, "max_macs": 10},
            r"at least [\d,]+ MACs > max_macs 10",
        ),
    ],
)
def test_caps_no_dataset_can_meet_are_a_config_issue(
    space: dict[str, object], message: str
) -> None:
    config = StudentSearchConfig.model_validate({"space": space})  # the schema lets it pass
    [issue] = StudentSearch.check_config(config)
    assert issue.field == "space" and issue.hint is None
    assert re.search(message, issue.message), issue.message
    fits = {**space, "max_parameters": None, "max_macs": None}
    assert StudentSearch.check_config(StudentSearchConfig.model_validate({"space": fits})) == []


PIPELINE = Path(__file__).parents[2] / "pipelines" / "diswot_search.yaml"


def test_validate_refuses_caps_no_dataset_can_meet_without_torch() -> None:
    cap = "steps.search.config.space.max_macs=10"
    with pytest.raises(ValidationFailed) as failed:
        validate(PIPELINE, overrides=[cap])
    report = str(failed.value)
    assert "diswot_search.yaml:" in report and "steps[3] (search).config.space" in report
    assert (
        "the smallest mlp (hidden_width=16, depth=1) has at least 48 MACs > max_macs 10" in report
    )
    code = (
        "import sys; from orchestrator import ValidationFailed, validate\n"
        f"try: validate({str(PIPELINE)!r}, overrides=[{cap!r}])\n"
        "except ValidationFailed: print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"population": 4, "sample_size": 5, "num_candidates": 10},
            r"sample_size \(5\) is larger than population \(4\)",
        ),
        (
            {"population": 50, "num_candidates": 20},
            r"population \(50\) is larger than num_candidates \(20\)",
        ),
        (
            {"population": 4, "children_per_round": 5, "sample_size": 2},
            r"children_per_round \(5\) is larger",
        ),
        (
            {"strategy": "random", "sample_size": 3},
            r"sample_size: only used with `strategy: evolution`",
        ),
        ({"strategy": "annealing"}, r"Input should be 'evolution' or 'random'"),
        ({"batch_size": 1}, r"batch_size\n.*greater than or equal to 2"),
    ],
)
def test_settings_validation_messages(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SearchSettings.model_validate(settings)


def test_validation_block_needs_enough_candidates() -> None:
    data = example()
    data["validation"]["sample"] = 101  # type: ignore[index]
    with pytest.raises(
        ValidationError,
        match=r"validation.sample \(101\) is larger than search.num_candidates \(100\)",
    ):
        StudentSearchConfig.model_validate(data)


def small_space(**caps: int) -> SearchSpace:
    return SearchSpace.model_validate(
        {
            "mlp": {"hidden_width": [8, 16, 32, 64], "depth": [1, 2, 3]},
            "mnist_cnn": {"width": [2, 4, 8], "depth": [2, 3, 4], "kernel_size": [3, 5]},
            **caps,
        }
    )


CAPS = {"max_parameters": 30_000, "max_macs": 150_000}


def test_candidates_are_valid_specs_under_the_caps() -> None:
    space = CandidateSpace(small_space(**CAPS), input_shape=MNIST, num_classes=10)
    feasible = space.enumerate()
    assert 0 < len(feasible) < space.size()
    for candidate in feasible:
        assert candidate.parameters <= CAPS["max_parameters"] and candidate.macs <= CAPS["max_macs"]
        model = build_model(candidate.spec)  # as is
        assert count_parameters(model) == candidate.parameters
        assert estimate_flops(model, MNIST) == candidate.macs
        assert model(torch.zeros(2, *MNIST)).shape == (2, 10)
    cnn = space.candidate("mnist_cnn", {"width": 4, "depth": 3, "kernel_size": 5})
    assert cnn.spec == MnistCNNSpec(
        width=4, depth=3, kernel_size=5, num_classes=10, input_shape=MNIST
    )
    assert cnn.key == "mnist_cnn(width=4, depth=3, kernel_size=5)"
    assert cnn.to_dict()["spec"]["arch"] == "mnist_cnn"
    with pytest.raises(ValueError, match="not a point of the space"):
        space.candidate("mnist_cnn", {"width": 5, "depth": 3, "kernel_size": 5})


def test_a_dataset_too_big_for_the_caps_is_refused() -> None:
    space = small_space(max_macs=50_000)  # fits tiny inputs, not 3x64x64 images
    CandidateSpace(space, input_shape=(4,), num_classes=2)
    with pytest.raises(
        SearchSpaceError, match=r"no candidate fits .*max_macs=50000.*\[3, 64, 64\]"
    ):
        CandidateSpace(space, input_shape=(3, 64, 64), num_classes=10)


def test_mutation_changes_exactly_one_knob_and_respects_the_caps() -> None:
    space = CandidateSpace(small_space(**CAPS), input_shape=MNIST, num_classes=10)
    rng = random.Random(0)
    for _ in range(40):
        parent = space.sample(rng)
        child = space.mutate(parent, rng)
        assert child is not None and child.arch == parent.arch
        changed = [k for (k, a), (_, b) in zip(parent.knobs, child.knobs, strict=True) if a != b]
        assert len(changed) == 1
        assert space.fits(child)
    lonely = CandidateSpace(
        SearchSpace.model_validate({"mlp": {"hidden_width": [8], "depth": [1]}}),
        input_shape=MNIST,
        num_classes=10,
    )
    assert lonely.mutate(lonely.sample(rng), rng) is None


class Recorder:
    """A deterministic fake score (prefers mid-sized models) that records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, candidates: Sequence[Candidate]) -> list[float]:
        self.calls.append([c.key for c in candidates])
        return [-abs(math.log(c.parameters / 8_000)) for c in candidates]


def keys(result: object) -> list[str]:
    return [e.candidate.key for e in result.history]  # type: ignore[attr-defined]


def test_evolution_is_seeded_capped_and_scores_each_candidate_once() -> None:
    space = CandidateSpace(small_space(**CAPS), input_shape=MNIST, num_classes=10)
    recorder = Recorder()
    result = regularized_evolution(
        space, recorder, num_candidates=40, population=8, sample_size=3, seed=7
    )
    assert len(result.history) == 40 and [e.index for e in result.history] == list(range(40))
    assert all(space.fits(e.candidate) for e in result.history)
    scored = list(itertools.chain.from_iterable(recorder.calls))
    assert len(scored) == len(set(scored)) == len(result.unique())
    assert len(recorder.calls[0]) <= 8 and all(len(call) == 1 for call in recorder.calls[1:])
    for e in result.history[8:]:
        assert e.origin == "mutation" and e.parent is not None and e.parent < e.index
    assert result.best.score == max(e.score for e in result.history)
    assert result.top(3)[0] == result.best and len({e.candidate for e in result.top(3)}) == 3
    again = regularized_evolution(
        space, Recorder(), num_candidates=40, population=8, sample_size=3, seed=7
    )
    other = regularized_evolution(
        space, Recorder(), num_candidates=40, population=8, sample_size=3, seed=8
    )
    assert keys(again) == keys(result) and keys(other) != keys(result)
    # the tournament favours good parents: later children beat the initial population
    first = sum(e.score for e in result.history[:8]) / 8
    last = sum(e.score for e in result.history[-8:]) / 8
    assert last > first


def test_evolution_rounds_score_children_in_batches() -> None:
    space = CandidateSpace(small_space(**CAPS), input_shape=MNIST, num_classes=10)
    recorder = Recorder()
    settings = SearchSettings(
        num_candidates=23, population=8, sample_size=2, children_per_round=4, seed=1
    )
    seen = []
    result = run_search(space, recorder, settings, on_evaluated=seen.append)
    assert len(result.history) == 23 and seen == list(result.history)
    assert len(recorder.calls) >= 2 and max(len(c) for c in recorder.calls[1:]) <= 4


def test_random_search_is_seeded_distinct_and_capped() -> None:
    space = CandidateSpace(small_space(**CAPS), input_shape=MNIST, num_classes=10)
    recorder = Recorder()
    result = random_search(space, recorder, num_candidates=12, seed=3)
    assert len(recorder.calls) == 1 and len(result.history) == 12
    assert len(set(keys(result))) == 12 and all(space.fits(e.candidate) for e in result.history)
    assert keys(random_search(space, Recorder(), num_candidates=12, seed=3)) == keys(result)
    everything = random_search(space, Recorder(), num_candidates=1000, seed=3)
    assert sorted(keys(everything)) == sorted(c.key for c in space.enumerate())
    settings = SearchSettings(strategy="random", num_candidates=12, seed=3)
    assert keys(run_search(space, Recorder(), settings)) == keys(result)


def test_nan_scores_rank_last() -> None:
    space = CandidateSpace(small_space(), input_shape=MNIST, num_classes=10)
    result = random_search(
        space,
        lambda cs: [math.nan if c.arch == "mlp" else 1.0 for c in cs],
        num_candidates=10,
        seed=0,
    )
    assert {e.score for e in result.history if e.candidate.arch == "mlp"} == {-math.inf}
    assert result.best.candidate.arch == "mnist_cnn"


def test_tiny_real_search_against_a_teacher() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, *MNIST, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    teacher = MnistCNNSpec(width=8, depth=4, num_classes=10, input_shape=MNIST)
    space = CandidateSpace(small_space(**CAPS), input_shape=MNIST, num_classes=10)
    scorer = DiswotScorer(teacher, x, y, seed=0)
    settings = SearchSettings(num_candidates=24, population=8, sample_size=3, seed=0)
    result = run_search(space, scorer, settings)
    again = run_search(space, DiswotScorer(teacher, x, y, seed=0), settings)
    assert [(e.candidate.key, e.score) for e in again.history] == [
        (e.candidate.key, e.score) for e in result.history
    ]
    assert all(space.fits(e.candidate) and math.isfinite(e.score) for e in result.history)
    assert set(result.best.terms) == {"score", "semantic", "relation"}
    assert result.best.score == pytest.approx(
        -(result.best.terms["semantic"] + result.best.terms["relation"])
    )
