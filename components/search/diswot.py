"""The DisWOT score: how alike a candidate student and a teacher are, on one batch, untrained.

DisWOT (Dong, Li, Wei, CVPR 2023) ranks candidate students for a teacher without training any
of them. On one labelled batch of N rows and K classes:

**Semantic term.** Each network's gradient map is the gradient of the mean cross-entropy with
respect to its final linear layer, ``g = dCE/dW`` (K x C, C the penultimate width). We compute
it in closed form, ``g = (softmax(z) - onehot(y))^T f / N`` with f the classifier's input,
which is exactly what a CE backward leaves in ``classifier.weight.grad`` (no autograd graph is
built). Per class k, ``G_k = g_k g_k^T`` (C x C), each row L2-normalised (``Ĝ_k``)::

    M_s = 1/(K·C) · Σ_k ||Ĝ^S_k - Ĝ^T_k||_F²

**Relation term.** f = the last feature map before pooling (for an MLP, the last hidden
activation), flattened to N x D; ``G = f f^T`` (N x N), rows L2-normalised::

    M_r = ||Ĝ^T - Ĝ^S||_F² / N²

**Score** = ``-(M_s + M_r)``: higher is better; ``terms`` keeps one term alone. The official
NAS-Bench-201 correlation script adds the two terms (``exps/parse_nb201_distill.py``,
``compute_diswot_procedure``); its NAS-Bench-101 script and its searches use one at a time.
M_s lies in [0, 4] and M_r in [0, 4/N] (rows are unit vectors), so added, the semantic term
dominates. Since G_k has rank one, row i of Ĝ_k is ``sign(g_ki) · g_k / ||g_k||``.

**Which network is trained.** Neither: teacher and candidate are both scored at random
initialisation (only the teacher's architecture matters, so a search needs no trained
teacher). ``init="gaussian"`` (the default) is the official correlation scripts'
``network_weight_gaussian_init``, applied to the teacher and to every candidate
(``exps/parse_nb201_distill.py``, ``compute_diswot_procedure``): conv and linear weights
N(0, 1), their biases 0, norm layers weight 1 and bias 0 (zoo `diswot_init_`).
``init="default"`` keeps the zoo's own (PyTorch's) initialisation, as the official
evolutionary searches keep their models' own.
`DiswotScorer` can also take a trained teacher as is (``teacher_weights="trained"``, eval
mode): a variant, not the paper's. Networks at initialisation run with batch statistics in their
norm layers (training mode, as the official code) and dropout off. Teacher and candidates get
different seeds (derived from one ``seed``), so an architecture identical to the teacher's is
not given identical weights; every candidate gets the same seed (common random numbers), which
makes a score independent of the order and the process in which candidates are scored.

**Unequal widths.** The relation term compares N x N matrices, so any widths work. The semantic
Gram is channel by channel, so C must match. The official call passes the teacher's map first
(``criterion_ickd([t], [s])``), so ``ICKDLoss`` (``distiller_zoo/ICKD.py``, ``batch_loss``)
takes ``K, C_t`` from the teacher and reshapes the *student's* map with ``view(K, C_t, -1)``:
when C_s is a multiple of C_t, row i gathers student channels ``i·r .. i·r + r - 1``
(r = C_s / C_t) and ``G_k = M_k M_k^T`` is C_t x C_t; a student narrower than the teacher (or
of a width that is not a multiple) fails. ``width_mismatch="fold"`` does that, and folds the
teacher the same way when the student is the narrower (raising when the widths do not divide);
``"project"`` (the default) multiplies the wider map by a fixed Gaussian matrix
(C_wide x C_narrow, entries N(0, 1/C_narrow), seeded by ``seed`` and the two widths, so every
candidate of one width sees the same projection). Equal widths are never changed.

**Correction.** Nothing ties student channel i to teacher channel i at initialisation, so M_s
mostly measures a width-dependent chance level (about ``2 - 4/(π C)``), and a dead channel
lowers it. ``correction="null_expectation"`` subtracts the exact chance level and drops
channels that are constant over the batch (`components.search.null_expectation`).

Gram matrices and distances are computed in float64; everything is deterministic given
``seed`` on one machine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from components.models.profile import diswot_init_
from components.models.zoo import KDModel, build_model
from components.search.null_expectation import (
    NO_LIVE_CHANNEL,
    corrected_semantic,
    live_channels,
)
from schemas.kd.models import AnyModelSpec

InitScheme = Literal["default", "gaussian"]
WidthMismatch = Literal["project", "fold"]
Terms = Literal["both", "semantic", "relation"]
Correction = Literal["none", "null_expectation"]

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from ``seed`` and labels, stable across processes (unlike ``hash``)."""
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def initialised_model(spec: AnyModelSpec, *, init: InitScheme = "gaussian", seed: int) -> KDModel:
    """A fresh zoo model whose weights depend on ``seed`` alone (global RNG untouched)."""
    model = build_model(spec, seed=seed)
    if init == "gaussian":
        diswot_init_(model, seed=seed)
    return model


