"""Meta-DMoE library: aggregator, masking rule, second-order meta step, test-time adaptation."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.metadmoe.masking import expert_mask
from components.metadmoe.meta import (
    adapt,
    adapted_copy,
    feature_parameters,
    meta_step,
    predict,
    student_features,
)
from components.metadmoe.transformer import Aggregator, aggregator_head
from components.models.zoo import KDModel, build_model
from schemas.kd.models import MLPSpec, MnistCNNSpec

K = 3


def mlp(hidden: int = 6, in_dim: int = 5, seed: int = 0) -> KDModel:
    spec = MLPSpec(hidden=[7, hidden], activation="gelu", num_classes=K, input_shape=(in_dim,))
    return build_model(spec, seed=seed)


def cnn(seed: int = 0) -> KDModel:
    spec = MnistCNNSpec(width=2, depth=2, norm="batch", num_classes=K, input_shape=(1, 6, 6))
    return build_model(spec, seed=seed)


def inputs(model: KDModel, n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *model.spec.input_shape, generator=g)


def batch(
    student: KDModel, agg: Aggregator, n_sup: int = 6, n_que: int = 5, experts: int = 3
) -> dict[str, Tensor]:
    """A one-domain batch (domain 1) whose expert 1 was trained on that domain."""
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(n_sup, experts, agg.expert_dim, generator=g)
    mask = expert_mask(torch.full((n_sup,), 1), [[0], [1], [2, 3]][:experts])
    return {
        "support_expert_feats": feats,
        "support_mask": mask,
        "x_support": inputs(student, n_sup, 2),
        "x_query": inputs(student, n_que, 3),
        "y_query": torch.randint(0, K, (n_que,), generator=g),
    }


# --- aggregator --------------------------------------------------------------------------


SHAPE_CASES = [(e, m) for e in (1, 2, 3, 4) for m in (False, True) if e > 1 or not m]


@pytest.mark.parametrize(("d_expert", "d_student"), [(8, 8), (8, 5)], ids=["equal", "proj"])
@pytest.mark.parametrize(("experts", "masked"), SHAPE_CASES, ids=str)
def test_aggregator_shapes(experts: int, masked: bool, d_expert: int, d_student: int) -> None:
    agg = Aggregator(d_expert, d_student, num_heads=2, dropout=0.1).eval()
    tokens = torch.randn(4, experts, d_expert)
    mask = None
    if masked:  # hide expert b % E for sample b
        mask = F.one_hot(torch.arange(4) % experts, experts).bool()
    out = agg(tokens, mask)
    assert out.shape == (4, d_student) and torch.isfinite(out).all()
    assert isinstance(agg.proj, nn.Identity) == (d_expert == d_student)
    assert agg.out_dim == d_student


def test_aggregator_layout_is_pre_norm_with_2d_gelu_ffn() -> None:
    agg = Aggregator(8, num_heads=4, dropout=0.2)
    assert agg.attn.num_heads == 4 and agg.attn.dropout == 0.2 and agg.attn.batch_first
    lin1, act, drop1, lin2, drop2 = agg.ffn
    assert (lin1.in_features, lin1.out_features, lin2.out_features) == (8, 16, 8)
    assert isinstance(act, nn.GELU) and drop1.p == drop2.p == 0.2
    # pre-norm: with zero attention/FFN outputs the layer is the identity, so the norms sit
    # inside the residual branches (a post-norm layer would normalise the tokens).
    for lin in (agg.attn.out_proj, lin2):
        nn.init.zeros_(lin.weight)
        nn.init.zeros_(lin.bias)
    tokens = 5 * torch.randn(2, 3, 8)
    torch.testing.assert_close(agg.eval()(tokens), tokens.mean(dim=1))


def test_masked_expert_does_not_influence_the_target() -> None:
    agg = Aggregator(8, 6, num_heads=2, dropout=0.0).eval()
    tokens = torch.randn(5, 4, 8)
    mask = torch.zeros(5, 4, dtype=torch.bool)
    mask[:3, 1] = True  # samples 0-2 hide expert 1
    mask[3, [0, 2]] = True
    base = agg(tokens, mask)
    perturbed = tokens.clone()
    perturbed[mask] = 1e3 * torch.randn(int(mask.sum()), 8)
    assert torch.equal(agg(perturbed, mask), base)
    visible = tokens.clone()
    visible[:, 3] += 1.0  # expert 3 is visible everywhere
    assert not torch.allclose(agg(visible, mask), base)
    # and no gradient reaches a hidden expert's features
    leaf = tokens.clone().requires_grad_()
    agg(leaf, mask).sum().backward()
    assert leaf.grad is not None
    assert torch.count_nonzero(leaf.grad[mask]) == 0 and leaf.grad[~mask].abs().sum() > 0


def test_masking_equals_dropping_the_expert_token() -> None:
    """Official ``mask_feat(exclude=True)`` removes the expert's token; a mask is the same."""
    agg = Aggregator(8, num_heads=2, dropout=0.0).eval()
    tokens = torch.randn(4, 4, 8)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:, 2] = True
    torch.testing.assert_close(agg(tokens, mask), agg(tokens[:, [0, 1, 3]]))


