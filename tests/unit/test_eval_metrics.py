"""Evaluation metrics against hand-computed values."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from components.evaluation import metrics as m


def test_topk_and_agreement_by_hand() -> None:
    logits = np.array([[3.0, 2.0, 1.0], [0.0, 1.0, 2.0], [5.0, 0.0, 4.0]])
    labels = np.array([1, 2, 2])
    assert m.topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert m.topk_accuracy(logits, labels, 2) == pytest.approx(1.0)
    assert m.agreement(logits, logits[:, ::-1]) == pytest.approx(0.0)
    assert m.per_class_accuracy(logits, labels, 3)[2] == pytest.approx(0.5)
    assert m.confusion(logits, labels, 3).tolist() == [[0, 0, 0], [1, 0, 0], [1, 0, 1]]


def test_ece_of_a_calibrated_and_an_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    # calibrated: the confidence is the probability of being right
    conf = rng.uniform(0.3, 1.0, size=200_000)
    correct = rng.random(200_000) < conf
    logits = np.zeros((200_000, 2))
    logits[:, 0] = np.log(conf / (1 - conf))  # softmax([l, 0])[0] == conf
    labels = np.where(correct, 0, 1)
    assert m.reliability(logits, labels, 10).ece < 0.01
    # over-confident: always 90 % sure, right half the time -> ECE = |0.5 - 0.9| = 0.4
    logits = np.tile([np.log(9.0), 0.0], (1000, 1))
    labels = np.array([0, 1] * 500)
    curve = m.reliability(logits, labels, 15)
    assert curve.ece == pytest.approx(0.4) and curve.counts.sum() == 1000


def test_nll_and_group_summary() -> None:
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    assert m.nll(logits, np.array([0, 0])) == pytest.approx((np.log(2) + np.log(4 / 3)) / 2)
    summary = m.summarize([{"top1": 0.9}, {"top1": 0.8}])
    # The sample std (ddof=1): sqrt(((0.05)^2 + (0.05)^2) / 1), not the population std 0.05.
    expected = {"n": 2.0, "top1_mean": pytest.approx(0.85), "top1_std": pytest.approx(0.0707107)}
    assert summary == expected
    assert m.summarize([{"top1": 0.9}])["top1_std"] == 0.0  # one model: no spread


def test_top5_only_with_more_than_five_classes() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 50)
    assert set(m.accuracies(rng.normal(size=(50, 3)), labels)) == {"top1"}
    assert set(m.accuracies(rng.normal(size=(50, 5)), labels)) == {"top1"}  # top-5 of 5: 100%
    assert set(m.accuracies(rng.normal(size=(50, 6)), labels)) == {"top1", "top5"}


def test_a_class_absent_from_the_rows_has_no_accuracy_rather_than_nan() -> None:
    logits = np.array([[3.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
    out = m.class_accuracies(logits, np.array([0, 2]), ["a", "b", "c"])
    assert out == {"class_a": 1.0, "class_c": 1.0}  # no rows of 'b': left out, never NaN


def test_majority_baseline_is_fitted_on_train_and_scored_on_the_split() -> None:
    train = np.array([1, 1, 1, 0, 2])
    scored = np.array([0, 1, 2, 2])
    baseline = m.majority_baseline(train, scored, ["x", "y", "z"], "train")
    assert baseline.class_name == "y" and baseline.top1 == pytest.approx(0.25)
    assert baseline.as_dict() == {
        "kind": "majority",
        "class": "y",
        "fitted_on": "train",
        "top1": 0.25,
    }


def test_compression_against_the_teacher() -> None:
    teacher = {"top1": 0.9, "parameters": 1000.0, "macs": 4000.0, "latency_ms_b1": 0.2}
    student = {"top1": 0.81, "parameters": 250.0, "macs": 500.0, "latency_ms_b1": 0.05}
    assert m.compression(student, teacher) == {
        "top1_kept": pytest.approx(0.9),
        "params_ratio": 4.0,
        "macs_ratio": 8.0,
        "latency_ratio_b1": 4.0,
    }


class _Counted(torch.nn.Module):
    """A linear model that sleeps ``seconds`` per pass and counts its passes."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.linear, self.seconds, self.passes = torch.nn.Linear(4, 2), seconds, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes += 1
        time.sleep(self.seconds)
        return self.linear(x)


def test_latency_times_slow_models_fewer_times_within_the_budget() -> None:
    example = np.zeros((1, 4), np.float32)
    slow = _Counted(0.04)
    assert m.latency_ms(slow, example, 8, repeats=20, budget_s=0.2) >= 40
    assert slow.passes == 3 + 4  # warm-ups, then 0.2 s / ~0.04-0.05 s
    slower = _Counted(0.12)
    m.latency_ms(slower, example, 8, repeats=20, budget_s=0.2)
    assert slower.passes == 3 + 3  # never fewer than 3 timed passes
    fast = _Counted(0.0)
    m.latency_ms(fast, example, 8, repeats=20, budget_s=0.2)
    assert fast.passes == 3 + 20
