"""Each loss against values computed independently with NumPy/math (never the same torch code),
plus the edge cases that pin its conventions (T^2, warm-up, top-k rules, TAID's schedule)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from components.losses import CombinedLoss, KDBatch, LossOutput, build_loss, densify_topk
from components.losses.ce import CrossEntropy
from components.losses.dkd import DecoupledKD
from components.losses.hint import FeatureHint
from components.losses.kd import HintonKD
from components.losses.meal import MEALV2
from components.losses.nd import NormDirection
from components.losses.pld import PlackettLuceKD
from components.losses.taid import TAID
from components.losses.topk import TopKKD
from schemas.kd.losses import (
    CELoss,
    DKDLoss,
    HintLoss,
    KDLoss,
    MEALLoss,
    NDLoss,
    PLDLoss,
    TAIDLoss,
    TopKKLLoss,
)

# B = 2, K = 3: small enough to check by hand.
ZS = np.array([[2.0, 0.5, -1.0], [0.1, 1.2, 0.3]])
ZT = np.array([[3.0, 1.0, -2.0], [-0.5, 2.0, 1.0]])
Y = np.array([0, 2])
ROWS = np.arange(2)


def softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    e = np.exp(z / t - (z / t).max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) summed over the last axis, mean over rows."""
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 * log(0 / 0) is taken as 0
        terms = p * np.log(p / q)
    return float(np.mean(np.sum(np.where(p > 0, terms, 0.0), -1)))


def ce(z: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(-np.log(softmax(z)[np.arange(len(y)), y])))


def batch(**kw: object) -> KDBatch:
    base: dict[str, object] = {
        "student_logits": torch.tensor(ZS, requires_grad=True),
        "labels": torch.tensor(Y),
        "teacher_logits": torch.tensor(ZT),
    }
    base.update(kw)
    return KDBatch(**base)  # type: ignore[arg-type]


def value(term: torch.nn.Module, b: KDBatch) -> float:
    return float(term(b).total.detach())


# --- ce -------------------------------------------------------------------------------------


def test_ce_by_hand_and_label_smoothing() -> None:
    uniform = KDBatch(student_logits=torch.zeros(2, 3), labels=torch.tensor(Y))
    assert value(CrossEntropy(CELoss()), uniform) == pytest.approx(math.log(3), rel=1e-6)
    eps = 0.1
    logp = np.log(softmax(ZS))
    expected = np.mean((1 - eps) * -logp[ROWS, Y] + eps * -logp.mean(1))
    out = CrossEntropy(CELoss(weight=2.0, label_smoothing=eps))(
        batch(student_logits=torch.tensor(ZS))
    )
    assert float(out.total.detach()) == pytest.approx(2.0 * expected, rel=1e-6)
    assert float(out.parts["ce"]) == pytest.approx(expected, rel=1e-6)  # parts are unweighted


# --- kd -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alpha", "T"), [(0.9, 4.0), (0.5, 1.0), (1.0, 2.0), (0.0, 3.0)])
def test_hinton_kd_by_hand(alpha: float, T: float) -> None:
    kl_t = kl(softmax(ZT, T), softmax(ZS, T))
    expected = (1 - alpha) * ce(ZS, Y) + alpha * T * T * kl_t
    out = HintonKD(KDLoss(temperature=T, alpha=alpha))(batch())
    assert float(out.total.detach()) == pytest.approx(expected, rel=1e-5)
    assert float(out.parts["kl"]) == pytest.approx(kl_t, rel=1e-5)
    assert float(out.parts["ce"]) == pytest.approx(ce(ZS, Y), rel=1e-5)


def test_kd_is_zero_when_student_matches_teacher() -> None:
    b = batch(student_logits=torch.tensor(ZT + 5.0), labels=None)  # a shift changes nothing
    assert value(HintonKD(KDLoss(alpha=1.0)), b) == pytest.approx(0.0, abs=1e-6)


def test_kd_without_labels() -> None:
    b = batch(labels=None)
    out = HintonKD(KDLoss(alpha=1.0))(b)
    assert set(out.parts) == {"kl"}
    assert float(out.total.detach()) == pytest.approx(
        16 * kl(softmax(ZT, 4), softmax(ZS, 4)), rel=1e-5
    )
    with pytest.raises(ValueError, match=r"loss 'kd' needs \['labels'\]"):
        HintonKD(KDLoss(alpha=0.9))(b)


