"""The DisWOT score against loop-based formulas, on real tiny zoo models, and rank correlation."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from components.models.zoo import build_model
from components.search.correlation import correlation_report, rank_correlation, scatter_png
from components.search.diswot import (
    DiswotScorer,
    Probe,
    classifier_gradient,
    diswot_score,
    match_widths,
    relation_distance,
    relation_gram,
    semantic_distance,
)
from schemas.kd.models import MLPSpec, MnistCNNSpec

SHAPE = (1, 8, 8)
K = 4


def rows_normalised(matrix: list[list[float]]) -> list[list[float]]:
    out = []
    for row in matrix:
        norm = math.sqrt(sum(v * v for v in row))
        out.append([v / max(norm, 1e-12) for v in row])
    return out


def loop_semantic(g_s: list[list[float]], g_t: list[list[float]]) -> float:
    """M_s by the formula, one class and one entry at a time (equal widths)."""
    k, c = len(g_s), len(g_s[0])
    total = 0.0
    for cls in range(k):
        gram_s = rows_normalised([[g_s[cls][i] * g_s[cls][j] for j in range(c)] for i in range(c)])
        gram_t = rows_normalised([[g_t[cls][i] * g_t[cls][j] for j in range(c)] for i in range(c)])
        total += sum((gram_s[i][j] - gram_t[i][j]) ** 2 for i in range(c) for j in range(c))
    return total / (k * c)


def loop_relation(f_s: list[list[float]], f_t: list[list[float]]) -> float:
    """M_r by the formula: sample Grams of flattened rows, row-normalised, squared diff / N²."""
    n = len(f_s)

    def gram(f: list[list[float]]) -> list[list[float]]:
        return rows_normalised(
            [
                [sum(a * b for a, b in zip(f[i], f[j], strict=True)) for j in range(n)]
                for i in range(n)
            ]
        )

    gs, gt = gram(f_s), gram(f_t)
    return sum((gt[i][j] - gs[i][j]) ** 2 for i in range(n) for j in range(n)) / (n * n)


# Hand-made gradient maps (K=3 classes, C=4 channels), one with a zero entry.
G_S = [[0.5, -1.0, 2.0, 0.0], [1.5, 0.25, -0.75, 1.0], [-2.0, 1.0, 0.5, -0.5]]
G_T = [[1.0, 1.0, -1.0, 0.5], [0.2, -0.4, 0.6, -0.8], [3.0, 0.0, 1.0, 2.0]]
# Hand-made feature maps: N=3 rows of (C=2, H=2, W=1).
F_S = [
    [[[1.0], [0.0]], [[2.0], [-1.0]]],
    [[[0.5], [1.5]], [[0.0], [1.0]]],
    [[[-1.0], [2.0]], [[1.0], [1.0]]],
]
F_T = [
    [[[0.0], [1.0]], [[1.0], [1.0]]],
    [[[2.0], [0.5]], [[-0.5], [0.0]]],
    [[[1.0], [1.0]], [[1.0], [-2.0]]],
]


def test_semantic_term_matches_the_loop_formula() -> None:
    got = semantic_distance(torch.tensor(G_S), torch.tensor(G_T))
    assert got == pytest.approx(loop_semantic(G_S, G_T), abs=1e-6)
    assert semantic_distance(torch.tensor(G_S), torch.tensor(G_S)) == 0.0


def test_relation_term_matches_the_loop_formula() -> None:
    f_s, f_t = torch.tensor(F_S), torch.tensor(F_T)
    got = relation_distance(relation_gram(f_s), relation_gram(f_t))
    flat = [[v for row in [[x for col in ch for x in col] for ch in s] for v in row] for s in F_S]
    flat_t = [[v for row in [[x for col in ch for x in col] for ch in s] for v in row] for s in F_T]
    assert got == pytest.approx(loop_relation(flat, flat_t), abs=1e-6)


def test_score_is_minus_the_sum_of_the_terms() -> None:
    s = Probe(torch.tensor(G_S, dtype=torch.float64), relation_gram(torch.tensor(F_S)))
    t = Probe(torch.tensor(G_T, dtype=torch.float64), relation_gram(torch.tensor(F_T)))
    both = diswot_score(s, t)
    assert both.score == pytest.approx(-(both.semantic + both.relation), abs=1e-12)
    assert both.semantic == pytest.approx(loop_semantic(G_S, G_T), abs=1e-6)
    assert diswot_score(s, t, terms="semantic").score == pytest.approx(-both.semantic)
    assert diswot_score(s, t, terms="relation").score == pytest.approx(-both.relation)
    assert both.as_dict() == {
        "score": both.score,
        "semantic": both.semantic,
        "relation": both.relation,
    }


def test_classifier_gradient_is_what_a_ce_backward_leaves() -> None:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(6, 5, generator=gen)
    layer = torch.nn.Linear(5, 3)
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    F.cross_entropy(layer(features), labels).backward()
    assert layer.weight.grad is not None
    got = classifier_gradient(layer(features).detach(), features, labels)
    torch.testing.assert_close(got, layer.weight.grad.double(), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        classifier_gradient(layer(features).detach(), features, labels + 1)


def test_fold_groups_consecutive_channels_like_the_official_view() -> None:
    wide = torch.tensor([[1.0, 2.0, -1.0, 0.5, 0.0, 3.0, 1.0, -2.0]])  # K=1, C_t=8
    narrow = torch.tensor([[0.5, -1.0, 2.0, 1.0]])  # K=1, C_s=4
    s, t = match_widths(narrow, wide, mode="fold", seed=0)
    assert s is narrow and t.shape == (1, 4, 2)
    # Teacher row i of G_k gathers channels 2i, 2i+1: G[i][j] = Σ_r t[2i+r] t[2j+r].
    pairs = [[wide[0, 2 * i].item(), wide[0, 2 * i + 1].item()] for i in range(4)]
    gram_t = rows_normalised(
        [
            [sum(a * b for a, b in zip(pairs[i], pairs[j], strict=True)) for j in range(4)]
            for i in range(4)
        ]
    )
    gram_s = rows_normalised(
        [[narrow[0, i].item() * narrow[0, j].item() for j in range(4)] for i in range(4)]
    )
    expected = sum((gram_s[i][j] - gram_t[i][j]) ** 2 for i in range(4) for j in range(4)) / 4
    assert semantic_distance(narrow, wide, mode="fold") == pytest.approx(expected, abs=1e-6)
    # symmetric: a wider student is folded the same way
    assert semantic_distance(wide, narrow, mode="fold") == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="do not"):
        semantic_distance(torch.ones(1, 3), wide, mode="fold")


def test_projection_is_fixed_by_seed_and_widths() -> None:
    wide, narrow = torch.randn(2, 12), torch.randn(2, 4)
    a = match_widths(narrow, wide, mode="project", seed=3)[1]
    b = match_widths(narrow, wide, mode="project", seed=3)[1]
    c = match_widths(narrow, wide, mode="project", seed=4)[1]
    assert a.shape == (2, 4)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, c)
    same = torch.randn(2, 4)
    assert match_widths(narrow, same, mode="project", seed=0) == (narrow, same)


def data(rows: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(rows, *SHAPE, generator=gen), torch.randint(0, K, (rows,), generator=gen)


def cnn(width: int = 4, depth: int = 3) -> MnistCNNSpec:
    return MnistCNNSpec(width=width, depth=depth, num_classes=K, input_shape=SHAPE)


def mlp(*hidden: int) -> MLPSpec:
    return MLPSpec(hidden=list(hidden), num_classes=K, input_shape=SHAPE)


def test_identical_networks_score_higher_than_dissimilar_ones() -> None:
    x, y = data()
    teacher = build_model(cnn(), seed=1)
    scorer = DiswotScorer(teacher, x, y, teacher_weights="trained")
    same = scorer.score_model(teacher, batch_stats=False)
    assert same.score == 0.0 and same.semantic == 0.0 and same.relation == 0.0
    for other in (build_model(cnn(), seed=2), build_model(mlp(16), seed=1)):
        assert scorer.score_model(other, batch_stats=False).score < same.score
    # At initialisation (the paper): the teacher's own architecture is closer in sample
    # relations than an MLP, for every seed tried.
    for seed in range(4):
        fresh = DiswotScorer(cnn(), x, y, seed=seed, terms="relation")
        assert fresh.score_spec(cnn()).score > fresh.score_spec(mlp(16)).score


def test_scores_are_deterministic_order_free_and_leave_the_global_rng_alone() -> None:
    x, y = data()
    candidates = [cnn(2, 2), mlp(8, 8), cnn(8, 4)]
    state = torch.get_rng_state()
    first = DiswotScorer(cnn(), x, y, seed=5)(candidates)
    assert torch.equal(state, torch.get_rng_state())
    again = DiswotScorer(cnn(), x, y, seed=5)(list(reversed(candidates)))
    assert first == list(reversed(again))
    other_seed = DiswotScorer(cnn(), x, y, seed=6)(candidates)
    assert other_seed != first
    assert all(math.isfinite(s.score) and s.score <= 0 for s in first)


def test_scorer_pickles_for_remote_workers() -> None:
    x, y = data()
    scorer = DiswotScorer(cnn(), x, y, seed=1, init="gaussian", width_mismatch="fold")
    copy = pickle.loads(pickle.dumps(scorer))
    assert copy([cnn(2, 2), mlp(8)]) == scorer([cnn(2, 2), mlp(8)])


def test_unequal_widths_and_inits() -> None:
    x, y = data()
    # teacher features 2·4 = 8 wide; students 6 (project only) and 16 (both)
    for init in ("default", "gaussian"):
        projected = DiswotScorer(cnn(), x, y, init=init)
        folded = DiswotScorer(cnn(), x, y, init=init, width_mismatch="fold")
        assert math.isfinite(projected.score_spec(mlp(6)).score)
        assert math.isfinite(folded.score_spec(cnn(8, 2)).score)
        with pytest.raises(ValueError, match="'fold' needs one feature width to divide"):
            folded.score_spec(mlp(6))


def test_scorer_rejects_bad_inputs() -> None:
    x, y = data()
    with pytest.raises(ValueError, match="at least 2 rows"):
        DiswotScorer(cnn(), x[:1], y[:1])
    with pytest.raises(ValueError, match="needs the teacher model"):
        DiswotScorer(cnn(), x, y, teacher_weights="trained")
    scorer = DiswotScorer(cnn(), x, y)
    with pytest.raises(ValueError, match="student has 3 classes, the teacher 4"):
        scorer.score_spec(MLPSpec(hidden=[4], num_classes=3, input_shape=SHAPE))


def test_rank_correlation_and_baselines() -> None:
    accuracy = [0.1, 0.4, 0.35, 0.8, 0.9]
    perfect = rank_correlation([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert perfect.kendall_tau == pytest.approx(1.0) and perfect.spearman_rho == pytest.approx(1.0)
    reverse = rank_correlation([5, 4, 3, 2, 1], [1, 2, 3, 4, 5])
    assert reverse.kendall_tau == pytest.approx(-1.0)
    report = correlation_report(
        [-3.0, -2.0, -2.5, -1.0, -0.5], accuracy, parameters=[5, 4, 3, 2, 1], macs=[1, 2, 3, 4, 5]
    )
    assert set(report) == {"score", "parameters", "macs"}
    assert report["score"].kendall_tau == pytest.approx(1.0)
    assert report["parameters"].spearman_rho == pytest.approx(-0.9)
    assert report["score"].n == 5 and set(report["macs"].as_dict()) >= {"kendall_tau", "n"}
    assert math.isnan(rank_correlation([1, 1, 1], [1, 2, 3]).kendall_tau)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        rank_correlation([1.0], [0.5])
    with pytest.raises(ValueError, match="finite"):
        rank_correlation([1.0, -math.inf], [0.5, 0.6])


def test_scatter_png() -> None:
    png = scatter_png([-3.0, -2.0, -1.0], [0.2, 0.5, 0.4], labels=["a", "b", "c"], title="t")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    with pytest.raises(ValueError, match="differ in length"):
        scatter_png([1.0], [1.0, 2.0])
