"""Token-level losses for language models: cross-checks against reference implementations
(numbers written in), the missing-mass rules, masking, cost, and the errors they raise.

The reference numbers come from running the references' own functions, unmodified, on
`lm_inputs()` / `taid_students()` below (the same code, seeded, in a scratch folder outside the
repository), with torch 2.14.1 on CPU in a separate venv (/tmp/ref, which added what their
imports need: transformers 5.25.0 and lightning 2.6.6). Only the numbers were kept.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch.utils._python_dispatch import TorchDispatchMode

from components.losses import KDBatch, build_loss, rest_mass_from_logsumexp, token_rows
from components.losses.taid import TAID
from schemas.kd.losses import TAIDLoss

B, T, V, K = 2, 6, 40, 5


def lm_inputs() -> tuple[torch.Tensor, ...]:
    """Student and teacher logits (B, T, V), a mask (B, T) and the teacher's top-K log-probs."""
    g = torch.Generator().manual_seed(18)
    student = torch.randn(B, T, V, generator=g) * 2.0
    teacher = torch.randn(B, T, V, generator=g) * 3.0
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 4:] = False  # padding at the end of the first sequence
    mask[1, 0] = False  # a document boundary in the second
    top_logp, top_ids = torch.log_softmax(teacher, -1).topk(K, dim=-1)
    return student, teacher, mask, top_ids, top_logp


def taid_students(steps: int = 6) -> list[torch.Tensor]:
    """One student (B, T, V) per training step, for TAID's schedule."""
    g = torch.Generator().manual_seed(19)
    return [torch.randn(B, T, V, generator=g) * (2.0 - 0.25 * n) for n in range(steps)]


def rows(student: torch.Tensor | None = None) -> KDBatch:
    """`lm_inputs()` as a batch of the masked tokens, with dense and top-k targets."""
    z, teacher, mask, ids, logp = lm_inputs()
    rest = 1 - logp.exp().sum(-1)
    return KDBatch(
        **token_rows(  # type: ignore[arg-type]
            mask,
            student_logits=z if student is None else student,
            teacher_logits=teacher,
            teacher_topk_indices=ids,
            teacher_topk_values=logp,
            teacher_rest_mass=rest,
        )
    )


def loss_of(spec: dict[str, Any], batch: KDBatch, total_steps: int = 10) -> float:
    total, _ = build_loss([spec], num_classes=V, total_steps=total_steps)(batch)
    return float(total.detach())


# --- cross-checks against DistillKit, DistiLLM and SakanaAI's TAID ---------------------------

DISTILLKIT = [
    # (loss, DistillKit's missing-probability handling or dense, T, its value)
    ("forward_kl", "dense", 1.0, 3.403747797012329),
    ("forward_kl", "zero", 1.0, 3.7666778564453125),
    ("forward_kl", "dense", 2.0, 5.341752052307129),
    ("forward_kl", "zero", 2.0, 10.169586181640625),
    ("forward_kl", "symmetric_uniform", 1.0, 3.1385374069213867),
    ("jsd", "dense", 1.0, 0.5049482583999634),
    ("jsd", "zero", 1.0, 0.5674858093261719),
    ("jsd", "dense", 2.0, 1.049274206161499),
    ("jsd", "zero", 2.0, 2.050323247909546),
    ("jsd", "symmetric_uniform", 1.0, 0.422688364982605),
]


@pytest.mark.parametrize(("loss", "rule", "temperature", "expected"), DISTILLKIT)
def test_matches_distillkit(loss: str, rule: str, temperature: float, expected: float) -> None:
    """arcee-ai/DistillKit at commit a61c2e7d25c2e990d45832e12bd8542bdee9c810:
    ``distillkit/lossfuncs/kl.py`` ``KLDLoss(temperature, missing)(out, signal, mask=...)``
    (which calls ``sparse_kl_div`` / ``dense_kl_div``) and ``distillkit/lossfuncs/jsd.py``
    ``JSDLoss`` the same way, with ``out.logits`` the student's (B, T, V) logits, the mask as
    its trainer passes it (``mask[..., None]``), and ``SparseSignal(sparse_ids=top_ids,
    sparse_values=top_logp, log_values=True, generation_temperature=1.0, vocab_size=V)`` or
    ``DenseSignal(logits=teacher)``. Its values are sum over tokens * T^2 / mask.sum()."""
    targets = {"targets": "dense"} if rule == "dense" else {"targets": "topk", "missing": rule}
    spec = {"type": loss, "temperature": temperature, **targets}
    assert loss_of(spec, rows()) == pytest.approx(expected, abs=1e-5)


