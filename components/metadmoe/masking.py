"""Meta-DMoE's masking rule: hide the expert that was trained on the sample's own domain.

During meta-training every sample comes from a source domain that one expert has seen. To
mimic the test situation (a target domain no expert has seen), the aggregator must not read
that expert: ``mask[b, e]`` is True when expert e was trained on sample b's domain. At test
time nothing is hidden: pass ``mask=None`` to the aggregator.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
from torch import Tensor


def expert_mask(
    domains: Tensor | Sequence[int], expert_domains: Sequence[int | Collection[int]]
) -> Tensor:
    """The (B, E) bool mask of experts to hide: True where expert e was trained on domain_b.

    Args:
        domains: (B,) integer source-domain index of each sample.
        expert_domains: for each expert e (its position), the domain index or indices it was
            trained on (the official code's ``all_split``; its ``split_to_cluster`` is the
            inverse map). A domain may belong to several experts; a domain no expert has seen
            hides nothing.

    Returns:
        A bool tensor (B, E) on the device of ``domains``; True = hidden.

    Raises:
        ValueError: no experts, ``domains`` is not 1-D integers, or some sample would have
            every expert hidden (e.g. a single expert trained on all source domains): the
            aggregator would have nothing left to read, so split the domains over more
            experts.
    """
    if not expert_domains:
        raise ValueError("expert_mask: need at least one expert, got an empty expert_domains")
    d = torch.as_tensor(domains)
    if d.dim() != 1 or d.dtype.is_floating_point or d.dtype == torch.bool:
        raise ValueError(
            f"expert_mask: domains must be a 1-D integer tensor (B,), got {d.dtype} "
            f"{tuple(d.shape)}"
        )
    columns = []
    for seen in expert_domains:
        ids = [seen] if isinstance(seen, int) else list(seen)
        columns.append(torch.isin(d, torch.as_tensor(ids, dtype=d.dtype, device=d.device)))
    mask = torch.stack(columns, dim=1)
    full = mask.all(dim=1)
    if bool(full.any()):
        bad = sorted(set(d[full].tolist()))
        raise ValueError(
            f"expert_mask: every one of the {len(columns)} experts was trained on domain(s) "
            f"{bad[:10]}, so masking would hide all experts for those samples; give each "
            "domain to fewer experts (Meta-DMoE needs E >= 2 groups)"
        )
    return mask
