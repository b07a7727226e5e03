"""benchmarks/meta_dmoe_protocol.py keeps building valid pipelines, and its mean over held-out
domains pairs by seed with a known answer (no training here)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import meta_dmoe_protocol as protocol

SEEDS = [0, 1, 2, 3, 4]


def test_the_protocol_pipelines_validate_with_and_without_the_report() -> None:
    size = protocol.SIZES["smoke"]
    train_only = protocol.pipeline(30, [0, 1], size, None)
    ids = {step.id for step in train_only.spec.steps}
    assert "report" not in ids and {"expert_s1", "meta_first_order_s1", "data_all"} <= ids
    train_only.validate()
    full = protocol.pipeline(30, [0, 1], size, {0: 0.001, 1: 0.0001})
    full.validate()
    (report,) = [s for s in full.spec.steps if s.id == "report"]
    assert report.config["split"] == "all" and report.config["domains"] == ["rot30"]
    names = report.config["names"]
    assert names.count("meta_dmoe") == 2 and set(protocol.METHODS) <= set(names)


def document(top1: dict[str, list[float]]) -> dict[str, Any]:
    """A report.json's recipes and metrics: label -> top-1 (fractions) of seeds 0..4."""
    recipes: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    for label, values in top1.items():
        keys = [f"{label}[{i}]" for i in range(len(values))]
        recipes[label] = {"models": keys, "seeds": SEEDS[: len(values)]}
        metrics |= {k: {"top1": v} for k, v in zip(keys, values, strict=True)}
    return {"recipes": recipes, "metrics": metrics}


def test_the_mean_over_domains_pairs_by_seed() -> None:
    """meta_dmoe is planted 5 points above erm on every seed of one domain and equal on the
    other: the mean difference is +2.5 with zero spread, so "better"; identical recipes give
    0 and "not distinguishable"."""
    base = [0.50, 0.62, 0.55, 0.58, 0.60]
    top1 = {label: base for label in protocol.METHODS}
    one = document({**top1, "meta_dmoe": [v + 0.05 for v in base]})
    other = document(top1)
    _, out = protocol.mean_tables({0: one, 75: other})
    by_pair = {(c["a"], c["b"]): c for c in out["comparisons"]}
    planted = by_pair[("meta_dmoe", "erm")]
    assert planted["differences"] == pytest.approx([2.5] * 5)
    assert planted["verdict"] == "better"
    same = by_pair[("erm_same_epochs", "erm")]
    assert same["mean"] == 0 and same["verdict"] == "not distinguishable with n = 5"
    assert out["methods"]["erm"]["mean"] == pytest.approx(100 * sum(base) / 5)