def teacher_entropy() -> float:
    """Mean entropy (nats) of the teacher's softmax over the masked tokens, in float64."""
    _, teacher, mask, _, _ = lm_inputs()
    logp = torch.log_softmax(teacher[mask].double(), -1)
    return float(-(logp.exp() * logp).sum(-1).mean())


DISTILLM = [
    # (spec, DistiLLM's function and lam, its value, whether it is a CE: KL + H(teacher))
    ({"type": "forward_kl"}, "forward_kl", 4.767248630523682, True),
    ({"type": "reverse_kl"}, "reverse_kl", 4.969239234924316, False),
    ({"type": "jsd", "beta": 0.9}, "js_distance lam=0.1", 0.2346065491437912, False),
    ({"type": "jsd", "beta": 0.5}, "js_distance lam=0.5", 0.5049482583999634, False),
    ({"type": "jsd", "beta": 0.1}, "js_distance lam=0.9", 0.21400676667690277, False),
    ({"type": "skew_kl", "alpha": 0.1}, "skewed_forward_kl lam=0.1", 3.0284111499786377, True),
    ({"type": "skew_kl", "alpha": 0.3}, "skewed_forward_kl lam=0.3", 2.277101516723633, True),
    (
        {"type": "skew_kl", "alpha": 0.1, "direction": "reverse"},
        "skewed_reverse_kl lam=0.1",
        1.7230464220046997,
        False,
    ),
    (
        {"type": "skew_kl", "alpha": 0.3, "direction": "reverse"},
        "skewed_reverse_kl lam=0.3",
        0.8840075731277466,
        False,
    ),
]


@pytest.mark.parametrize(("spec", "function", "expected", "is_ce"), DISTILLM, ids=lambda x: x)
def test_matches_distillm(spec: dict, function: str, expected: float, is_ce: bool) -> None:
    """jongwooko/distillm at commit d47e77ff9d27721783b32213be38c1204230cc0a: the functions of
    ``distillm/losses.py`` (the file loaded alone: the package's ``__init__`` imports
    DeepSpeed) called as ``f(student, teacher, {"label": torch.where(mask, 0, -100)}, lam=...)``
    on the (B, T, V) logits. Its ``forward_kl`` and ``skewed_forward_kl`` return the
    cross-entropy -sum p log(.) (the KL plus the teacher's entropy, the same gradient)."""
    shift = teacher_entropy() if is_ce else 0.0
    assert loss_of(spec, rows()) + shift == pytest.approx(expected, abs=1e-5)


# The official code's numbers (rounded to 8 significant digits) for taid_students() against the
# lm_inputs() teacher: the loss before training, then per step the loss, t after the step's
# update_t (the t the next step uses) and the momentum after it.
TAID_OFFICIAL = {
    "defaults": (
        {},
        3.4382861,
        [3.3119583, 3.4316497, 3.5210731, 3.8698311, 3.9468842, 3.6903279],
        [0.4, 0.46, 0.52, 0.58, 0.64, 0.7],
        [0.0, -3.6139152e-4, -6.1836193e-4, -1.6026660e-3, -1.7857515e-3, -1.1178717e-3],
    ),
    "adaptive": (  # steps 1 to 3 rise faster than the linear floor
        {"t_start": 0.2, "t_end": 0.9, "alpha": 0.2, "beta": 0.5},
        2.8608606,
        [2.6022112, 2.7493577, 3.0891280, 3.4939570, 3.6805851, 3.6197031],
        [0.2, 0.27886915, 0.34824586, 0.41005182, 0.48, 0.55],
        [0.0, -0.028273351, -0.075927526, -0.10348857, -0.078451559, -0.030955072],
    ),
}


