"""Meta-DMoE's meta-distillation step and test-time adaptation, as pure functions.

Notation: f(.; theta) the student's feature extractor (``student(x, features_only=True)``),
head its ``classifier``, A(.; phi) the `Aggregator`, M(x) the frozen experts' features
(B, E, D_expert), alpha the inner learning rate.

Meta-training, one batch from ONE source domain, split into a support part (labels unused)
and a query part (`meta_step`):

    t      = A(mask(M(x_SU)); phi)                               (B_SU, D_student)
    l_in   = mean((f(x_SU; theta) - t)^2)                        mean over all elements
    theta' = theta - alpha * grad_theta l_in                     feature extractor only
    L      = CE(head(f(x_Q; theta')), y_Q)                       mean over the query

L.backward() reaches theta (directly and through grad_theta l_in), the head, and phi; phi only
through d theta' / d phi = -alpha * d^2 l_in / (d theta d t) * dt/dphi, so the inner gradient
keeps its graph (``create_graph=True``: second order, no first-order shortcut, which would give
phi no gradient at all). The head is never adapted in the inner step.

Test time (`adapt`, then `predict`): per target domain, t = A(M(x_unlabeled)) with all experts
(no mask, no gradient), the same inner step from theta (no graph kept), then predict the
domain's batches with theta'.

Modes: the official loop runs every module in eval mode, in meta-training as well as at test
time (BatchNorm uses and keeps its running statistics, dropout is off). `meta_step` and
`adapt` do the same: they switch the student and the aggregator to eval mode for the call and
restore each submodule's previous mode afterwards. Experts are the caller's business (compute
M(x) in eval mode under ``torch.no_grad()``, or read them from a cache).

Optimisers (the caller's business): the official code uses Adam on all student parameters
(features and head, lr ``slr``) and a second Adam on the aggregator (lr ``tlr``), steps both
after each `meta_step`, and multiplies both learning rates by 0.96 after every epoch
(``ExponentialLR(gamma=0.96)``); alpha (``ilr``) stays constant. Official iWildCam defaults:
batch 40 of which 24 support, tlr 1e-6, slr 3e-5, ilr 3e-4, 20 epochs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from components.metadmoe.transformer import Aggregator
from components.models.zoo import KDModel

FastWeights = dict[str, Tensor]
"""Feature-extractor parameters by name (as in ``student.named_parameters()``)."""

_HEAD = "classifier."


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode; on exit restore every submodule's own previous mode."""
    saved = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in saved:
            m.training = training


def feature_parameters(student: KDModel) -> dict[str, nn.Parameter]:
    """The trainable parameters of the feature extractor: all but ``classifier.*``.

    These are what the inner step adapts. Frozen parameters (``requires_grad=False``) are left
    out and stay fixed.

    Raises:
        ValueError: the student has no trainable feature-extractor parameter.
    """
    params = {
        name: p
        for name, p in student.named_parameters()
        if not name.startswith(_HEAD) and p.requires_grad
    }
    if not params:
        raise ValueError("meta-dmoe: the student's feature extractor has no trainable parameter")
    return params


def student_features(student: KDModel, weights: FastWeights, x: Tensor) -> Tensor:
    """f(x; weights): penultimate features (B, feature_dim) with ``weights`` in place of the
    student's own (parameters and buffers not in ``weights`` are the student's)."""
    return functional_call(student, weights, (x,), {"features_only": True})


def inner_step(
    student: KDModel,
    weights: FastWeights,
    x_support: Tensor,
    target: Tensor,
    inner_lr: float,
    *,
    create_graph: bool,
) -> tuple[FastWeights, Tensor]:
    """One inner step: w' = w - inner_lr * grad_w mean((f(x_support; w) - target)^2).

    Returns (w', l_in), with l_in the inner MSE before the step (still attached to the graph).
    ``create_graph=True`` keeps the graph of the gradient, so w' is differentiable w.r.t. w and
    ``target`` (meta-training); with False, w' depends on neither (test time). Weights the
    loss does not reach are returned unchanged.

    Raises:
        ValueError: the student's features and the target differ in shape.
    """
    feats = student_features(student, weights, x_support)
    if feats.shape != target.shape:
        raise ValueError(
            f"meta-dmoe: student features {tuple(feats.shape)} and aggregator target "
            f"{tuple(target.shape)} differ; build the Aggregator with "
            f"student_dim={feats.shape[-1]} and one expert row per support sample"
        )
    mse = F.mse_loss(feats, target)
    names = list(weights)
    grads = torch.autograd.grad(
        mse, [weights[n] for n in names], create_graph=create_graph, allow_unused=True
    )
    updated = {
        n: weights[n] if g is None else weights[n] - inner_lr * g
        for n, g in zip(names, grads, strict=True)
    }
    return updated, mse