def test_multi_teacher_kd_equals_kd_against_the_averaged_distribution() -> None:
    zt2 = np.array([[0.0, 2.0, 1.0], [1.0, 1.0, -3.0]])
    T = 4.0
    p_bar = (softmax(ZT, T) + softmax(zt2, T)) / 2
    expected = 0.1 * ce(ZS, Y) + 0.9 * T * T * kl(p_bar, softmax(ZS, T))
    multi = batch(teacher_logits=torch.tensor(np.stack([ZT, zt2])))
    assert value(HintonKD(KDLoss(weight=3.0)), multi) == pytest.approx(3.0 * expected, rel=1e-5)
    # A single teacher whose tempered softmax *is* p_bar gives the same loss.
    equivalent = batch(teacher_logits=torch.tensor(T * np.log(p_bar)))
    assert value(HintonKD(KDLoss()), equivalent) == pytest.approx(expected, rel=1e-5)


def test_kd_gradient_magnitude_is_roughly_independent_of_temperature() -> None:
    def grad(T: float) -> np.ndarray:
        b = batch(labels=None)
        HintonKD(KDLoss(temperature=T, alpha=1.0))(b).total.backward()
        return b.student_logits.grad.numpy()  # type: ignore[union-attr]

    temperatures = (1.0, 4.0, 16.0)
    norms = [float(np.linalg.norm(grad(T))) for T in temperatures]
    assert max(norms) / min(norms) < 3.0
    unscaled = [n / T**2 for n, T in zip(norms, temperatures, strict=True)]
    assert max(unscaled) / min(unscaled) > 50.0  # what the T^2 factor compensates
    # Large-T limit, by hand: dL/dz_s = T (p_s - p_t) / B -> (centred z_s - centred z_t) / (K B)
    centred = (ZS - ZS.mean(1, keepdims=True)) - (ZT - ZT.mean(1, keepdims=True))
    assert np.allclose(grad(1000.0), centred / (3 * 2), atol=1e-3)


def test_half_precision_inputs_are_computed_in_float32() -> None:
    ref = value(HintonKD(KDLoss()), batch())
    half = batch(teacher_logits=torch.tensor(ZT, dtype=torch.float16))
    out = HintonKD(KDLoss())(half)
    assert out.total.dtype == torch.float32
    assert float(out.total.detach()) == pytest.approx(ref, rel=1e-3)
    bf16 = batch(student_logits=torch.tensor(ZS, dtype=torch.bfloat16, requires_grad=True))
    assert value(HintonKD(KDLoss()), bf16) == pytest.approx(ref, rel=2e-2)


# --- dkd ------------------------------------------------------------------------------------


def dkd_parts(p_s: np.ndarray, p_t: np.ndarray, y: np.ndarray, T: float) -> tuple[float, float]:
    """TCKD and NCKD (with T^2) from full softmaxes, deleting the target column by hand."""
    rows = np.arange(len(y))
    b_s = np.stack([p_s[rows, y], 1 - p_s[rows, y]], 1)
    b_t = np.stack([p_t[rows, y], 1 - p_t[rows, y]], 1)
    nt_s = np.stack([np.delete(p_s[i], y[i]) / (1 - p_s[i, y[i]]) for i in rows])
    nt_t = np.stack([np.delete(p_t[i], y[i]) / (1 - p_t[i, y[i]]) for i in rows])
    return kl(b_t, b_s) * T * T, kl(nt_t, nt_s) * T * T


def test_dkd_by_hand_with_warmup() -> None:
    T = 4.0
    tckd, nckd = dkd_parts(softmax(ZS, T), softmax(ZT, T), Y, T)
    term = DecoupledKD(DKDLoss(warmup=20.0))
    assert value(term, batch(epoch=20.0)) == pytest.approx(ce(ZS, Y) + tckd + 8 * nckd, rel=1e-5)
    assert value(term, batch(epoch=35.0)) == pytest.approx(ce(ZS, Y) + tckd + 8 * nckd, rel=1e-5)
    assert value(term, batch(epoch=5.0)) == pytest.approx(
        ce(ZS, Y) + 0.25 * (tckd + 8 * nckd), rel=1e-5
    )
    out = term(batch(epoch=5.0))
    assert float(out.parts["tckd"]) == pytest.approx(tckd, rel=1e-5)
    assert float(out.parts["nckd"]) == pytest.approx(nckd, rel=1e-5)
    no_ramp = DecoupledKD(DKDLoss(alpha=0.5, beta=2.0, warmup=0.0, ce_weight=0.3))
    assert value(no_ramp, batch()) == pytest.approx(
        0.3 * ce(ZS, Y) + 0.5 * tckd + 2.0 * nckd, rel=1e-5
    )