@pytest.mark.parametrize("case", TAID_OFFICIAL)
def test_taid_matches_the_official_code(case: str) -> None:
    """SakanaAI/TAID at commit a0628922c16169d1fca10ddf61849e0693289cf8,
    ``src/distil_losses/taid.py``: ``TAID(**settings)``; ``compute_loss(student, teacher,
    mask)`` on ``lm_inputs()`` (the loss before training), then for each step n of
    ``taid_students()`` ``loss = compute_loss(s_n, teacher, mask)`` and ``update_t(loss,
    global_step=n, num_train_steps=10)``. Its ``__init__`` puts its buffers on "cuda"; this
    machine has no GPU, so torch.tensor/torch.zeros were wrapped during ``__init__`` to put
    them on the CPU (nothing else changed). lightning was installed for its imports only."""
    settings, before, losses, ts, momenta = TAID_OFFICIAL[case]
    term = TAID(TAIDLoss(**settings), total_steps=10)
    with torch.no_grad():  # no training-mode forward recorded, as compute_loss alone
        assert float(term(rows()).total) == pytest.approx(before, abs=1e-5)
    t_used = term.spec.t_start
    for student, loss, t, m in zip(taid_students(), losses, ts, momenta, strict=True):
        out = term(rows(student.requires_grad_()))
        assert float(out.parts["t"]) == pytest.approx(t_used, abs=1e-6)
        assert float(out.total.detach()) == pytest.approx(loss, abs=1e-5)
        term.on_step_end(float(out.total.detach()))
        assert float(term.t) == pytest.approx(t, abs=1e-6)
        assert float(term.m) == pytest.approx(m, abs=1e-6)
        t_used = t


# --- the missing-mass rules -----------------------------------------------------------------


SPECS = [
    {"type": "forward_kl"},
    {"type": "reverse_kl"},
    {"type": "jsd", "beta": 0.3},
    {"type": "skew_kl", "alpha": 0.2},
    {"type": "skew_kl", "alpha": 0.2, "direction": "reverse"},
    {"type": "taid", "t_start": 0.6},
]


def flat_tails(seed: int, n: int, vocab: int, k: int) -> tuple[torch.Tensor, ...]:
    """Teacher and student logits (n, vocab) that share their top-k ids and are flat (one value
    per row) outside them; the teacher's top-k cache (logits, not log-probs) and rest mass."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(vocab, generator=g)[:k] for _ in range(n)])
    teacher = torch.full((n, vocab), -1.0).scatter(1, ids, 2 + torch.randn(n, k, generator=g))
    student = torch.randn(n, 1, generator=g).expand(n, vocab).clone()
    student.scatter_(1, ids, torch.randn(n, k, generator=g) * 2)
    values = teacher.gather(1, ids)
    rest = 1 - torch.softmax(teacher.double(), -1).gather(1, ids).sum(-1)
    return teacher, student, ids, values, rest.float()


def both(spec: dict, dense: KDBatch, sparse: KDBatch, rule: str) -> tuple[float, float]:
    topk = {**spec, "targets": "topk", "missing": rule}
    return loss_of(spec, dense, 100), loss_of(topk, sparse, 100)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_symmetric_uniform_is_exact_when_both_tails_are_flat(spec: dict, temperature: float):
    """The rule's assumption holds, so the top-k loss equals the dense one at any T."""
    teacher, student, ids, values, rest = flat_tails(0, 7, 30, 4)
    if spec["type"] != "taid":
        spec = {**spec, "temperature": temperature}
    dense = KDBatch(student_logits=student, teacher_logits=teacher)
    sparse = KDBatch(
        student_logits=student,
        teacher_topk_indices=ids,
        teacher_topk_values=values,
        teacher_rest_mass=rest,
    )
    expected, got = both(spec, dense, sparse, "symmetric_uniform")
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("spec", [s for s in SPECS if s["type"] != "reverse_kl"], ids=repr)
def test_zero_is_exact_when_the_teacher_has_no_tail(spec: dict) -> None:
    """A teacher whose logits outside its top-k are -1e4 (probability 0 in float32)."""
    teacher, student, ids, values, _ = flat_tails(1, 7, 30, 4)
    teacher = torch.full_like(teacher, -1e4).scatter(1, ids, values)
    student = student + torch.randn(student.shape, generator=torch.Generator().manual_seed(2))
    dense = KDBatch(student_logits=student, teacher_logits=teacher)
    sparse = KDBatch(student_logits=student, teacher_topk_indices=ids, teacher_topk_values=values)
    expected, got = both(spec, dense, sparse, "zero")
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("rule", ["zero", "symmetric_uniform"])
@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_a_cache_of_the_whole_vocabulary_is_the_dense_loss(spec: dict, rule: str) -> None:
    student, teacher, mask, _, _ = lm_inputs()
    logp, ids = torch.log_softmax(teacher, -1).sort(-1, descending=True)  # k = V
    dense = rows()
    sparse = KDBatch(
        **token_rows(  # type: ignore[arg-type]
            mask,
            student_logits=student,
            teacher_topk_indices=ids,
            teacher_topk_values=logp,
            teacher_rest_mass=torch.zeros(B, T),
        )
    )
    expected, got = both(spec, dense, sparse, rule)
    assert got == pytest.approx(expected, rel=1e-5)


