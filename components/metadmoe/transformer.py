"""Meta-DMoE's knowledge aggregator: a one-layer transformer over the experts' features.

The aggregator A(.; phi) reads the E experts' penultimate features of one sample as E tokens
and returns one target embedding for the student:

    h = X + MHA(LN1(X))                       X: (B, E, D_expert), one token per expert
    h = h + FFN(LN2(h))                       FFN: Linear(D, 2D) -> GELU -> dropout ->
                                                   Linear(2D, D) -> dropout
    t = P(mean_{e not hidden} h_e)            P: Linear(D_expert, D_student), or the identity
                                                 when the widths are equal

Pre-norm as in the official code (``PreNorm(LayerNorm, Attention)`` and
``PreNorm(LayerNorm, FeedForward)`` with residuals, no final LayerNorm before pooling);
attention dropout and both FFN dropouts use the same ``dropout``. Official defaults: 16 heads,
dropout 0.1, depth 1 (fixed here).

Hidden experts (``mask`` True) are zeroed at the input, excluded from the attention keys and
from the mean, so their features cannot influence t (nor receive gradient). Their own query
rows are still computed (they only read visible keys) and then dropped.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Aggregator(nn.Module):
    """One pre-norm transformer encoder layer over expert tokens, masked mean, projection.

    Args:
        expert_dim: D_expert, the width of every expert's penultimate features (the experts
            must share it; project them beforehand otherwise).
        student_dim: D_student, the width of the target (the student's feature width);
            None means D_expert. Equal widths use no projection (the official layout, where
            experts and student are the same backbone); different widths add a learned
            ``nn.Linear(D_expert, D_student)`` after the mean.
        num_heads: attention heads; must divide ``expert_dim`` (official: 16).
        dropout: attention and FFN dropout (official: 0.1). Meta-training and test-time
            adaptation run the aggregator in eval mode, so it only acts during CE
            pre-training.

    Shapes: ``forward(tokens (B, E, D_expert), mask (B, E) bool | None) -> (B, D_student)``.
    """

    def __init__(
        self,
        expert_dim: int,
        student_dim: int | None = None,
        *,
        num_heads: int = 16,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if expert_dim < 1:
            raise ValueError(f"aggregator: expert_dim must be >= 1, got {expert_dim}")
        if num_heads < 1 or expert_dim % num_heads:
            divisors = [h for h in range(1, min(expert_dim, 16) + 1) if expert_dim % h == 0]
            raise ValueError(
                f"aggregator: num_heads must divide expert_dim {expert_dim}, got {num_heads}; "
                f"try one of {divisors}"
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"aggregator: dropout must be in [0, 1), got {dropout}")
        student_dim = expert_dim if student_dim is None else student_dim
        if student_dim < 1:
            raise ValueError(f"aggregator: student_dim must be >= 1, got {student_dim}")
        self.expert_dim = expert_dim
        self.out_dim = student_dim
        self.num_heads = num_heads
        self.norm_attn = nn.LayerNorm(expert_dim)
        self.attn = nn.MultiheadAttention(expert_dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_ffn = nn.LayerNorm(expert_dim)
        self.ffn = nn.Sequential(
            nn.Linear(expert_dim, 2 * expert_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * expert_dim, expert_dim),
            nn.Dropout(dropout),
        )
        self.proj: nn.Module = (
            nn.Identity() if student_dim == expert_dim else nn.Linear(expert_dim, student_dim)
        )

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """The target embedding t (B, D_student) from expert tokens (B, E, D_expert).

        ``mask`` (B, E) bool: True hides that expert for that sample (meta-training hides the
        expert trained on the sample's domain, see `expert_mask`); None keeps all (test time).

        Raises:
            ValueError: wrong shapes or dtype, or a sample with every expert hidden.
        """
        if tokens.dim() != 3 or tokens.shape[-1] != self.expert_dim:
            raise ValueError(
                f"aggregator expects expert features (B, E, {self.expert_dim}), "
                f"got {tuple(tokens.shape)}"
            )
        tokens = tokens.to(self.norm_attn.weight.dtype)  # e.g. float16 features from a cache
        if mask is not None:
            if mask.dtype != torch.bool or tuple(mask.shape) != tuple(tokens.shape[:2]):
                raise ValueError(
                    f"aggregator mask must be bool of shape {tuple(tokens.shape[:2])} (B, E), "
                    f"got {mask.dtype} {tuple(mask.shape)}"
                )
            if bool(mask.all(dim=1).any()):
                rows = mask.all(dim=1).nonzero().flatten().tolist()
                raise ValueError(
                    f"aggregator: every expert is hidden for samples {rows[:10]}; at least one "
                    "expert must stay visible"
                )
            hidden = mask.unsqueeze(-1)
            tokens = tokens.masked_fill(hidden, 0.0)
        h = self.norm_attn(tokens)
        h = tokens + self.attn(h, h, h, key_padding_mask=mask, need_weights=False)[0]
        h = h + self.ffn(self.norm_ffn(h))
        if mask is None:
            pooled = h.mean(dim=1)
        else:
            keep = (~mask).unsqueeze(-1).to(h.dtype)
            pooled = h.masked_fill(hidden, 0.0).sum(dim=1) / keep.sum(dim=1)
        return self.proj(pooled)

    def extra_repr(self) -> str:
        return f"expert_dim={self.expert_dim}, out_dim={self.out_dim}, num_heads={self.num_heads}"


def aggregator_head(aggregator: Aggregator, num_classes: int) -> nn.Sequential:
    """A classifier for the optional CE pre-training of the aggregator: LayerNorm -> Linear.

    Logits = head(aggregator(tokens)), shape (B, num_classes); loss CE(logits, y). This is the
    official ``fa_selector.mlp`` (``LayerNorm(dim), Linear(dim, classes)``), placed after our
    projection so pre-training also fits the projection when the widths differ. The official
    pre-training uses all experts (no mask), the aggregator in train mode (dropout on), Adam
    and a x0.96 per-epoch decay; the head is discarded afterwards.
    """
    if num_classes < 1:
        raise ValueError(f"aggregator_head: num_classes must be >= 1, got {num_classes}")
    return nn.Sequential(
        nn.LayerNorm(aggregator.out_dim), nn.Linear(aggregator.out_dim, num_classes)
    )