def test_dkd_equals_ce_at_epoch_zero() -> None:
    assert value(DecoupledKD(DKDLoss()), batch(epoch=0.0)) == pytest.approx(ce(ZS, Y), rel=1e-6)


def test_dkd_matches_the_official_minus_1000_mask() -> None:
    T = 2.0
    mask = np.eye(3)[Y]
    nt_t, nt_s = softmax(ZT - 1000 * mask * T, T), softmax(ZS - 1000 * mask * T, T)
    p_s, p_t = softmax(ZS, T), softmax(ZT, T)
    b = lambda p: np.stack([(p * mask).sum(1), (p * (1 - mask)).sum(1)], 1)  # noqa: E731
    official = T * T * (kl(b(p_t), b(p_s)) + 8 * kl(nt_t, nt_s))
    term = DecoupledKD(DKDLoss(temperature=T, warmup=1.0, ce_weight=0.0))
    assert value(term, batch(epoch=1.0)) == pytest.approx(official, rel=1e-5)


def test_dkd_several_teachers_use_their_mean_softmax_and_gradients_are_finite() -> None:
    zt2 = np.array([[0.0, 2.0, 1.0], [1.0, 1.0, -3.0]])
    T = 4.0
    p_bar = (softmax(ZT, T) + softmax(zt2, T)) / 2
    tckd, nckd = dkd_parts(softmax(ZS, T), p_bar, Y, T)
    b = batch(teacher_logits=torch.tensor(np.stack([ZT, zt2])), epoch=20.0)
    out = DecoupledKD(DKDLoss())(b)
    assert float(out.total.detach()) == pytest.approx(ce(ZS, Y) + tckd + 8 * nckd, rel=1e-5)
    out.total.backward()
    assert torch.isfinite(b.student_logits.grad).all()  # type: ignore[arg-type]


# --- pld ------------------------------------------------------------------------------------


def pld_by_hand(zs: np.ndarray, zt: np.ndarray, y: np.ndarray, tau: float) -> float:
    w = softmax(zt, tau)
    total = 0.0
    for i in range(len(y)):
        pi = [int(y[i])] + [int(c) for c in np.argsort(-zt[i], kind="stable") if c != y[i]]
        for k in range(len(pi)):
            tail = sum(math.exp(zs[i, c]) for c in pi[k:])
            total += w[i, pi[k]] * (math.log(tail) - zs[i, pi[k]])
    return total / len(y)


@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_pld_by_hand(tau: float) -> None:
    expected = pld_by_hand(ZS, ZT, Y, tau)
    assert value(PlackettLuceKD(PLDLoss(temperature=tau)), batch()) == pytest.approx(
        expected, rel=1e-5
    )


def test_pld_is_translation_invariant_and_reduces_to_ce_for_a_certain_teacher() -> None:
    shifted = batch(student_logits=torch.tensor(ZS + 7.0))
    assert value(PlackettLuceKD(PLDLoss()), shifted) == pytest.approx(
        value(PlackettLuceKD(PLDLoss()), batch())
    )
    certain = batch(teacher_logits=torch.tensor(60.0 * np.eye(3)[Y]))
    assert value(PlackettLuceKD(PLDLoss()), certain) == pytest.approx(ce(ZS, Y), rel=1e-5)


# --- nd -------------------------------------------------------------------------------------

MEANS = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])


def test_nd_by_hand() -> None:
    s = np.array([[2.0, 1.0], [0.5, 0.5]])
    t = np.array([[1.0, 1.0], [3.0, 0.0]])
    # row 0: e = (1, 0), <s, e> = 2, max(|s|, |t|) = sqrt(5) -> 1 - 2 / sqrt(5)
    # row 1: e = (1, 1) / sqrt(2), <s, e> = 1 / sqrt(2), max = 3 -> 1 - 1 / (3 sqrt(2))
    expected = ((1 - 2 / math.sqrt(5)) + (1 - 1 / (3 * math.sqrt(2)))) / 2
    term = NormDirection(NDLoss(), torch.tensor(MEANS), student_dim=2)
    b = batch(student_features=torch.tensor(s), teacher_features=torch.tensor(t))
    out = term(b)
    assert float(out.total.detach()) == pytest.approx(
        2.0 * expected, rel=1e-6
    )  # default weight = 2
    assert float(out.parts["nd"]) == pytest.approx(expected, rel=1e-6)