def np_log_softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = z / t
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def test_reverse_kl_zero_renormalises_both_over_the_top_k_by_hand() -> None:
    batch, temperature = rows(), 1.5
    z = batch.student_logits.double().numpy()
    ids, v = batch.teacher_topk_indices.numpy(), batch.teacher_topk_values.double().numpy()  # type: ignore[union-attr]
    q = np_log_softmax(np.take_along_axis(z, ids, 1), temperature)
    p = np_log_softmax(v, temperature)
    expected = temperature**2 * np.mean(np.sum(np.exp(q) * (q - p), -1))
    spec = {"type": "reverse_kl", "targets": "topk", "temperature": temperature}
    assert loss_of(spec, batch) == pytest.approx(expected, rel=1e-5)


def test_symmetric_uniform_rest_bins_by_hand_for_reverse_kl_and_taid() -> None:
    batch = rows()
    z = batch.student_logits.double().numpy()
    ids = batch.teacher_topk_indices.numpy()  # type: ignore[union-attr]
    v = batch.teacher_topk_values.double().numpy()  # type: ignore[union-attr]
    r_t = batch.teacher_rest_mass.double().numpy()[:, None]  # type: ignore[union-attr]
    q_all = np_log_softmax(z)
    q_top = np.take_along_axis(q_all, ids, 1)
    s = np.concatenate([q_top, np.log(1 - np.exp(q_top).sum(1, keepdims=True))], 1)
    t = np.concatenate([v, np.log(r_t)], 1)  # v are log-probabilities at T = 1
    reverse = np.mean(np.sum(np.exp(s) * (s - t), -1))
    spec = {"type": "reverse_kl", "targets": "topk", "missing": "symmetric_uniform"}
    assert loss_of(spec, batch) == pytest.approx(reverse, rel=1e-5)
    lam = 0.4  # TAID at its first step: geometric interpolation over the k + 1 bins
    target = np.exp(np_log_softmax((1 - lam) * s + lam * t))
    ce_rows = -np.sum(target * s, -1) + target[:, -1] * math.log(V - K)
    taid = {"type": "taid", "targets": "topk", "missing": "symmetric_uniform"}
    assert loss_of(taid, batch) == pytest.approx(np.mean(ce_rows), rel=1e-5)


@pytest.mark.parametrize("rule", ["zero", "symmetric_uniform"])
def test_cached_logits_and_cached_log_probabilities_give_the_same_loss(rule: str) -> None:
    """Values may be the teacher's logits or log-probabilities: any per-row shift."""
    batch = rows()
    shifted = rows()
    shifted.teacher_topk_values = (
        batch.teacher_topk_values
        + torch.randn(  # type: ignore[operator]
            batch.student_logits.shape[0], 1
        )
        * 5
    )
    for spec in SPECS:
        topk = {**spec, "targets": "topk", "missing": rule}
        assert loss_of(topk, shifted) == pytest.approx(loss_of(topk, batch), rel=1e-5)


def test_rest_mass_from_a_cached_logsumexp() -> None:
    _, teacher, _, _, _ = lm_inputs()
    values, _ = teacher.topk(K, dim=-1)
    lse = torch.logsumexp(teacher, -1)
    expected = 1 - torch.softmax(teacher.double(), -1).topk(K, dim=-1).values.sum(-1)
    got = rest_mass_from_logsumexp(values, lse)
    assert torch.allclose(got.double(), expected, atol=1e-6)
    assert float(rest_mass_from_logsumexp(values, lse - 1.0).min()) == 0.0  # clamped


