"""The student_search component for real on tiny data: a search whose choice trains in distill,
its ranking, baselines and validation mode; Ray-parallel scoring equals in-process scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from components.artifacts.datasets import read_split
from components.search.candidates import CandidateSpace
from components.search.diswot import DiswotScorer
from components.search.evolution import run_search
from components.search.parallel import ParallelScorer
from components.training.distill import Distill
from orchestrator import Pipeline, ValidationFailed, run, validate
from orchestrator.storage.store import ArtifactStore
from schemas.kd.artifacts import Dataset, ModelCheckpoint, SearchRanking
from schemas.kd.components.distill import DistillConfig, DistillInputs
from schemas.kd.components.student_search import SearchSettings, SearchSpace
from schemas.kd.models import MLPSpec, MnistCNNSpec, ModelSpecValue

SPACE = {
    "mlp": {"hidden_width": [8, 16, 32, 64], "depth": [1, 2]},
    # BatchNorm: the distillations of the validation test learn faster with it at this size
    "mnist_cnn": {"width": [4, 8], "depth": [2, 3], "kernel_size": [3, 5], "norm": "batch"},
    "max_parameters": 3000,
    "max_macs": 60000,
}


def search_pipeline(validation: dict[str, object] | None = None) -> Pipeline:
    p = Pipeline("tiny-search")
    data = p.add("data", "dataset", config={"source": "digits", "max_rows": 600})
    teacher = p.add(
        "teacher",
        "train",
        inputs={"data": data.dataset},
        config={"model": {"arch": "mlp", "hidden": [64]}, "epochs": 3, "batch_size": 32},
    )
    config: dict[str, object] = {
        "space": SPACE,
        "search": {"num_candidates": 14, "population": 6, "sample_size": 3, "batch_size": 32},
    }
    if validation is not None:
        config["validation"] = validation
    search = p.add(
        "search",
        "student_search",
        inputs={"data": data.dataset, "teacher": teacher.model},
        config=config,
    )
    p.add(
        "student",
        "distill",  # online teacher: no logit cache (and no Ray Data) needed
        inputs={"data": data.dataset, "teachers": teacher.model, "student": search.student},
        config={"epochs": 12, "batch_size": 32, "optimizer": {"lr": 0.01}},
    )
    return p


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    store = tmp_path_factory.mktemp("search") / "store"
    p = search_pipeline(validation={"sample": 3, "epochs": 1, "batch_size": 32})
    record = run(p.spec, storage=str(store), executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    return store, record


def test_the_chosen_spec_trains_in_distill(searched: tuple[Path, object]) -> None:
    _, record = searched
    outputs = record.step("search").outputs  # type: ignore[attr-defined]
    chosen = ModelSpecValue.model_validate(outputs["student"]).root
    student = record.step("student").outputs  # type: ignore[attr-defined]
    model = ModelCheckpoint.model_validate(student["model"])
    assert model.model == chosen  # distill trained exactly the spec the search chose
    history = student["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert student["metrics"]["val_accuracy"] > 0.3  # ten classes: chance is 0.1
    assert outputs["ranking"]["best"] == _key(chosen)


def _key(spec: object) -> str:
    if isinstance(spec, MLPSpec):
        return f"mlp(hidden_width={spec.hidden[0]}, depth={len(spec.hidden)})"
    assert isinstance(spec, MnistCNNSpec)
    return f"mnist_cnn(width={spec.width}, depth={spec.depth}, kernel_size={spec.kernel_size})"


def test_ranking_is_sorted_capped_and_the_baselines_fit(searched: tuple[Path, object]) -> None:
    store, record = searched
    outputs = record.step("search").outputs  # type: ignore[attr-defined]
    ranking = SearchRanking.model_validate(outputs["ranking"])
    table = pq.read_table(store / ranking.path / "ranking.parquet").to_pylist()
    assert len(table) == ranking.candidates > 1 and ranking.evaluations == 14
    scores = [row["score"] for row in table]
    assert scores == sorted(scores, reverse=True)
    assert [row["rank"] for row in table] == list(range(1, len(table) + 1))
    assert len({row["key"] for row in table}) == len(table)
    for row in table:
        assert row["parameters"] <= SPACE["max_parameters"] and row["macs"] <= SPACE["max_macs"]
        assert row["score"] == pytest.approx(-(row["semantic"] + row["relation"]))
        assert json.loads(row["spec"])["arch"] == row["arch"]
    history = json.loads((store / ranking.path / "history.json").read_text())
    assert len(history) == 14 and {h["origin"] for h in history} <= {"random", "mutation"}
    metrics = outputs["metrics"]
    assert metrics["largest_parameters"] <= SPACE["max_parameters"]
    assert metrics["largest_parameters"] >= max(row["parameters"] for row in table)
    assert metrics["random_parameters"] <= SPACE["max_parameters"]
    largest = ModelSpecValue.model_validate(outputs["largest"]).root
    # the most parameters under both caps: 2,650 (mlp 32x1: 2,410; mlp 32x2: 3,466 > 3,000)
    assert _key(largest) == "mnist_cnn(width=4, depth=3, kernel_size=5)"


def test_validation_mode_reports_correlations_and_plots(searched: tuple[Path, object]) -> None:
    store, record = searched
    validation = record.step("search").outputs["validation"]  # type: ignore[attr-defined]
    assert validation["sample"] == 3
    correlations = validation["correlations"]
    assert set(correlations) == {"score", "semantic", "relation", "parameters", "macs"}
    assert -1 <= correlations["score"]["kendall_tau"] <= 1 and correlations["score"]["n"] == 3
    folder = store / validation["path"]
    document = json.loads((folder / "validation.json").read_text())
    assert len(document["candidates"]) == 3
    assert all(0 <= c["accuracy"] <= 1 for c in document["candidates"])
    assert (folder / "scatter_score.png").read_bytes()[:4] == b"\x89PNG"


def test_a_second_run_reuses_the_search(searched: tuple[Path, object]) -> None:
    store, first = searched
    p = search_pipeline(validation={"sample": 3, "epochs": 1, "batch_size": 32})
    again = run(p.spec, storage=str(store), executor="local")
    assert {s.status.value for s in again.steps} == {"cached"}
    assert again.step("search").outputs["student"] == first.step("search").outputs["student"]  # type: ignore[attr-defined]


def test_the_search_feeds_distill_but_not_a_wrong_port() -> None:
    validate(search_pipeline().spec)  # student_search.student -> distill.student type-checks
    p = search_pipeline()
    p.add(
        "wrong",
        "distill",
        inputs={"data": "data.dataset", "init": "search.student"},
        config={"student": {"arch": "mlp"}},
    )
    with pytest.raises(ValidationFailed, match="init"):
        validate(p.spec)


def test_distill_needs_a_student_from_config_or_input() -> None:
    data = Dataset(path="d", splits={"train": 10}, feature_shape=[4], num_classes=2, source="toy")
    with pytest.raises(ValueError, match=r"set `config.student`.*connect the `student` input"):
        Distill(DistillConfig()).student_spec(DistillInputs(data=data))
    given = ModelSpecValue(MLPSpec(hidden=[3]))
    configured = Distill(DistillConfig(student=MLPSpec(hidden=[5])))
    assert configured.student_spec(DistillInputs(data=data, student=given)) == given.root
    assert configured.student_spec(DistillInputs(data=data)) == MLPSpec(hidden=[5])


@pytest.mark.ray
def test_ray_parallel_scoring_equals_in_process_scoring(
    ray_cluster: str, searched: tuple[Path, object]
) -> None:
    store, record = searched
    data = Dataset.model_validate(record.step("data").outputs["dataset"])  # type: ignore[attr-defined]
    split = read_split(ArtifactStore(str(store)), data, "train")
    space = CandidateSpace(SearchSpace.model_validate(SPACE), input_shape=(1, 8, 8), num_classes=10)
    teacher = MnistCNNSpec(width=8, num_classes=10, input_shape=(1, 8, 8))
    scorer = DiswotScorer(
        teacher, torch.from_numpy(split.x[:32]), torch.from_numpy(split.y[:32]), seed=3
    )
    candidates = space.enumerate()
    here = ParallelScorer(scorer, use_ray=False)(candidates)
    parallel = ParallelScorer(scorer, candidates_per_task=4, use_ray=True)
    assert parallel(candidates) == here  # bit for bit: one thread wherever a batch runs
    assert parallel.tasks == -(-len(candidates) // 4) > 1
    settings = SearchSettings(num_candidates=12, population=6, sample_size=3, seed=1)
    on_ray = run_search(space, ParallelScorer(scorer, candidates_per_task=2), settings)
    in_process = run_search(space, ParallelScorer(scorer, use_ray=False), settings)
    assert on_ray.history == in_process.history