def test_aggregator_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="num_heads must divide expert_dim 6"):
        Aggregator(6, num_heads=4)
    agg = Aggregator(8, num_heads=2)
    with pytest.raises(ValueError, match=r"expects expert features \(B, E, 8\)"):
        agg(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match="mask must be bool"):
        agg(torch.randn(2, 3, 8), torch.zeros(2, 3))
    hide_all = torch.tensor([[False, True], [True, True]])
    with pytest.raises(ValueError, match=r"every expert is hidden for samples \[1\]"):
        agg(torch.randn(2, 2, 8), hide_all)


def test_aggregator_head_for_ce_pretraining() -> None:
    agg = Aggregator(8, 5, num_heads=2)
    head = aggregator_head(agg, num_classes=K)
    assert isinstance(head[0], nn.LayerNorm) and head[1].in_features == 5
    logits = head(agg(torch.randn(4, 3, 8)))
    assert logits.shape == (4, K)
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    assert agg.proj.weight.grad is not None  # pre-training also fits the projection


# --- masking rule ------------------------------------------------------------------------


def test_expert_mask_hides_the_experts_trained_on_the_samples_domain() -> None:
    experts = [[0, 1], 2, {3, 1}]  # domain 1 was seen by experts 0 and 2
    mask = expert_mask(torch.tensor([0, 1, 2, 3, 7]), experts)
    expected = torch.tensor(
        [
            [True, False, False],
            [True, False, True],
            [False, True, False],
            [False, False, True],
            [False, False, False],  # a domain no expert saw hides nothing
        ]
    )
    assert mask.dtype == torch.bool and torch.equal(mask, expected)
    assert expert_mask([2, 2], experts).tolist() == [[False, True, False]] * 2


def test_expert_mask_errors() -> None:
    with pytest.raises(ValueError, match=r"\[4\], so masking would hide all experts"):
        expert_mask(torch.tensor([0, 4]), [[0, 4], [4]])
    with pytest.raises(ValueError, match="hide all experts"):
        expert_mask(torch.tensor([0]), [[0]])  # a single expert is always its own domain's
    with pytest.raises(ValueError, match="at least one expert"):
        expert_mask(torch.tensor([0]), [])
    with pytest.raises(ValueError, match="1-D integer"):
        expert_mask(torch.tensor([0.0, 1.0]), [[0], [1]])


# --- meta-distillation step --------------------------------------------------------------


@pytest.mark.parametrize("arch", ["mlp", "mnist_cnn"])
def test_meta_step_gives_gradients_to_features_head_and_aggregator(arch: str) -> None:
    student = mlp() if arch == "mlp" else cnn()
    student.train()
    agg = Aggregator(8, student.feature_dim, num_heads=2, dropout=0.1)
    buffers = {n: b.clone() for n, b in student.named_buffers()}
    out = meta_step(student, agg, **batch(student, agg), inner_lr=0.5, log_pre_adaptation=True)
    out.loss.backward()

    for name, p in student.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert student.classifier.weight.grad is not None
    agg_grads = [p.grad for p in agg.parameters()]
    assert all(g is not None for g in agg_grads)
    assert sum(float(g.abs().sum()) for g in agg_grads if g is not None) > 0
    # eval mode during the step (BN statistics untouched), modes restored afterwards
    assert all(torch.equal(b, buffers[n]) for n, b in student.named_buffers())
    assert student.training and agg.training
    assert set(out.metrics()) == {"inner_mse", "outer_ce", "accuracy", "ce_before"}
    assert not out.inner_mse.requires_grad and 0 <= float(out.accuracy) <= 1
    assert float(out.outer_ce) == pytest.approx(float(out.loss.detach()))


class DetachedAggregator(Aggregator):
    """The same aggregator with its target cut from the graph."""

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        return super().forward(tokens, mask).detach()


def test_aggregator_gradient_comes_only_through_the_inner_step() -> None:
    student = mlp()
    agg = DetachedAggregator(8, student.feature_dim, num_heads=2, dropout=0.0)
    meta_step(student, agg, **batch(student, agg), inner_lr=0.5).loss.backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in agg.parameters())
    assert all(p.grad is not None for p in student.parameters())

    agg = Aggregator(8, student.feature_dim, num_heads=2, dropout=0.0)
    meta_step(student, agg, **batch(student, agg), inner_lr=0.0).loss.backward()
    assert all(p.grad is not None and torch.count_nonzero(p.grad) == 0 for p in agg.parameters())