# --- masking, weights, combination ----------------------------------------------------------


@pytest.mark.parametrize("rule", ["zero", "symmetric_uniform"])
@pytest.mark.parametrize("spec", [*SPECS, {"type": "ce"}], ids=repr)
def test_masked_rows_and_row_weights_agree_and_padding_does_not_count(spec: dict, rule: str):
    student, teacher, mask, ids, logp = lm_inputs()
    garbage = student.clone()
    garbage[~mask] = 1e3  # what sits at padded positions must not matter
    fields = {
        "teacher_logits": teacher,
        "teacher_topk_indices": ids,
        "teacher_topk_values": logp,
        "teacher_rest_mass": 1 - logp.exp().sum(-1),
        "labels": teacher.argmax(-1),
    }
    if spec["type"] != "ce":
        spec = {**spec, "targets": "topk", "missing": rule}
    dropped = KDBatch(**token_rows(mask, student_logits=student, **fields))  # type: ignore[arg-type]
    weighted = KDBatch(
        **token_rows(torch.ones_like(mask), student_logits=garbage, **fields),  # type: ignore[arg-type]
        row_weights=mask.flatten().float(),
    )
    assert loss_of(spec, weighted) == pytest.approx(loss_of(spec, dropped), rel=1e-6)
    # each token counts once: a sequence's weight is its number of real tokens
    counts, per_sequence = mask.sum(1).tolist(), 0.0
    for i, n in enumerate(counts):
        one = {k: v[i : i + 1] for k, v in {"student_logits": student, **fields}.items()}
        per_sequence += n * loss_of(spec, KDBatch(**token_rows(mask[i : i + 1], **one)))  # type: ignore[arg-type]
    assert loss_of(spec, dropped) == pytest.approx(per_sequence / sum(counts), rel=1e-5)


def test_next_token_cross_entropy_is_pytorchs_with_ignored_positions() -> None:
    student, teacher, mask, _, _ = lm_inputs()
    labels = teacher.argmax(-1)
    expected = torch.nn.functional.cross_entropy(
        student.reshape(-1, V), torch.where(mask, labels, -100).flatten(), ignore_index=-100
    )
    batch = KDBatch(**token_rows(mask, student_logits=student, labels=labels))  # type: ignore[arg-type]
    assert loss_of({"type": "ce"}, batch) == pytest.approx(float(expected), rel=1e-6)


def test_terms_combine_with_weights_and_log_their_parts() -> None:
    specs = [
        {"type": "ce", "weight": 0.5},
        {"type": "forward_kl", "targets": "topk", "temperature": 2.0},
        {"type": "skew_kl", "targets": "topk", "direction": "reverse", "weight": 3.0},
    ]
    batch = rows()
    batch.labels = batch.teacher_logits.argmax(-1)  # type: ignore[union-attr]
    batch.student_logits.requires_grad_()
    total, parts = build_loss(specs, num_classes=V)(batch)
    singles = [loss_of(s, batch) for s in specs]
    assert float(total.detach()) == pytest.approx(sum(singles), rel=1e-6)
    assert parts["forward_kl/kl"] == pytest.approx(singles[1] / 4, rel=1e-6)  # without T^2
    assert parts["skew_kl/total"] == pytest.approx(singles[2], rel=1e-6)
    total.backward()
    assert torch.isfinite(batch.student_logits.grad).all()  # type: ignore[arg-type]


@pytest.mark.parametrize("rule", ["zero", "symmetric_uniform"])
def test_gradients_stay_finite_at_the_edges(rule: str) -> None:
    """A rest mass of 0 and of nearly 1, a student sure of one token, padding rows of inf."""
    student, _, mask, ids, logp = lm_inputs()
    student = student.clone()
    student[0, 0] = -30.0
    student[0, 0, ids[0, 0, 0]] = 30.0  # all its mass on one kept id: r_s ~ 1e-24
    student[~mask] = float("inf")
    rest = 1 - logp.exp().sum(-1)
    rest[0, 1], rest[1, 2] = 0.0, 1.0
    student.requires_grad_()
    batch = KDBatch(
        student_logits=student.reshape(-1, V),
        teacher_topk_indices=ids.reshape(-1, K),
        teacher_topk_values=logp.reshape(-1, K),
        teacher_rest_mass=rest.flatten(),
        row_weights=mask.flatten().float(),
    )
    for spec in SPECS:
        topk = {**spec, "targets": "topk", "missing": rule}
        total, _ = build_loss([topk], num_classes=V, total_steps=5)(batch)
        assert torch.isfinite(total), spec
        (grad,) = torch.autograd.grad(total, student)
        assert torch.isfinite(grad[mask]).all(), spec