def test_nd_zero_when_parallel_to_the_class_mean_with_at_least_the_teacher_norm() -> None:
    term = NormDirection(NDLoss(), torch.tensor(MEANS), student_dim=2)
    t = torch.tensor([[0.0, 3.0], [1.0, 1.0]])  # norms 3 and sqrt(2)
    unit = MEANS[Y] / np.linalg.norm(MEANS[Y], axis=1, keepdims=True)
    for scale in (3.0, 10.0):  # ||s|| >= ||t|| in both rows
        b = batch(student_features=torch.tensor(unit * scale), teacher_features=t)
        assert value(term, b) == pytest.approx(0.0, abs=1e-6)
    # shorter than the teacher: 1 - ||s|| / ||t|| per row
    b = batch(student_features=torch.tensor(unit * 1.0), teacher_features=t)
    expected = ((1 - 1 / 3) + (1 - 1 / math.sqrt(2))) / 2
    assert value(term, b) == pytest.approx(2.0 * expected, rel=1e-6)


def test_nd_projector_and_several_teachers() -> None:
    term = NormDirection(NDLoss(weight=1.0), torch.tensor(MEANS), student_dim=4)
    assert isinstance(term.projector, torch.nn.Linear) and term.projector.bias is None
    w = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, -1.0, 0.0]])  # (Dt, Ds)
    with torch.no_grad():
        term.projector.weight.copy_(torch.tensor(w))
    s = np.array([[1.0, 2.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    t1, t2 = np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([[0.0, 0.0], [2.0, 0.0]])
    p = s @ w.T  # [[2, 2], [0, 1]]
    t = (t1 + t2) / 2  # [[1, 0], [1, 1]]
    e = MEANS[Y] / np.linalg.norm(MEANS[Y], axis=1, keepdims=True)
    denom = np.maximum(np.linalg.norm(p, axis=1), np.linalg.norm(t, axis=1))
    expected = np.mean(1 - np.sum(p * e, 1) / denom)
    b = batch(student_features=torch.tensor(s), teacher_features=torch.tensor(np.stack([t1, t2])))
    assert value(term, b) == pytest.approx(expected, rel=1e-6)


# --- taid -----------------------------------------------------------------------------------


def test_taid_loss_and_stop_gradient_by_hand() -> None:
    term = TAID(TAIDLoss(), total_steps=100)
    t = 0.4
    target = softmax((1 - t) * ZS + t * ZT)
    expected = float(np.mean(-np.sum(target * np.log(softmax(ZS)), -1)))
    b = batch()
    out = term(b)
    assert float(out.total.detach()) == pytest.approx(expected, rel=1e-6)
    assert float(out.parts["t"]) == pytest.approx(0.4)
    out.total.backward()  # the target is detached: d/dz_s = (softmax(z_s) - target) / B
    assert np.allclose(b.student_logits.grad.numpy(), (softmax(ZS) - target) / 2, atol=1e-6)  # type: ignore[union-attr]


def test_taid_schedule_by_hand() -> None:
    term = TAID(TAIDLoss(t_start=0.4, t_end=1.0, alpha=5e-4, beta=0.99), total_steps=100)
    l1 = value(term, batch())
    term.on_step_end(123.0)  # the term uses its own loss, not the total it is given
    assert float(term.t) == 0.4 and float(term.prev_loss) == pytest.approx(l1)  # records only
    term.eval()
    term(batch(student_logits=torch.tensor(ZS * 9.0)))  # eval-mode forwards are not counted
    term.train()
    l2 = value(term, batch(student_logits=torch.tensor(ZS * 0.5)))
    term.on_step_end(123.0)
    m = 0.01 * (l1 - l2) / l1
    delta = 5e-4 / (1 + math.exp(-m)) * (1 - 0.4)
    # the floor counts the steps before this one (the official code's global_step): 1
    expected_t = min(1.0, max(0.4 + 0.6 * 1 / 100, 0.4 + delta))
    assert float(term.m) == pytest.approx(m, rel=1e-9)
    assert float(term.t) == pytest.approx(expected_t, rel=1e-9)
    # a loss that keeps falling fast drives t above the linear floor
    fast = TAID(TAIDLoss(alpha=0.1), total_steps=10_000)
    for loss in (1.0, 0.5, 0.25):
        fast.on_step_end(loss)  # no forward recorded: the given loss is used
    assert float(fast.t) > 0.4 + 0.6 * 2 / 10_000


def test_taid_t_rises_monotonically_to_t_end_and_resumes_from_state_dict() -> None:
    gen = torch.Generator().manual_seed(0)
    zt = torch.randn(4, 5, generator=gen)
    students = [torch.randn(4, 5, generator=gen, requires_grad=True) for _ in range(60)]

    def run(term: TAID, start: int, stop: int) -> list[float]:
        ts = []
        for z in students[start:stop]:
            term(KDBatch(student_logits=z, teacher_logits=zt))
            term.on_step_end(0.0)
            ts.append(float(term.t))
        return ts

    term = TAID(TAIDLoss(t_start=0.2, t_end=0.9), total_steps=50)
    ts = [0.2, *run(term, 0, 20)]
    resumed = TAID(TAIDLoss(t_start=0.2, t_end=0.9), total_steps=50)
    resumed.load_state_dict(term.state_dict())
    assert {"t", "m", "prev_loss", "steps"} <= set(term.state_dict())
    assert float(resumed.t) == float(term.t) and int(resumed.steps) == 20
    rest = run(term, 20, 60)
    assert run(resumed, 20, 60) == rest  # the resumed run continues exactly
    ts += rest
    assert all(b >= a for a, b in itertools.pairwise(ts))
    assert ts[51] == pytest.approx(0.9) and max(ts) <= 0.9
    assert ts[50] < 0.9  # the floor after step n is at (n - 1) / total_steps, as the official
    assert ts[1] == 0.2  # the first step only records the loss
    assert all(t >= 0.2 + 0.7 * (n - 1) / 50 - 1e-12 for n, t in enumerate(ts[2:51], start=2))


# --- top-k caches ---------------------------------------------------------------------------


def topk_cache(z: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    idx = np.argsort(-z, axis=-1)[..., :k]
    vals = np.take_along_axis(z, idx, -1)
    rest = 1 - np.take_along_axis(softmax(z), idx, -1).sum(-1)
    return torch.tensor(idx), torch.tensor(vals), torch.tensor(rest)


def densify_by_hand(z: np.ndarray, k: int) -> np.ndarray:
    """Teacher probabilities with the top-k kept and the rest mass spread evenly."""
    p = softmax(z)
    out = np.empty_like(p)
    for i, row in enumerate(p):
        top = np.argsort(-row)[:k]
        out[i] = (1 - row[top].sum()) / (len(row) - k)
        out[i, top] = row[top]
    return out


def test_densify_by_hand() -> None:
    # values (2, 1), rest 0.5, K = 4: Z = 2 (e^2 + e); each missing class gets 0.25
    out = densify_topk(torch.tensor([[2, 0]]), torch.tensor([[2.0, 1.0]]), torch.tensor([0.5]), 4)
    p = softmax(out.numpy())[0]
    z = math.exp(2) + math.exp(1)
    assert np.allclose(p, [math.exp(1) / z / 2, 0.25, math.exp(2) / z / 2, 0.25], atol=1e-6)
    assert out.dtype == torch.float32


def test_densify_reproduces_topk_probabilities_and_rest_mass() -> None:
    z = np.random.default_rng(0).normal(size=(2, 4, 10)) * 3  # (M, B, K): leading dims work
    idx, vals, rest = topk_cache(z, 3)
    p = softmax(densify_topk(idx, vals, rest, 10).numpy())
    assert np.allclose(p, np.stack([densify_by_hand(zm, 3) for zm in z]), atol=1e-6)
    inside = np.take_along_axis(p, idx.numpy(), -1)
    assert np.allclose(inside, np.take_along_axis(softmax(z), idx.numpy(), -1), atol=1e-6)
    assert np.allclose(p.sum(-1) - inside.sum(-1), rest.numpy(), atol=1e-6)


def test_densify_guards_zero_rest_mass_and_k_equal_to_K() -> None:
    vals = torch.tensor([[5.0, 4.0]])
    zero = densify_topk(torch.tensor([[1, 3]]), vals, torch.tensor([0.0]), 5)
    negative = densify_topk(torch.tensor([[1, 3]]), vals, torch.tensor([-1e-7]), 5)
    for out in (zero, negative):
        p = softmax(out.numpy())[0]
        assert torch.isfinite(out).all()
        assert np.allclose(p[[1, 3]], softmax(np.array([5.0, 4.0])), atol=1e-7)
        assert p[[0, 2, 4]].sum() < 1e-12
    full = densify_topk(
        torch.tensor([[2, 0, 1]]), torch.tensor([[1.0, 3.0, 2.0]]), torch.zeros(1), 3
    )
    assert torch.equal(full, torch.tensor([[3.0, 2.0, 1.0]]))


def test_topk_uniform_with_k_equal_to_K_is_dense_kd() -> None:
    idx, vals, rest = topk_cache(ZT, 3)
    b = batch(teacher_topk_indices=idx, teacher_topk_values=vals, teacher_rest_mass=rest)
    for rule in ("uniform", "bucket"):
        assert value(TopKKD(TopKKLLoss(rule=rule), num_classes=3), b) == pytest.approx(
            value(HintonKD(KDLoss()), b), rel=1e-5
        )


def test_topk_rules_by_hand() -> None:
    z_t = np.array([[4.0, 2.0, 1.0, 0.0, -1.0], [0.0, 3.0, -1.0, 2.5, 0.5]])
    z_s = np.array([[1.0, 1.5, 0.0, 0.5, -0.5], [0.2, 0.1, 0.0, 1.0, -1.0]])
    y = np.array([0, 3])
    idx, vals, rest = topk_cache(z_t, 2)
    b = KDBatch(
        student_logits=torch.tensor(z_s),
        labels=torch.tensor(y),
        teacher_topk_indices=idx,
        teacher_topk_values=vals,
        teacher_rest_mass=rest,
    )
    T, top = 2.0, idx.numpy()
    # uniform: the tail logits all equal m with sum of their softmax (T=1) = rest
    dense = np.empty_like(z_t)
    for i in range(2):
        r = float(rest[i])
        log_z = math.log(np.exp(z_t[i, top[i]]).sum()) - math.log(1 - r)
        dense[i] = math.log(r / 3) + log_z
        dense[i, top[i]] = z_t[i, top[i]]
    kl_uniform = kl(softmax(dense, T), softmax(z_s, T))
    assert value(
        TopKKD(TopKKLLoss(temperature=T, rule="uniform"), num_classes=5), b
    ) == pytest.approx(0.1 * ce(z_s, y) + 0.9 * T * T * kl_uniform, rel=1e-5)
    # renormalize: both restricted to the teacher's top-k classes
    kl_renorm = kl(
        softmax(np.take_along_axis(z_t, top, 1), T), softmax(np.take_along_axis(z_s, top, 1), T)
    )
    out = TopKKD(TopKKLLoss(temperature=T, alpha=1.0, rule="renormalize"), num_classes=5)(b)
    assert float(out.total.detach()) == pytest.approx(T * T * kl_renorm, rel=1e-5)
    assert float(out.parts["kl"]) == pytest.approx(kl_renorm, rel=1e-5)
    # bucket: k + 1 bins at temperature T
    pt, ps = softmax(dense, T), softmax(z_s, T)
    t_top, s_top = np.take_along_axis(pt, top, 1), np.take_along_axis(ps, top, 1)
    t_bins = np.concatenate([t_top, 1 - t_top.sum(1, keepdims=True)], 1)
    s_bins = np.concatenate([s_top, 1 - s_top.sum(1, keepdims=True)], 1)
    assert value(
        TopKKD(TopKKLLoss(temperature=T, alpha=1.0, rule="bucket"), num_classes=5), b
    ) == pytest.approx(T * T * kl(t_bins, s_bins), rel=1e-5)


def test_topk_several_teachers_and_missing_inputs() -> None:
    z_t = np.random.default_rng(1).normal(size=(2, 2, 6)) * 2  # M = 2 teachers
    z_s = np.random.default_rng(2).normal(size=(2, 6))
    idx, vals, rest = topk_cache(z_t, 3)
    b = KDBatch(
        student_logits=torch.tensor(z_s),
        teacher_topk_indices=idx,
        teacher_topk_values=vals,
        teacher_rest_mass=rest,
    )
    T = 4.0
    p_bar = np.mean([softmax(np.log(densify_by_hand(zm, 3)), T) for zm in z_t], axis=0)
    expected = T * T * kl(p_bar, softmax(z_s, T))
    assert value(TopKKD(TopKKLLoss(alpha=1.0), num_classes=6), b) == pytest.approx(
        expected, rel=1e-5
    )
    with pytest.raises(ValueError, match="takes one teacher's cache"):
        TopKKD(TopKKLLoss(alpha=1.0, rule="bucket"), num_classes=6)(b)
    with pytest.raises(ValueError, match=r"needs \['labels'\]"):
        TopKKD(TopKKLLoss(alpha=0.5), num_classes=6)(b)
    with pytest.raises(ValueError, match="built for 7 classes"):
        TopKKD(TopKKLLoss(alpha=1.0), num_classes=7)(b)


# --- hint and meal --------------------------------------------------------------------------


def test_hint_by_hand() -> None:
    s = np.array([[1.0, 2.0], [0.0, -1.0]])
    t = np.array([[0.5, 2.0, 1.0], [1.0, -1.0, 0.0]])
    w, bias = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), np.array([0.0, 0.5, -1.0])
    term = FeatureHint(HintLoss(), 2, 3)
    with torch.no_grad():
        term.projector.weight.copy_(torch.tensor(w))
        term.projector.bias.copy_(torch.tensor(bias))
    b = batch(student_features=torch.tensor(s), teacher_features=torch.tensor(t))
    # projected: [[1, 2.5, 2], [0, -0.5, -2]]; squared errors sum to 0.25+0.25+1+1+0.25+4
    assert value(term, b) == pytest.approx((0.25 + 0.25 + 1 + 1 + 0.25 + 4) / 6, rel=1e-6)
    term(b).total.backward()
    assert term.projector.weight.grad is not None  # the regressor trains with the student


def test_hint_equal_widths_starts_as_plain_mse_and_averages_teachers() -> None:
    s = np.array([[1.0, 2.0], [0.0, -1.0]])
    t1, t2 = np.array([[0.5, 2.0], [1.0, -1.0]]), np.array([[1.5, 0.0], [1.0, 1.0]])
    b = batch(student_features=torch.tensor(s), teacher_features=torch.tensor(np.stack([t1, t2])))
    assert value(FeatureHint(HintLoss(), 2, 2), b) == pytest.approx(
        np.mean((s - (t1 + t2) / 2) ** 2)
    )


def test_meal_by_hand() -> None:
    one = float(np.mean(-np.sum(softmax(ZT) * np.log(softmax(ZS)), -1)))
    assert value(MEALV2(MEALLoss()), batch(labels=None)) == pytest.approx(one, rel=1e-6)
    zt2 = ZT * 0.5
    p_bar = (softmax(ZT) + softmax(zt2)) / 2
    expected = float(np.mean(-np.sum(p_bar * np.log(softmax(ZS)), -1)))
    b = batch(teacher_logits=torch.tensor(np.stack([ZT, zt2])), labels=None)
    assert value(MEALV2(MEALLoss()), b) == pytest.approx(expected, rel=1e-6)


# --- build_loss and CombinedLoss ------------------------------------------------------------


def test_build_loss_sums_weighted_terms_and_logs_named_parts() -> None:
    from pydantic import TypeAdapter

    from schemas.kd.losses import LossSpec

    specs = TypeAdapter(list[LossSpec]).validate_python(
        [
            {"type": "ce", "weight": 0.5},
            {"type": "kd", "weight": 2.0},
            {"type": "kd", "temperature": 1, "alpha": 1.0},
        ]
    )
    loss = build_loss(specs, num_classes=3)
    assert isinstance(loss, CombinedLoss) and loss.names == ["ce", "kd", "kd_1"]
    assert loss.requires == {"student_logits", "labels", "teacher_logits"}
    total, parts = loss(batch())
    kd4 = 0.1 * ce(ZS, Y) + 0.9 * 16 * kl(softmax(ZT, 4), softmax(ZS, 4))
    expected = 0.5 * ce(ZS, Y) + 2.0 * kd4 + kl(softmax(ZT), softmax(ZS))
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    assert set(parts) == {
        "ce/total", "ce/ce", "kd/total", "kd/kl", "kd/ce", "kd_1/total", "kd_1/kl", "kd_1/ce",
    }  # fmt: skip
    assert parts["kd/total"] == pytest.approx(2.0 * kd4, rel=1e-5)
    assert parts["ce/ce"] == pytest.approx(ce(ZS, Y), rel=1e-5)  # unweighted
    assert sum(v for k, v in parts.items() if k.endswith("/total")) == pytest.approx(
        float(total.detach())
    )
    with pytest.raises(ValueError, match=r"lacks \['teacher_logits'\].*'kd'"):
        loss(KDBatch(student_logits=torch.tensor(ZS), labels=torch.tensor(Y)))


def test_build_loss_explains_what_a_term_lacks() -> None:
    with pytest.raises(ValueError, match="loss 'nd' needs class_means"):
        build_loss([{"type": "nd"}], num_classes=3, student_feature_dim=2)
    with pytest.raises(ValueError, match="loss 'nd' needs student_feature_dim"):
        build_loss([{"type": "nd"}], num_classes=3, class_means=torch.tensor(MEANS))
    with pytest.raises(ValueError, match=r"loss 'nd' needs class_means of shape \(4, "):
        build_loss(
            [{"type": "nd"}], num_classes=4, student_feature_dim=2, class_means=torch.zeros(3, 2)
        )
    with pytest.raises(ValueError, match="loss 'taid' needs total_steps"):
        build_loss([{"type": "taid"}], num_classes=3)
    with pytest.raises(ValueError, match="loss 'hint' needs teacher_feature_dim"):
        build_loss([{"type": "hint"}], num_classes=3, student_feature_dim=4)
    with pytest.raises(ValueError, match="at least one term"):
        build_loss([], num_classes=3)


def test_combined_state_round_trips_projectors_and_taid() -> None:
    specs = [{"type": "ce"}, {"type": "nd"}, {"type": "hint"}, {"type": "taid"}]
    kwargs = {
        "num_classes": 3,
        "student_feature_dim": 4,
        "teacher_feature_dim": 2,
        "class_means": torch.tensor(MEANS),
        "total_steps": 10,
    }
    loss = build_loss(specs, **kwargs)  # type: ignore[arg-type]
    assert len(list(loss.parameters())) == 3  # nd projector (no bias), hint weight and bias
    b = batch(student_features=torch.randn(2, 4), teacher_features=torch.randn(2, 2))
    for _ in range(3):
        loss(b)
        loss.on_step_end(1.0)
    state = loss.state_dict()
    assert {"terms.1.class_means", "terms.1.projector.weight", "terms.3.t"} <= set(state)
    fresh = build_loss(specs, **kwargs)  # type: ignore[arg-type]
    fresh.load_state_dict(state)
    assert float(fresh.term("taid").t) == float(loss.term("taid").t) > 0.4  # type: ignore[arg-type]
    assert fresh(b)[0].item() == pytest.approx(loss(b)[0].item())


def test_every_term_returns_a_loss_output_with_a_scalar_total() -> None:
    types = "ce kd dkd pld nd taid topk_kl hint meal forward_kl reverse_kl jsd skew_kl"
    specs = [{"type": t} for t in types.split()]
    loss = build_loss(
        specs,
        num_classes=3,
        student_feature_dim=2,
        teacher_feature_dim=2,
        class_means=torch.tensor(MEANS),
        total_steps=5,
    )
    idx, vals, rest = topk_cache(ZT, 2)
    b = batch(
        student_features=torch.randn(2, 2),
        teacher_features=torch.randn(2, 2),
        teacher_topk_indices=idx,
        teacher_topk_values=vals.half(),
        teacher_rest_mass=rest,
        epoch=3.0,
    )
    for term in loss.terms:
        out = term(b)
        assert isinstance(out, LossOutput) and out.total.shape == () and out.parts
        assert out.total.dtype == torch.float32
    total, _ = loss(b)
    total.backward()
    assert torch.isfinite(b.student_logits.grad).all()  # type: ignore[arg-type]


# --- the registry: one builder per spec, requirements from the spec --------------------------


def test_every_loss_spec_has_exactly_one_registered_builder() -> None:
    from components.losses.registry import register_loss, registered
    from schemas.kd.losses import LOSS_SPECS

    builders = registered()
    assert set(builders) == set(LOSS_SPECS)
    assert len({id(b) for b in builders.values()}) == len(LOSS_SPECS)
    with pytest.raises(TypeError, match="KDLoss already has a builder"):
        register_loss(KDLoss)(lambda spec, ctx: HintonKD(spec))
    assert registered() == builders  # the refused builder replaced nothing


def test_the_registry_alone_finds_every_term_module() -> None:
    """In a fresh interpreter that imports no term module, the registry imports them all."""
    import subprocess
    import sys

    script = (
        "import sys; from components.losses.registry import registered; "
        "from schemas.kd.losses import LOSS_SPECS; "
        "assert 'components.losses.meal' not in sys.modules; "
        "assert set(registered()) == set(LOSS_SPECS)"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


@pytest.mark.parametrize(
    "spec",
    [KDLoss(alpha=1.0), KDLoss(alpha=0.5), TopKKLLoss(rule="renormalize"), TopKKLLoss(alpha=0.3)],
    ids=repr,
)
def test_a_term_requires_what_its_spec_says(spec: KDLoss | TopKKLLoss) -> None:
    loss = build_loss([spec], num_classes=3)
    (term,) = loss.terms
    assert term.requires == spec.requires() == loss.requires
    assert term.name == spec.type and term.weight == spec.weight
