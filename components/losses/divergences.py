"""Divergences per row between two distributions given as log-probabilities over the same bins.

The bins are a vocabulary (dense targets) or the k ids of a top-k cache plus, where a rule needs
it, one bin for all the ids outside it (`components.losses.tokens`). A log-probability may be
-inf (no mass there); 0 * log(0 / x) is taken as 0, with finite gradients. Each function returns
one value per row (the sum over bins), in float32; the terms average the rows.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def kl_rows(logp: Tensor, logq: Tensor) -> Tensor:
    """KL(p || q) = sum_c p_c (log p_c - log q_c) per row; bins where p_c = 0 add 0."""
    p = logp.exp()
    has = p > 0
    zero = torch.zeros_like(p)
    # Mask both logs before subtracting: -inf - -inf is NaN, and its gradient leaks through
    # a where() on the result.
    diff = torch.where(has, logp, zero) - torch.where(has, logq, zero)
    return torch.where(has, p * diff, zero).sum(-1)


def log_mixture(logp: Tensor, logq: Tensor, share: float) -> Tensor:
    """log(share * p + (1 - share) * q), elementwise, for 0 < share < 1."""
    return torch.logaddexp(logp + math.log(share), logq + math.log1p(-share))


def jsd_rows(logp: Tensor, logq: Tensor, beta: float) -> Tensor:
    """beta * KL(p || m) + (1 - beta) * KL(q || m) with m = beta * p + (1 - beta) * q per row
    (beta = 0.5: the Jensen-Shannon divergence)."""
    m = log_mixture(logp, logq, beta)
    return beta * kl_rows(logp, m) + (1 - beta) * kl_rows(logq, m)


def skew_kl_rows(logp: Tensor, logq: Tensor, alpha: float) -> Tensor:
    """KL(p || alpha * p + (1 - alpha) * q) per row (DistiLLM's skew KL with skew alpha)."""
    return kl_rows(logp, log_mixture(logp, logq, alpha))