# --- cost: sparse targets never become (N, V) tensors ---------------------------------------


class _FullSizeOps(TorchDispatchMode):
    """Records every op whose output has at least ``size`` elements."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size, self.ops = size, []  # type: ignore[var-annotated]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, tuple | list) else [out]:
            if isinstance(o, torch.Tensor) and o.numel() >= self.size:
                self.ops.append(func.__name__)
        return out


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"type": "forward_kl"}, []),
        ({"type": "reverse_kl"}, []),
        ({"type": "taid"}, []),
        ({"type": "skew_kl"}, []),
        ({"type": "jsd"}, ["scatter.value"]),
        ({"type": "forward_kl", "missing": "symmetric_uniform"}, ["scatter.value"]),
        ({"type": "taid", "missing": "symmetric_uniform"}, ["scatter.value"]),
        ({"type": "forward_kl", "temperature": 2.0}, ["div.Tensor"]),
    ],
    ids=repr,
)
def test_sparse_terms_make_no_vocabulary_sized_tensor_but_the_students(spec, expected) -> None:
    """The forward pass of a top-k term at N = 64 tokens and V = 32,000 creates no (N, V)
    tensor, except one copy of the student's logits where the rule needs its mass outside
    the top-k (the masked log-sum-exp) and z / T at T != 1."""
    n, vocab, k = 64, 32_000, 16
    g = torch.Generator().manual_seed(3)
    student = torch.randn(n, vocab, generator=g, requires_grad=True)
    logp, ids = torch.log_softmax(torch.randn(n, vocab, generator=g) * 3, -1).topk(k)
    batch = KDBatch(
        student_logits=student,
        teacher_topk_indices=ids,
        teacher_topk_values=logp,
        teacher_rest_mass=1 - logp.exp().sum(-1),
    )
    loss = build_loss([{**spec, "targets": "topk"}], num_classes=vocab, total_steps=5)
    with _FullSizeOps(n * vocab) as seen:
        loss(batch)
    assert seen.ops == expected


# --- errors ---------------------------------------------------------------------------------


def test_sparse_specs_refuse_dense_only_inputs_and_say_what_to_change() -> None:
    batch = rows()
    dense_only = KDBatch(student_logits=batch.student_logits, teacher_logits=batch.teacher_logits)
    topk_only = KDBatch(
        student_logits=batch.student_logits,
        teacher_topk_indices=batch.teacher_topk_indices,
        teacher_topk_values=batch.teacher_topk_values,
    )
    forward = build_loss([{"type": "forward_kl", "targets": "topk"}], num_classes=V)
    lacks = r"lacks \['teacher_topk_indices', 'teacher_topk_values'\]"
    with pytest.raises(ValueError, match=lacks) as error:
        forward(dense_only)
    assert "has dense teacher logits only: set targets: dense" in str(error.value)
    with pytest.raises(ValueError, match="has a top-k cache only: set targets: topk"):
        build_loss([{"type": "jsd"}], num_classes=V)(topk_only)
    uniform = build_loss(
        [{"type": "taid", "targets": "topk", "missing": "symmetric_uniform"}],
        num_classes=V,
        total_steps=3,
    )
    with pytest.raises(ValueError, match=r"lacks \['teacher_rest_mass'\].*with missing: zero"):
        uniform(topk_only)
    with pytest.raises(ValueError, match=r"loss 'forward_kl' needs .*set targets: dense"):
        forward.terms[0](dense_only)


def test_k_larger_than_the_vocabulary_and_ids_outside_it_are_refused() -> None:
    batch = rows()
    small = KDBatch(
        student_logits=batch.student_logits[:, :4],
        teacher_topk_indices=batch.teacher_topk_indices,
        teacher_topk_values=batch.teacher_topk_values,
    )
    loss = build_loss([{"type": "forward_kl", "targets": "topk"}], num_classes=4)
    with pytest.raises(
        ValueError, match="keeps k = 5 ids per token, more than the vocabulary of 4"
    ):
        loss(small)
    small.student_logits = batch.student_logits[:, :30]
    small.teacher_topk_indices = torch.arange(K).expand(len(small.student_logits), K).clone()
    small.teacher_topk_indices[3, 1] = 35
    with pytest.raises(ValueError, match=r"ids from 0 to 35 .* vocabulary of 30 \(0 to 29\)"):
        loss(small)


def test_shapes_that_do_not_fit_are_refused() -> None:
    batch = rows()
    taid = build_loss([{"type": "taid"}], num_classes=V, total_steps=3)
    assert batch.teacher_logits is not None
    other_vocab = KDBatch(batch.student_logits, teacher_logits=batch.teacher_logits[:, :30])
    with pytest.raises(ValueError, match="must share the tokenizer"):
        taid(other_vocab)
    sequences = KDBatch(student_logits=torch.zeros(B, T, V), teacher_logits=torch.zeros(B, T, V))
    with pytest.raises(ValueError, match=r"takes rows \(N, V\).*token_rows"):
        build_loss([{"type": "reverse_kl"}], num_classes=V)(sequences)
    two = KDBatch(
        student_logits=batch.student_logits,
        teacher_topk_indices=torch.stack([batch.teacher_topk_indices] * 2),  # type: ignore[list-item]
        teacher_topk_values=torch.stack([batch.teacher_topk_values] * 2),  # type: ignore[list-item]
    )
    with pytest.raises(ValueError, match="takes one teacher's cache"):
        build_loss([{"type": "jsd", "targets": "topk"}], num_classes=V)(two)
    batch.teacher_rest_mass = batch.teacher_rest_mass[:3]  # type: ignore[index]
    uniform = {"type": "skew_kl", "targets": "topk", "missing": "symmetric_uniform"}
    with pytest.raises(ValueError, match=r"teacher_rest_mass has shape \(3,\), expected \(9,\)"):
        build_loss([uniform], num_classes=V)(batch)
    with pytest.raises(ValueError, match=r"first two dims must be the mask's \(2, 6\)"):
        token_rows(torch.ones(B, T), student_logits=torch.zeros(B, T + 1, V))


def test_terms_that_average_every_row_refuse_row_weights() -> None:
    batch = rows()
    batch.row_weights = torch.ones(batch.student_logits.shape[0])
    with pytest.raises(ValueError, match=r"loss 'kd' .* does not take row_weights: leave the"):
        build_loss([{"type": "kd", "alpha": 1.0}], num_classes=V)(batch)
    batch.row_weights = torch.ones(3)
    with pytest.raises(ValueError, match=r"row_weights has shape \(3,\)"):
        build_loss([{"type": "forward_kl"}], num_classes=V)(batch)


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"type": "forward_kl", "targets": "sparse"}, "targets"),
        ({"type": "reverse_kl", "missing": "uniform"}, "missing"),
        ({"type": "jsd", "beta": 1.0}, "beta"),
        ({"type": "skew_kl", "alpha": 0.0}, "alpha"),
        ({"type": "skew_kl", "direction": "both"}, "direction"),
        ({"type": "forward_kl", "temperature": 0}, "temperature"),
        ({"type": "taid", "missing": "drop"}, "missing"),
    ],
)
def test_bad_token_loss_fields_are_named(item: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        build_loss([item], num_classes=V, total_steps=3)


def test_what_each_spec_requires() -> None:
    from schemas.kd.losses import ForwardKLLoss, JSDLoss, ReverseKLLoss, SkewKLLoss

    topk = {"student_logits", "teacher_topk_indices", "teacher_topk_values"}
    for cls in (ForwardKLLoss, ReverseKLLoss, JSDLoss, SkewKLLoss, TAIDLoss):
        assert cls().requires() == {"student_logits", "teacher_logits"}
        assert cls(targets="topk").requires() == topk
        assert cls(targets="topk", missing="symmetric_uniform").requires() == topk | {
            "teacher_rest_mass"
        }
