"""Meta-DMoE's controls and selection, run for real on rotated digits (executor local): the
aggregator keeps its best source-validation epoch (`select`, `eval_split`), `meta_distill`
without meta-training (`epochs: 0`) packages its inputs untouched, the entropy control adapts
without experts, first order leaves the aggregator as pre-trained, and `mask: false` changes
what is learnt. Bad combinations are refused before anything runs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from components.artifacts.datasets import read_split
from components.metadmoe.checkpoints import AGGREGATOR_FILE, load_adaptive
from orchestrator import Pipeline, run
from orchestrator.storage.store import ArtifactStore
from schemas.kd.artifacts import AdaptiveModelCheckpoint, Dataset
from schemas.kd.components.metadmoe import AggregatorConfig, MetaDistillConfig
from tests.support.cli import kdorch

ANGLES = [0, 30, 60]
HELD_OUT = ["rot0"]
STUDENT = {"arch": "mlp", "hidden": [16]}
META = {"exclude_domains": HELD_OUT, "epochs": 2, "batch_size": 16, "support_size": 8}


def pipeline() -> Pipeline:
    p = Pipeline("metadmoe_controls")
    data = p.add("data", "dataset", config={"source": "digits", "domains": {"angles": ANGLES}})
    expert = p.add(
        "expert",
        "train",
        matrix={"angle": ANGLES},
        inputs={"data": data.dataset},
        config={"model": {"arch": "mlp", "hidden": [16]}, "domains": ["rot${angle}"], "epochs": 3},
    )
    features = p.add(
        "features",
        "teacher_inference",
        matrix={"angle": ANGLES},
        inputs={"teacher": expert["${angle}"].model, "data": data.dataset},
        config={"feature": "penultimate"},
    )
    erm = p.add(
        "erm",
        "train",
        inputs={"data": data.dataset},
        config={"model": STUDENT, "exclude_domains": HELD_OUT, "epochs": 3},
    )
    for select in ("best", "last"):
        for epochs in (1, 2, 3, 4):
            p.add(
                f"agg_{select}_{epochs}",
                "aggregator",
                inputs={
                    "data": data.dataset,
                    "features": features.all.logits,
                    "student": erm.model,
                },
                config={
                    "exclude_domains": HELD_OUT,
                    "num_heads": 2,
                    "epochs": epochs,
                    "select": select,
                    "lr": 0.01,
                },
            )
    meta_inputs = {
        "data": data.dataset,
        "student": erm.model,
        "aggregator": "agg_best_4.aggregator",
        "features": features.all.logits,
        "experts": expert.all.model,
    }
    variants: dict[str, dict[str, Any]] = {
        "meta": {},
        "meta_first_order": {"first_order": True},
        "meta_no_mask": {"mask": False},
        "tta_aggregator": {"epochs": 0},
        "tta_entropy": {"epochs": 0, "adaptation": "entropy", "inner_lr": 0.1},
    }
    steps = {
        name: p.add(name, "meta_distill", inputs=meta_inputs, config={**META, **extra})
        for name, extra in variants.items()
    }
    # the protocol's scoring: the same rows in one split, every row of the held-out domain
    data_all = p.add(
        "data_all",
        "dataset",
        config={"source": "digits", "domains": {"angles": ANGLES}, "splits": {"all": 1.0}},
    )
    p.add(
        "report",
        "evaluate",
        inputs={
            "data": data_all.dataset,
            "models": [erm.model, steps["meta"].adaptive, steps["tta_entropy"].adaptive],
        },
        config={
            "split": "all",
            "domains": HELD_OUT,
            "names": ["erm", "meta_dmoe", "erm_tta_entropy"],
            "latency_repeats": 1,
            "latency_batch_sizes": [1],
            "plots": False,
        },
    )
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArtifactStore, Any]:
    root = tmp_path_factory.mktemp("metadmoe_controls")
    record = run(pipeline().spec, storage=str(root), executor="local", raise_on_failure=True)
    return ArtifactStore(str(root)), record


def state(store: ArtifactStore, ref: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
    data = Path(store.fs_path(ref["path"])) / name
    loaded: dict[str, torch.Tensor] = torch.load(io.BytesIO(data.read_bytes()), weights_only=True)
    return loaded


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_aggregator_keeps_its_best_source_validation_epoch(
    trained: tuple[ArtifactStore, Any],
) -> None:
    """Pre-training is deterministic, so `select: last` with k epochs is epoch k of the longer
    run: the best of 4 epochs is the last-k run with the highest source val accuracy."""
    _, record = trained
    last = {k: record.step(f"agg_last_{k}").outputs["metrics"] for k in (1, 2, 3, 4)}
    best = record.step("agg_best_4").outputs["metrics"]
    accuracies = {k: m["val_accuracy"] for k, m in last.items()}
    wanted = max(accuracies, key=lambda k: (accuracies[k], -k))  # the first of equal bests
    assert best["best_epoch"] == wanted and best["val_accuracy"] == accuracies[wanted]
    assert last[4]["best_epoch"] == 4


def test_no_meta_training_packages_the_inputs_as_they_are(
    trained: tuple[ArtifactStore, Any],
) -> None:
    store, record = trained
    erm = state(store, record.step("erm").outputs["model"], "weights.pt")
    aggregator = state(store, record.step("agg_best_4").outputs["aggregator"], AGGREGATOR_FILE)
    out = record.step("tta_aggregator").outputs
    assert same(state(store, out["model"], "weights.pt"), erm)
    assert same(state(store, out["adaptive"], AGGREGATOR_FILE), aggregator)
    assert out["adaptive"]["kind"] == "meta_dmoe"
    assert 0 <= out["metrics"]["val_accuracy"] <= 1 and "val_plain_accuracy" in out["metrics"]


def test_the_entropy_control_adapts_without_experts(trained: tuple[ArtifactStore, Any]) -> None:
    store, record = trained
    ref = AdaptiveModelCheckpoint.model_validate(record.step("tta_entropy").outputs["adaptive"])
    assert ref.kind == "entropy_tta" and ref.adaptation.inner_lr == 0.1
    model = load_adaptive(store, ref)
    assert model.entropy and len(model.experts) == 0
    x = torch.randn(8, 1, 8, 8)
    weights = model.adapt(x)
    assert not all(
        torch.equal(w, p)
        for n, p in model.student.named_parameters()
        if n in weights
        for w in [weights[n]]
    )


def test_first_order_leaves_the_aggregator_as_pre_trained(
    trained: tuple[ArtifactStore, Any],
) -> None:
    store, record = trained
    pretrained = state(store, record.step("agg_best_4").outputs["aggregator"], AGGREGATOR_FILE)
    erm = state(store, record.step("erm").outputs["model"], "weights.pt")
    first = record.step("meta_first_order").outputs
    second = record.step("meta").outputs
    assert same(state(store, first["adaptive"], AGGREGATOR_FILE), pretrained)
    assert not same(state(store, first["model"], "weights.pt"), erm)  # the student learnt
    assert not same(state(store, second["adaptive"], AGGREGATOR_FILE), pretrained)


def test_the_mask_changes_what_is_learnt(trained: tuple[ArtifactStore, Any]) -> None:
    store, record = trained
    masked = state(store, record.step("meta").outputs["model"], "weights.pt")
    unmasked = state(store, record.step("meta_no_mask").outputs["model"], "weights.pt")
    assert not same(masked, unmasked)


def test_every_row_of_the_held_out_domain_is_scored_cross_fitted(
    trained: tuple[ArtifactStore, Any],
) -> None:
    """`data_all` holds the same rows in the same domains as `data`; the report scores all of
    the held-out domain's rows, and the adaptive models adapt in disjoint batches."""
    store, record = trained
    data = Dataset.model_validate(record.step("data").outputs["dataset"])
    every = Dataset.model_validate(record.step("data_all").outputs["dataset"])
    held_out: set[int] = set()
    for split in data.splits:
        rows = read_split(store, data, split)
        assert rows.domain is not None
        held_out |= set(rows.row_id[rows.domain == 0].tolist())
    all_rows = read_split(store, every, "all")
    assert all_rows.domain is not None
    assert set(all_rows.row_id[all_rows.domain == 0].tolist()) == held_out
    document = json.loads(
        (
            Path(store.fs_path(record.step("report").outputs["report"]["path"])) / "report.json"
        ).read_text()
    )
    assert document["rows"] == len(held_out) and document["split"] == "all"
    adapted = document["adaptation"]["meta_dmoe"]["rot0"]
    assert len(adapted) == len(set(adapted)) and len(adapted) == 8 * (len(held_out) // 8)
    assert set(adapted) <= held_out


def test_entropy_with_meta_training_is_refused() -> None:
    with pytest.raises(ValidationError, match="adaptation 'entropy' is the control"):
        MetaDistillConfig(epochs=3, adaptation="entropy")
    with pytest.raises(ValidationError, match="select"):
        AggregatorConfig.model_validate({"select": "middle"})


BAD = """\
name: bad_meta
steps:
- id: data
  component: dataset
  config: {source: digits, domains: {angles: [0, 30, 60]}}
- id: expert
  component: train
  matrix: {angle: [0, 30, 60]}
  inputs: {data: data.dataset}
  config: {model: {arch: mlp, hidden: [16]}, domains: ["rot${angle}"]}
- id: features
  component: teacher_inference
  matrix: {angle: [0, 30, 60]}
  inputs: {teacher: "expert[${angle}].model", data: data.dataset}
  config: {feature: penultimate}
- id: erm
  component: train
  inputs: {data: data.dataset}
  config: {model: {arch: mlp, hidden: [16]}, exclude_domains: [rot0]}
- id: agg
  component: aggregator
  inputs: {data: data.dataset, features: "features[*].logits", student: erm.model}
  config: {exclude_domains: [rot0], num_heads: 2, eval_split: holdout}
- id: tta
  component: meta_distill
  inputs: {data: data.dataset, student: erm.model, aggregator: agg.aggregator,
           features: "features[*].logits", experts: "expert[*].model"}
  config: {exclude_domains: [rot0], epochs: 2, adaptation: entropy}
"""


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (
            ("epochs: 2, adaptation: entropy", "epochs: 2, adaptation: entropy"),
            "adaptation 'entropy' is the control without meta-training, but epochs is 2",
        ),
        (("epochs: 2, adaptation: entropy", "epochs: 0, adaptation: entropy"), "holdout"),
    ],
    ids=["entropy_with_epochs", "unknown_eval_split"],
)
def test_cli_refuses_bad_meta_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], said: str
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(BAD.replace(*edit))
    store = tmp_path / "store"
    assert kdorch("run", str(spec), "--storage", str(store)) == 2
    output = capsys.readouterr()
    text = output.out + output.err
    assert said in text, text
    assert "Traceback" not in text
    assert not store.exists() or not any((store / "objects").glob("*"))
