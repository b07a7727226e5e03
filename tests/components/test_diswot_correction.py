"""The corrected DisWOT score: known answers for its chance level and for dead channels.

- The closed-form chance level equals the average over every channel permutation.
- For independent isotropic gradient maps the raw semantic term averages ``2 - 2 m²`` (m the
  mean |coordinate| of a random unit vector, ``2 - 4/(πC)`` for large C) and the corrected one 0.
- For real networks that owe the teacher nothing (independently initialised, N(0, 1)), the
  corrected semantic term averages 0 over seeds at every width, while the raw one grows with
  the width.
- A student with a dead channel scores exactly as the same student without it (the raw score
  rewards the dead channel), and the config refuses the correction with folding.
"""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path

import pytest
import torch

from components.models.zoo import KDModel, build_model
from components.search.diswot import DiswotScorer, semantic_distance, semantic_gram
from components.search.null_expectation import corrected_semantic, live_channels, null_distance
from schemas.kd.models import MLPSpec
from tests.support.cli import kdorch

K = 10
ROOT = Path(__file__).parents[2]


def mean_abs_coordinate(c: int) -> float:
    """E|u_1| for u uniform on the unit sphere of R^c."""
    return math.exp(math.lgamma(c / 2) - math.lgamma((c + 1) / 2)) / math.sqrt(math.pi)


def test_the_chance_level_is_the_average_over_every_channel_permutation() -> None:
    generator = torch.Generator().manual_seed(0)
    for c in (2, 3, 5):
        g_s = semantic_gram(torch.randn(3, c, generator=generator, dtype=torch.float64))
        g_t = semantic_gram(torch.randn(3, c, 2, generator=generator, dtype=torch.float64))
        distances = []
        for order in itertools.permutations(range(c)):
            p = torch.eye(c, dtype=torch.float64)[list(order)]
            distances.append(((g_s - p @ g_t @ p.T) ** 2).sum(dim=(1, 2)))
        exhaustive = torch.stack(distances).mean(dim=0)
        torch.testing.assert_close(null_distance(g_s, g_t), exhaustive, rtol=0, atol=1e-12)


