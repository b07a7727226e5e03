"""The report's paired statistics on cases with known answers: intervals against their formulas
and scipy, McNemar against the exact binomial, the bootstrap reproducible with its seed, and
the comparisons of identical models, of a planted +5-point model, and of noise
(`components.evaluation.statistics`, `pairing`, `comparisons`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from components.evaluation import metrics as m
from components.evaluation import statistics as st
from components.evaluation.comparisons import default_pairs, paired_statistics
from components.evaluation.pairing import pair_models
from components.evaluation.scoring import Scores
from schemas.kd.components.evaluate import EvaluateConfig

ROWS = 1000
CLASSES = 10
LABELS = np.arange(ROWS) % CLASSES


def logits_of(correct: np.ndarray) -> np.ndarray:
    """One-hot logits that predict the label where ``correct``, the next class elsewhere."""
    predicted = np.where(correct, LABELS, (LABELS + 1) % CLASSES)
    return np.eye(CLASSES, dtype=np.float32)[predicted]


def correct_share(share: float, seed: int) -> np.ndarray:
    """A model right on a random ``share`` of the rows."""
    rows = np.random.default_rng(seed).permutation(ROWS)[: round(share * ROWS)]
    out = np.zeros(ROWS, dtype=bool)
    out[rows] = True
    return out


def planted(correct: np.ndarray, points: int) -> np.ndarray:
    """``correct`` with ``points`` percentage points of its wrong rows made right."""
    out = correct.copy()
    out[np.flatnonzero(~correct)[: points * ROWS // 100]] = True
    return out


def scores_of(models: Mapping[str, Sequence[tuple[int | None, np.ndarray]]]) -> Scores:
    """The `Scores` of recipes (label -> [(seed, per-row correctness), ...]) on `LABELS`."""
    members: dict[str, list[str]] = {}
    logits: dict[str, np.ndarray] = {}
    seeds: dict[str, int | None] = {}
    for label, runs in models.items():
        members[label] = [label if len(runs) == 1 else f"{label}[{i}]" for i in range(len(runs))]
        for key, (seed, correct) in zip(members[label], runs, strict=True):
            logits[key], seeds[key] = logits_of(correct), seed
    results = {k: {"top1": m.topk_accuracy(v, LABELS, 1)} for k, v in logits.items()}
    baseline = m.majority_baseline(LABELS, LABELS, [str(c) for c in range(CLASSES)], "train")
    return Scores(
        LABELS, results, members, logits, {}, {}, [], {}, baseline, {}, np.arange(ROWS), seeds
    )


CONFIG = EvaluateConfig()


def test_t_interval_is_students() -> None:
    bounds = st.t_interval([1.0, 2.0, 3.0])
    assert bounds is not None
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # s = 1
    assert (bounds.low, bounds.high) == pytest.approx((2 - half, 2 + half))
    assert half == pytest.approx(2.4841, abs=1e-4)
    assert st.t_interval([0.9]) is None  # one value: no spread to estimate


def test_mcnemar_is_the_exact_binomial() -> None:
    # 2 rows only a gets right, 10 only b, 30 both, 8 neither.
    a = np.array([1] * 2 + [0] * 10 + [1] * 30 + [0] * 8, dtype=bool)
    b = np.array([0] * 2 + [1] * 10 + [1] * 30 + [0] * 8, dtype=bool)
    counts = st.mcnemar(a, b)
    assert (counts.rows, counts.only_a, counts.only_b) == (50, 2, 10)
    # Two-sided: 2 * P[Binomial(12, 1/2) <= 2] = 2 * (1 + 12 + 66) / 4096.
    assert counts.p_value == pytest.approx(2 * 79 / 4096)
    assert counts.p_value == pytest.approx(stats.binomtest(2, 12, 0.5).pvalue)
    assert counts.difference == pytest.approx(-8 / 50)
    assert st.row_verdict(counts) == "worse"
    assert st.mcnemar(b, a).p_value == counts.p_value and st.row_verdict(st.mcnemar(b, a)) == (
        "better"
    )
    # A larger table, against scipy too; no discordant rows at all: p = 1.
    big = st.mcnemar(correct_share(0.9, 1), correct_share(0.88, 2))
    assert big.p_value == pytest.approx(
        stats.binomtest(big.only_a, big.only_a + big.only_b, 0.5).pvalue
    )
    assert st.mcnemar(a, a).p_value == 1.0
    # 4 rows only a gets right, none only b: 2 / 2^4 = 0.125, not below 0.05, although the
    # (approximate) bootstrap interval over rows excludes 0: the verdict follows the exact test.
    few = (
        np.array([1] * 4 + [1] * 100 + [0] * 66, dtype=bool),
        np.array([0] * 4 + [1] * 100 + [0] * 66, dtype=bool),
    )
    assert st.mcnemar(*few).p_value == pytest.approx(0.125)
    assert st.row_verdict(st.mcnemar(*few)) == "not distinguishable with n = 1"
    assert st.row_bootstrap_interval(*few, resamples=10_000, seed=0).low > 0
    assert st.row_verdict(st.mcnemar(a, a)) == "not distinguishable with n = 1"


def test_the_bootstrap_is_reproducible_with_its_seed() -> None:
    differences = list(np.random.default_rng(7).normal(0.01, 0.02, size=8))
    first = st.bootstrap_interval(differences, resamples=10_000, seed=3)
    again = st.bootstrap_interval(differences, resamples=10_000, seed=3)
    other = st.bootstrap_interval(differences, resamples=10_000, seed=4)
    assert first == again and first != other
    assert first is not None and first.low < np.mean(differences) < first.high
    assert st.bootstrap_interval([0.01], resamples=10_000, seed=0) is None
    # With three pairs the percentile bootstrap spans about [min, max] (each of the 27
    # resamples has probability 1/27 > 2.5%): why the verdict also asks the t interval.
    three = st.bootstrap_interval([0.01, 0.02, 0.03], resamples=10_000, seed=0)
    assert three is not None and (three.low, three.high) == pytest.approx((0.01, 0.03))
    rows = st.row_bootstrap_interval(
        correct_share(0.9, 1), correct_share(0.8, 2), resamples=10_000, seed=5
    )
    assert rows == st.row_bootstrap_interval(
        correct_share(0.9, 1), correct_share(0.8, 2), resamples=10_000, seed=5
    )
    assert rows.low < 0.1 < rows.high


def test_identical_models_are_not_distinguishable() -> None:
    runs = [(seed, correct_share(0.8 + 0.02 * seed, seed)) for seed in range(3)]
    recipes, (same,) = paired_statistics(
        scores_of({"a": runs, "b": runs}), CONFIG.model_copy(update={"compare": [("a", "b")]})
    )
    assert same.n == 3 and same.paired_by == "seed" and same.mean_difference == 0.0
    assert same.bootstrap is not None and same.t_interval is not None
    assert same.bootstrap.low <= 0 <= same.bootstrap.high
    assert same.t_interval.low <= 0 <= same.t_interval.high
    assert same.verdict == "not distinguishable with n = 3"
    assert recipes["a"].seeds == [0, 1, 2] and recipes["a"].interval is not None
    assert recipes["a"].mean == pytest.approx(0.82)
    # One model each: McNemar over the rows finds no discordant row.
    _, (one,) = paired_statistics(scores_of({"a": runs[:1], "b": runs[:1]}), CONFIG)
    assert one.paired_by == "single" and one.row_test is not None
    assert (one.row_test.only_a, one.row_test.only_b, one.row_test.p_value) == (0, 0, 1.0)
    assert one.verdict == "not distinguishable with n = 1"


def test_a_planted_five_point_model_is_better() -> None:
    base = [(seed, correct_share(0.78 + 0.02 * seed, seed)) for seed in range(3)]
    better = [(seed, planted(correct, 5)) for seed, correct in base]
    config = CONFIG.model_copy(update={"compare": [("kd", "scratch"), ("scratch", "kd")]})
    recipes, (up, down) = paired_statistics(scores_of({"scratch": base, "kd": better}), config)
    assert up.mean_difference == pytest.approx(0.05)
    assert [p.difference for p in up.pairs] == pytest.approx([0.05] * 3)
    assert up.verdict == "better" and down.verdict == "worse"
    assert down.mean_difference == pytest.approx(-0.05)
    assert recipes["kd"].mean - recipes["scratch"].mean == pytest.approx(0.05)
    # One model each: 50 rows only kd gets right, none the other way: McNemar decides.
    _, (single, _) = paired_statistics(scores_of({"scratch": base[:1], "kd": better[:1]}), config)
    assert single.row_test is not None and (single.row_test.only_a, single.row_test.only_b) == (
        50,
        0,
    )
    assert single.row_test.p_value == pytest.approx(2 * 0.5**50)
    assert single.verdict == "better"
    assert single.row_interval is not None and single.row_interval.low > 0


def test_noise_between_seeds_is_not_distinguishable() -> None:
    # +5, -3 and +1 points: the mean is +1, and three seeds cannot tell it from 0.
    base = [(seed, correct_share(0.8, seed)) for seed in range(3)]
    moved = []
    for (seed, correct), points in zip(base, [5, -3, 1], strict=True):
        if points >= 0:
            moved.append((seed, planted(correct, points)))
        else:
            worse = correct.copy()
            worse[np.flatnonzero(correct)[: -points * ROWS // 100]] = False
            moved.append((seed, worse))
    _, (c,) = paired_statistics(scores_of({"a": base, "b": moved}), CONFIG)
    assert (c.a, c.b) == ("b", "a")  # the default: every label against the first
    assert c.mean_difference == pytest.approx(0.01)
    assert c.verdict == "not distinguishable with n = 3"


def test_pairing_by_seed_position_and_not_at_all() -> None:
    by_seed = pair_models(["a[0]", "a[1]", "a[2]"], [2, 0, 1], ["b[0]", "b[1]"], [0, 1])
    assert by_seed.by == "seed"
    assert by_seed.pairs == [(0, "a[1]", "b[0]"), (1, "a[2]", "b[1]")]
    assert by_seed.unpaired == ["a[0]"]
    unknown = pair_models(["a[0]", "a[1]"], [None, None], ["b[0]", "b[1]"], [0, 1])
    assert unknown.by == "position" and unknown.pairs == [
        (None, "a[0]", "b[0]"),
        (None, "a[1]", "b[1]"),
    ]
    assert "not recorded" in unknown.note
    repeated = pair_models(["a[0]", "a[1]"], [0, 0], ["b[0]", "b[1]", "b[2]"], [0, 0, 1])
    assert repeated.by == "none" and "a seed repeats within a recipe" in repeated.note
    disjoint = pair_models(["a[0]", "a[1]"], [0, 1], ["b[0]", "b[1]"], [5, 6])
    assert disjoint.by == "none" and disjoint.note == (
        "no common seed (seeds 0, 1 against seeds 5, 6)"
    )
    single = pair_models(["a"], [3], ["b"], [0])
    assert single.by == "single" and single.pairs == [(None, "a", "b")]


def test_no_pairs_and_unknown_labels_are_said() -> None:
    scores = scores_of(
        {
            "a": [(0, correct_share(0.8, 0)), (1, correct_share(0.8, 1))],
            "b": [(5, correct_share(0.8, 5)), (6, correct_share(0.8, 6))],
        }
    )
    _, (c,) = paired_statistics(scores, CONFIG)
    assert c.n == 0 and c.mean_difference is None and c.bootstrap is None
    assert c.verdict == "not compared: no common seed (seeds 5, 6 against seeds 0, 1)"
    with pytest.raises(ValueError, match=r"compare\[0\] names 'c', which no model has"):
        paired_statistics(scores, CONFIG.model_copy(update={"compare": [("c", "a")]}))
    with pytest.raises(ValueError, match="did you mean 'a'"):
        paired_statistics(scores, CONFIG.model_copy(update={"compare": [("b", "aa")]}))


def test_default_pairs() -> None:
    runs = [(0, correct_share(0.8, 0))]
    assert default_pairs(scores_of({"x": runs, "y": runs, "z": runs})) == [("y", "x"), ("z", "x")]
    assert default_pairs(scores_of({"teacher": runs, "student": runs})) == [("student", "teacher")]
    assert default_pairs(scores_of({"only": runs})) == []


def test_a_pair_must_name_two_labels() -> None:
    with pytest.raises(ValidationError, match=r"\[kd, kd\] compares 'kd' with itself"):
        EvaluateConfig(compare=[("kd", "kd")])
    with pytest.raises(ValidationError, match=r"compare\.0"):
        EvaluateConfig.model_validate({"compare": [["kd", "scratch", "dkd"]]})
    with pytest.raises(ValidationError, match="bootstrap_resamples"):
        EvaluateConfig(bootstrap_resamples=10)
    with pytest.raises(ValidationError, match="bootstrap_resamples"):
        EvaluateConfig(bootstrap_resamples=10**9)