def classifier_gradient(
    logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """d mean-CE / d W of the final linear layer ``logits = features @ W^T + b``: (K, C).

    Equals ``classifier.weight.grad`` after ``F.cross_entropy(logits, labels).backward()``.
    """
    num_rows, num_classes = logits.shape
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    residual = torch.softmax(logits.double(), dim=1) - F.one_hot(labels, num_classes).double()
    return residual.T @ features.double() / num_rows


def semantic_gram(gradient: torch.Tensor) -> torch.Tensor:
    """Per-class channel Grams ``Ĝ_k = rownorm(M_k M_k^T)``: (K, C, C).

    ``gradient`` is (K, C) (then ``M_k = g_k`` as a column) or (K, C, r) (a folded map).
    """
    maps = gradient.double()
    if maps.dim() == 2:
        maps = maps.unsqueeze(-1)
    return F.normalize(maps @ maps.transpose(1, 2), dim=2)


def relation_gram(feature_map: torch.Tensor) -> torch.Tensor:
    """Sample Gram ``Ĝ = rownorm(f f^T)`` of the flattened feature map: (N, N)."""
    flat = feature_map.double().flatten(1)
    return F.normalize(flat @ flat.T, dim=1)


def match_widths(
    student: torch.Tensor, teacher: torch.Tensor, *, mode: WidthMismatch, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring two gradient maps (K, C_s), (K, C_t) to one channel count (see the module doc)."""
    c_s, c_t = student.shape[1], teacher.shape[1]
    if c_s == c_t:
        return student, teacher
    wide, narrow = (student, c_t) if c_s > c_t else (teacher, c_s)
    c_wide = wide.shape[1]
    if mode == "fold":
        if c_wide % narrow:
            raise ValueError(
                f"width_mismatch 'fold' needs one feature width to divide the other; student "
                f"{c_s} and teacher {c_t} do not (use 'project')"
            )
        matched = wide.reshape(wide.shape[0], narrow, c_wide // narrow)
    else:
        generator = torch.Generator().manual_seed(derive_seed(seed, "project", c_wide, narrow))
        projection = torch.randn(c_wide, narrow, generator=generator, dtype=torch.float64)
        matched = wide.double() @ (projection / math.sqrt(narrow))
    return (matched, teacher) if c_s > c_t else (student, matched)


def semantic_distance(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    mode: WidthMismatch = "project",
    seed: int = 0,
    correction: Correction = "none",
) -> float:
    """M_s = 1/(K·C) Σ_k ||Ĝ^S_k - Ĝ^T_k||_F² of two gradient maps (K, C_s), (K, C_t); with
    ``correction="null_expectation"``, minus its expectation over random channel matchings."""
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"student and teacher have {student.shape[0]} and {teacher.shape[0]} classes"
        )
    if correction != "none" and min(student.shape[1], teacher.shape[1]) == 0:
        return NO_LIVE_CHANNEL
    s, t = match_widths(student, teacher, mode=mode, seed=seed)
    g_s, g_t = semantic_gram(s), semantic_gram(t)
    if correction == "null_expectation":
        return corrected_semantic(g_s, g_t)
    k, c = g_s.shape[:2]
    return float(((g_s - g_t) ** 2).sum() / (k * c))


def relation_distance(student_gram: torch.Tensor, teacher_gram: torch.Tensor) -> float:
    """M_r = ||Ĝ^T - Ĝ^S||_F² / N² of two sample Grams from `relation_gram`."""
    n = teacher_gram.shape[0]
    return float(((teacher_gram - student_gram) ** 2).sum() / (n * n))


@dataclass(frozen=True)
class Probe:
    """What the score needs of one network on the batch: its gradient map and sample Gram."""

    gradient: torch.Tensor
    """(K, C) float64."""
    relation: torch.Tensor
    """(N, N) float64, row-normalised."""


@torch.no_grad()
def probe(
    model: KDModel,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_stats: bool = True,
    drop_dead: bool = False,
) -> Probe:
    """Run ``model`` once on the batch. ``batch_stats``: norm layers use the batch's statistics
    (training mode, for networks at initialisation); else eval mode. Dropout is always off.
    The model's train/eval flags are restored afterwards. ``drop_dead``: leave out the channels
    that are constant over the batch (the corrected score)."""
    modes = {module: module.training for module in model.modules()}
    try:
        model.train(batch_stats)
        for module in model.modules():
            if isinstance(module, _DROPOUTS):
                module.eval()
        out = model.forward_features(inputs)
    finally:
        for module, training in modes.items():
            module.training = training
    gradient = classifier_gradient(out.logits, out.features, labels)
    feature_map = out.feature_map
    if drop_dead:
        gradient = gradient[:, live_channels(out.features)]
        feature_map = feature_map[:, live_channels(feature_map)]
    return Probe(gradient, relation_gram(feature_map))


@dataclass(frozen=True)
class DiswotScore:
    """A candidate's score (higher is better) and the two distances it is made of."""

    score: float
    semantic: float
    relation: float

    def as_dict(self) -> dict[str, float]:
        """``{"score", "semantic", "relation"}``."""
        return {"score": self.score, "semantic": self.semantic, "relation": self.relation}


def diswot_score(
    student: Probe,
    teacher: Probe,
    *,
    width_mismatch: WidthMismatch = "project",
    terms: Terms = "both",
    seed: int = 0,
    correction: Correction = "none",
) -> DiswotScore:
    """Score = -(M_s + M_r) (or one term alone) from the probes of a student and a teacher
    (probed with ``drop_dead`` for the correction)."""
    semantic = (
        semantic_distance(
            student.gradient,
            teacher.gradient,
            mode=width_mismatch,
            seed=seed,
            correction=correction,
        )
        if terms != "relation"
        else 0.0
    )
    relation = relation_distance(student.relation, teacher.relation) if terms != "semantic" else 0.0
    return DiswotScore(-(semantic + relation), semantic, relation)


class HasSpec(Protocol):
    """Anything carrying a zoo spec (a search `Candidate`)."""

    @property
    def spec(self) -> AnyModelSpec: ...


class DiswotScorer:
    """Scores candidates against one teacher on one fixed batch; picklable (tensors only).

    The teacher is probed once at construction (it is not kept). Call the scorer with a list
    of candidates (or specs) to score them all, in order; each is built fresh from its spec with
    the student seed, so a candidate's score does not depend on what else is scored, or where.

    Args:
        teacher: the teacher's spec, or a model (its ``spec`` is used unless
            ``teacher_weights="trained"``).
        inputs, labels: the batch (N rows of the dataset's input shape, N >= 2; labels < K).
        init: initialisation of fresh networks (module doc).
        teacher_weights: ``"init"`` (the paper): a fresh teacher; ``"trained"``: ``teacher``
            is used as given, in eval mode.
        width_mismatch, terms, correction: see `diswot_score` and the module doc.
        seed: seeds the teacher's and the candidates' weights and the projections.
    """

    def __init__(
        self,
        teacher: KDModel | AnyModelSpec,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        *,
        init: InitScheme = "gaussian",
        teacher_weights: Literal["init", "trained"] = "init",
        width_mismatch: WidthMismatch = "project",
        terms: Terms = "both",
        correction: Correction = "none",
        seed: int = 0,
    ) -> None:
        if inputs.shape[0] < 2 or inputs.shape[0] != labels.shape[0]:
            raise ValueError(
                f"need a batch of at least 2 rows with one label each, got {inputs.shape[0]} "
                f"rows and {labels.shape[0]} labels"
            )
        self.inputs = inputs
        self.labels = labels.long()
        self.init: InitScheme = init
        self.width_mismatch: WidthMismatch = width_mismatch
        self.terms: Terms = terms
        self.correction: Correction = correction
        drop_dead = correction != "none"
        self.seed = seed
        self.student_seed = derive_seed(seed, "student")
        if teacher_weights == "trained":
            if not isinstance(teacher, KDModel):
                raise ValueError("teacher_weights 'trained' needs the teacher model, not a spec")
            self.teacher = probe(
                teacher, inputs, self.labels, batch_stats=False, drop_dead=drop_dead
            )
        else:
            spec = teacher.spec if isinstance(teacher, KDModel) else teacher
            fresh = initialised_model(spec, init=init, seed=derive_seed(seed, "teacher"))
            self.teacher = probe(fresh, inputs, self.labels, drop_dead=drop_dead)
        if self.teacher.gradient.shape[1] == 0:
            raise ValueError(
                "no channel of the teacher's penultimate features varies over the scoring "
                "batch: the corrected score has nothing to compare (use correction: none)"
            )
        self.num_classes = self.teacher.gradient.shape[0]

    def score_model(self, student: KDModel, *, batch_stats: bool = True) -> DiswotScore:
        """Score a model as it is (no re-initialisation)."""
        if student.classifier.out_features != self.num_classes:
            raise ValueError(
                f"the student has {student.classifier.out_features} classes, the teacher "
                f"{self.num_classes}"
            )
        drop_dead = self.correction != "none"
        return diswot_score(
            probe(student, self.inputs, self.labels, batch_stats=batch_stats, drop_dead=drop_dead),
            self.teacher,
            width_mismatch=self.width_mismatch,
            terms=self.terms,
            seed=self.seed,
            correction=self.correction,
        )

    def score_spec(self, spec: AnyModelSpec) -> DiswotScore:
        """Score a fresh network built from ``spec`` with the student seed."""
        return self.score_model(initialised_model(spec, init=self.init, seed=self.student_seed))

    def __call__(self, candidates: Sequence[HasSpec | AnyModelSpec]) -> list[DiswotScore]:
        """Scores of candidates (anything with a ``spec``) or specs, in order."""
        return [self.score_spec(c if isinstance(c, AnyModelSpec) else c.spec) for c in candidates]