def mean_and_error(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error."""
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


@pytest.mark.parametrize(("c", "draws"), [(2, 300), (8, 300), (64, 60)])
def test_independent_isotropic_maps_chance_level_and_zero_corrected_mean(
    c: int, draws: int
) -> None:
    """Tolerance: within 3 standard errors of the mean (seeded, so the outcome is fixed)."""
    generator = torch.Generator().manual_seed(c)
    raw, corrected = [], []
    for _ in range(draws):
        g_s = torch.randn(K, c, generator=generator, dtype=torch.float64)
        g_t = torch.randn(K, c, generator=generator, dtype=torch.float64)
        raw.append(semantic_distance(g_s, g_t))
        corrected.append(semantic_distance(g_s, g_t, correction="null_expectation"))
    expected = 2 - 2 * mean_abs_coordinate(c) ** 2
    mean, error = mean_and_error(raw)
    assert abs(mean - expected) < 3 * error, (mean, expected, error)
    mean, error = mean_and_error(corrected)
    assert abs(mean) < 3 * error, (mean, error)
    if c == 64:
        assert expected == pytest.approx(2 - 4 / (math.pi * c), abs=1e-3)


def network_terms(width: int, seed: int, correction: str) -> float:
    """Semantic term of an MLP student (one hidden layer of ``width``) against an MLP teacher
    (hidden 32, 16), both freshly N(0, 1)-initialised from ``seed``: unrelated networks."""
    generator = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(64, 20, generator=generator)
    y = torch.arange(64) % K
    teacher = MLPSpec(hidden=[32, 16], num_classes=K, input_shape=[20])
    scorer = DiswotScorer(teacher, x, y, seed=seed, correction=correction)  # type: ignore[arg-type]
    return scorer.score_spec(MLPSpec(hidden=[width], num_classes=K, input_shape=[20])).semantic


def test_unrelated_networks_score_zero_on_average_at_every_width_once_corrected() -> None:
    """Tolerance: |mean| over 30 seeds within 3 standard errors of 0 and below 0.05, where the
    raw means of widths 2 and 64 differ by about 0.77 (measured: 1.11, 1.84, 1.88 raw; 0.017,
    0.017, -0.005 corrected, standard errors 0.011-0.019)."""
    raw_means = {}
    for width in (2, 8, 64):
        mean, error = mean_and_error(
            [network_terms(width, seed, "null_expectation") for seed in range(30)]
        )
        assert abs(mean) < 3 * error and abs(mean) < 0.05, (width, mean, error)
        raw_means[width] = statistics.mean(network_terms(width, seed, "none") for seed in range(30))
    # the bias the correction removes: raw distances grow with the width (narrow looks close)
    assert raw_means[2] < raw_means[8] < raw_means[64], raw_means
    assert raw_means[64] - raw_means[2] > 0.5, raw_means


def with_dead_unit(width: int) -> tuple[KDModel, KDModel]:
    """An MLP student (one hidden layer of ``width``, its unit 0 dead: zero weights and bias,
    so ReLU gives 0 for every row) and the same student without that unit."""
    spec = MLPSpec(hidden=[width], num_classes=K, input_shape=[20])
    dead = build_model(spec, seed=3)
    smaller = build_model(spec.model_copy(update={"hidden": [width - 1]}), seed=3)
    linears = [m for m in dead.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for m in dead.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, generator=torch.Generator().manual_seed(7))
        linears[0].weight[0] = 0.0
        linears[0].bias[0] = 0.0
        small = [m for m in smaller.modules() if isinstance(m, torch.nn.Linear)]
        small[0].weight.copy_(linears[0].weight[1:])
        small[0].bias.copy_(linears[0].bias[1:])
        small[1].weight.copy_(linears[1].weight[:, 1:])
        small[1].bias.copy_(linears[1].bias)
    return dead, smaller


@pytest.mark.parametrize("width", [4, 9])  # 9: the live width 8 is the teacher's, no projection
def test_a_dead_channel_is_not_rewarded(width: int) -> None:
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(64, 20, generator=generator)
    y = torch.arange(64) % K
    dead, smaller = with_dead_unit(width)
    teacher = MLPSpec(hidden=[16, 8], num_classes=K, input_shape=[20])
    with torch.no_grad():
        torch.testing.assert_close(dead(x), smaller(x))  # the same function
    corrected = DiswotScorer(teacher, x, y, seed=2, correction="null_expectation")
    a, b = corrected.score_model(dead), corrected.score_model(smaller)
    # equal up to float32 summation order in the forward passes
    assert a.score == pytest.approx(b.score, abs=1e-6)
    assert a.semantic == pytest.approx(b.semantic, abs=1e-6)


def test_the_paper_score_rewards_a_dead_channel() -> None:
    """Equal widths (8), isotropic maps: zeroing one student channel lowers the raw M_s (its
    Gram row costs 1 instead of about 2) in every one of 50 draws. The corrected score leaves
    such a channel out (`test_a_dead_channel_is_not_rewarded`)."""
    generator = torch.Generator().manual_seed(11)
    for _ in range(50):
        student = torch.randn(K, 8, generator=generator, dtype=torch.float64)
        teacher = torch.randn(K, 8, generator=generator, dtype=torch.float64)
        dead = student.clone()
        dead[:, 0] = 0.0
        assert semantic_distance(dead, teacher) < semantic_distance(student, teacher)


def test_live_channels_and_no_live_channel() -> None:
    values = torch.randn(16, 5, 3, 3)
    values[:, 1] = 0.0
    values[:, 3] = 2.5  # constant over the batch and space
    values[:, 4] = torch.randn(3, 3)  # varies in space, the same for every row
    assert live_channels(values).tolist() == [True, False, True, False, False]
    assert not live_channels(torch.zeros(8, 4)).any()
    gram = semantic_gram(torch.randn(K, 4, dtype=torch.float64))
    assert corrected_semantic(gram, gram) < 0  # identical maps: better than chance
    empty = torch.zeros(K, 0, dtype=torch.float64)
    assert semantic_distance(empty, torch.randn(K, 4), correction="null_expectation") == 4.0


def test_validate_refuses_the_correction_with_folding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code = kdorch(
        "validate",
        str(ROOT / "pipelines" / "diswot_search.yaml"),
        "--set",
        "steps.search.config.score.correction=null_expectation",
        "--set",
        "steps.search.config.score.width_mismatch=fold",
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "steps[3] (search).config.score" in err, err
    assert "use width_mismatch: project" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_teacher_without_a_live_channel_is_refused_with_what_to_do() -> None:
    spec = MLPSpec(hidden=[6], num_classes=K, input_shape=[20])
    teacher = build_model(spec, seed=0)
    with torch.no_grad():
        first = next(m for m in teacher.modules() if isinstance(m, torch.nn.Linear))
        first.weight.zero_()
        first.bias.fill_(-1.0)  # ReLU(-1) = 0 for every row: every channel dead
    x, y = torch.randn(32, 20), torch.arange(32) % K
    with pytest.raises(ValueError, match=r"no channel of the teacher.*use correction: none"):
        DiswotScorer(teacher, x, y, teacher_weights="trained", correction="null_expectation")
    DiswotScorer(teacher, x, y, teacher_weights="trained")  # the paper's score takes it