@dataclass
class MetaStepOutput:
    """What `meta_step` returns: the loss to back-propagate and detached parts for logging."""

    loss: Tensor
    """Outer loss L = CE(head(f(x_Q; theta')), y_Q), scalar, attached to the graph."""
    inner_mse: Tensor
    """l_in, the inner MSE between f(x_SU; theta) and the aggregator's target (detached)."""
    outer_ce: Tensor
    """L, detached."""
    accuracy: Tensor
    """Query accuracy of the adapted student (detached, in [0, 1])."""
    ce_before: Tensor | None = None
    """CE on the query with the unadapted theta (only with ``log_pre_adaptation``)."""

    def metrics(self) -> dict[str, float]:
        """The logged parts as floats: inner_mse, outer_ce, accuracy (and ce_before)."""
        out = {
            "inner_mse": float(self.inner_mse),
            "outer_ce": float(self.outer_ce),
            "accuracy": float(self.accuracy),
        }
        if self.ce_before is not None:
            out["ce_before"] = float(self.ce_before)
        return out


def _check_inner_lr(inner_lr: float) -> None:
    if not (math.isfinite(inner_lr) and inner_lr >= 0):
        raise ValueError(f"meta-dmoe: inner_lr must be a finite number >= 0, got {inner_lr}")


def _check_target_width(student: KDModel, aggregator: Aggregator) -> None:
    if aggregator.out_dim != student.feature_dim:
        raise ValueError(
            f"meta-dmoe: the aggregator's output width {aggregator.out_dim} differs from the "
            f"student's feature width {student.feature_dim}; build "
            f"Aggregator(expert_dim, student_dim={student.feature_dim})"
        )


def _check_rows(expert_feats: Tensor, x: Tensor, what: str) -> None:
    if expert_feats.dim() != 3 or expert_feats.shape[0] != x.shape[0]:
        raise ValueError(
            f"meta-dmoe: {what} expert features must be (B, E, D_expert) with B = "
            f"{x.shape[0]} rows like x, got {tuple(expert_feats.shape)}"
        )


def meta_step(
    student: KDModel,
    aggregator: Aggregator,
    support_expert_feats: Tensor,
    support_mask: Tensor | None,
    x_support: Tensor,
    x_query: Tensor,
    y_query: Tensor,
    *,
    inner_lr: float,
    log_pre_adaptation: bool = False,
    first_order: bool = False,
) -> MetaStepOutput:
    """One meta-distillation step (module docstring): the outer loss and its logged parts.

    Args:
        student: the student; its ``classifier`` is the head, the rest is adapted.
        aggregator: A(.; phi), with ``out_dim == student.feature_dim``.
        support_expert_feats: M(x_SU), (B_SU, E, D_expert), no gradient needed.
        support_mask: (B_SU, E) bool, True hides an expert (`expert_mask` of the support's
            domains); None hides nothing.
        x_support: (B_SU, ...) support inputs; their labels are not used.
        x_query: (B_Q, ...) query inputs, same domain as the support.
        y_query: (B_Q,) int64 query labels.
        inner_lr: alpha, the inner step size.
        log_pre_adaptation: also compute CE on the query before the inner step (one extra
            forward without gradient), the official "Loss Before" log line.
        first_order: treat the inner gradient as a constant (first-order MAML): dL/dtheta
            passes straight through theta', and phi gets no gradient (an ablation).

    The student and the aggregator run in eval mode (restored afterwards), and under
    ``torch.enable_grad()`` (the inner step needs gradients even inside ``no_grad``). Nothing
    is updated: call ``out.loss.backward()`` and step the optimisers. The student's ``.grad``
    then holds dL/dtheta (features and head), the aggregator's dL/dphi.

    Raises:
        ValueError: inconsistent shapes or widths, or a negative ``inner_lr``.
    """
    _check_inner_lr(inner_lr)
    _check_target_width(student, aggregator)
    _check_rows(support_expert_feats, x_support, "support")
    with eval_mode(student, aggregator), torch.enable_grad():
        target = aggregator(support_expert_feats, support_mask)
        weights: FastWeights = dict(feature_parameters(student))
        fast, mse = inner_step(
            student, weights, x_support, target, inner_lr, create_graph=not first_order
        )
        logits = student.classifier(student_features(student, fast, x_query))
        ce = F.cross_entropy(logits, y_query)
        ce_before = None
        if log_pre_adaptation:
            with torch.no_grad():
                ce_before = F.cross_entropy(student(x_query), y_query)
    accuracy = (logits.detach().argmax(dim=1) == y_query).float().mean()
    return MetaStepOutput(ce, mse.detach(), ce.detach(), accuracy, ce_before)