def test_aggregator_gradient_matches_finite_differences() -> None:
    """Second order: dL/dphi exists only through d theta'/d phi; compare it with central
    differences of L along random directions and coordinate-wise on one tensor (float64)."""
    torch.manual_seed(0)
    student = mlp(hidden=3, in_dim=4).double()
    agg = Aggregator(4, 3, num_heads=2, dropout=0.0).double()
    data = batch(student, agg, n_sup=5, n_que=4, experts=3)
    data = {k: v.double() if v.is_floating_point() else v for k, v in data.items()}

    def loss() -> Tensor:
        return meta_step(student, agg, **data, inner_lr=0.7).loss

    params = list(agg.parameters())
    grads = torch.autograd.grad(loss(), params)
    eps = 1e-6

    @torch.no_grad()
    def shifted(direction: list[Tensor], scale: float) -> float:
        for p, v in zip(params, direction, strict=True):
            p.add_(scale * v)
        value = float(loss())
        for p, v in zip(params, direction, strict=True):
            p.sub_(scale * v)
        return value

    for _ in range(3):
        v = [torch.randn_like(p) for p in params]
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, v, strict=True))
        numeric = (shifted(v, eps) - shifted(v, -eps)) / (2 * eps)
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9)
        assert abs(analytic) > 1e-6

    index = [name for name, _ in agg.named_parameters()].index("proj.bias")
    for i in range(params[index].numel()):
        v = [torch.zeros_like(p) for p in params]
        v[index][i] = 1.0
        numeric = (shifted(v, eps) - shifted(v, -eps)) / (2 * eps)
        assert float(grads[index][i]) == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_meta_step_rejects_mismatched_widths_and_rows() -> None:
    student = mlp()
    agg = Aggregator(8, 4, num_heads=2)
    with pytest.raises(ValueError, match="student_dim=6"):
        meta_step(student, agg, **batch(student, agg), inner_lr=0.1)
    agg = Aggregator(8, 6, num_heads=2)
    data = batch(student, agg)
    data["x_support"] = data["x_support"][:2]
    with pytest.raises(ValueError, match="B = 2 rows"):
        meta_step(student, agg, **data, inner_lr=0.1)
    with pytest.raises(ValueError, match="inner_lr"):
        meta_step(student, agg, **batch(student, agg), inner_lr=-1.0)


# --- test-time adaptation ----------------------------------------------------------------


def test_adapt_changes_predictions_and_leaves_the_student_untouched() -> None:
    student = cnn().train()
    agg = Aggregator(8, student.feature_dim, num_heads=2)
    state = copy.deepcopy(student.state_dict())
    x = inputs(student, 6, 4)
    feats = torch.randn(6, 4, 8)

    with torch.no_grad():  # adapt turns gradients on for itself
        fast = adapt(student, agg, feats, x, inner_lr=0.5)
    assert set(fast) == set(feature_parameters(student))
    assert not any(w.requires_grad for w in fast.values())

    before = predict(student, {}, x)
    after = predict(student, fast, x)
    assert after.shape == (6, K) and not torch.allclose(before, after)
    torch.testing.assert_close(student.eval()(x), before)
    student.train()
    assert all(torch.equal(v, state[k]) for k, v in student.state_dict().items())
    assert all(p.grad is None for p in student.parameters())
    assert student.training and agg.training

    copy_ = adapted_copy(student, fast)
    torch.testing.assert_close(copy_(x), after)
    assert not copy_.training and student.training

    no_step = adapt(student, agg, feats, x, inner_lr=0.5, steps=0)
    torch.testing.assert_close(predict(student, no_step, x), before)


def test_adapt_moves_the_features_towards_the_unmasked_target() -> None:
    student = mlp()
    agg = Aggregator(8, student.feature_dim, num_heads=2).eval()
    x, feats = inputs(student, 8, 5), torch.randn(8, 3, 8)
    with torch.no_grad():
        target = agg(feats)  # test time: all experts, no mask

    def mse(weights: dict[str, Tensor]) -> float:
        with torch.no_grad():
            return float(F.mse_loss(student_features(student.eval(), weights, x), target))

    own = {n: p.detach() for n, p in feature_parameters(student).items()}
    one = adapt(student, agg, feats, x, inner_lr=0.05)
    three = adapt(student, agg, feats, x, inner_lr=0.05, steps=3)
    assert mse(three) < mse(one) < mse(own)