def adapt(
    student: KDModel,
    aggregator: Aggregator,
    expert_feats_unlabeled: Tensor,
    x_unlabeled: Tensor,
    inner_lr: float,
    steps: int = 1,
) -> FastWeights:
    """Test-time adaptation to one target domain: theta' after ``steps`` inner steps.

    t = A(M(x_unlabeled)) with all experts (no mask), computed once without gradient; then
    ``steps`` times theta <- theta - inner_lr * grad mean((f(x_unlabeled; theta) - t)^2),
    starting from the student's own feature weights (the official code: one step, on the
    domain's first batch). Runs in eval mode and under ``torch.enable_grad()``, so it also
    works inside ``torch.no_grad()``.

    Returns:
        Detached fast weights for the feature extractor (`feature_parameters` names); the
        student itself (weights, buffers, ``.grad``, modes) is left untouched. Use them with
        `predict`, or `adapted_copy` for a standalone model.
    """
    _check_inner_lr(inner_lr)
    if steps < 0:
        raise ValueError(f"meta-dmoe: steps must be >= 0, got {steps}")
    _check_target_width(student, aggregator)
    _check_rows(expert_feats_unlabeled, x_unlabeled, "unlabeled")
    with eval_mode(student, aggregator), torch.enable_grad():
        with torch.no_grad():
            target = aggregator(expert_feats_unlabeled, None)
        weights: FastWeights = {
            n: p.detach().clone().requires_grad_() for n, p in feature_parameters(student).items()
        }
        for _ in range(steps):
            updated, _ = inner_step(
                student, weights, x_unlabeled, target, inner_lr, create_graph=False
            )
            weights = {n: w.detach().requires_grad_() for n, w in updated.items()}
    return {n: w.detach() for n, w in weights.items()}


def adapt_entropy(
    student: KDModel, x_unlabeled: Tensor, inner_lr: float, steps: int = 1
) -> FastWeights:
    """A control for test-time adaptation without experts: ``steps`` gradient steps of
    ``inner_lr`` on the feature extractor (the weights `adapt` moves) minimising the mean
    entropy of the student's predictions on ``x_unlabeled`` (Tent's objective, Wang et al.,
    ICLR 2021, on the same parameters as Meta-DMoE's step). Eval mode; detached fast weights."""
    _check_inner_lr(inner_lr)
    with eval_mode(student), torch.enable_grad():
        weights: FastWeights = {
            n: p.detach().clone().requires_grad_() for n, p in feature_parameters(student).items()
        }
        for _ in range(steps):
            log_p = F.log_softmax(
                student.classifier(student_features(student, weights, x_unlabeled)), 1
            )
            entropy = -(log_p.exp() * log_p).sum(1).mean()
            names = list(weights)
            grads = torch.autograd.grad(entropy, [weights[n] for n in names], allow_unused=True)
            weights = {
                n: (weights[n] if g is None else weights[n] - inner_lr * g)
                .detach()
                .requires_grad_()
                for n, g in zip(names, grads, strict=True)
            }
    return {n: w.detach() for n, w in weights.items()}


@torch.no_grad()
def predict(student: KDModel, fast_weights: FastWeights, x: Tensor) -> Tensor:
    """Logits (B, num_classes) of ``x`` with the adapted feature weights and the student's head,
    in eval mode, without gradient."""
    with eval_mode(student):
        return functional_call(student, fast_weights, (x,))


def adapted_copy(student: KDModel, fast_weights: FastWeights) -> KDModel:
    """A deep copy of the student with ``fast_weights`` loaded, in eval mode (e.g. to save an
    adapted checkpoint). The original is untouched.

    Raises:
        ValueError: a name in ``fast_weights`` is not a parameter of the student.
    """
    model = copy.deepcopy(student)
    result = model.load_state_dict(fast_weights, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"meta-dmoe: unknown weights {result.unexpected_keys[:5]}")
    return model.eval()
