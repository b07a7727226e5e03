"""Which experts a Meta-DMoE step may use, in a fixed order."""

from __future__ import annotations

from schemas.kd.artifacts import Dataset, LogitShards


def usable_caches(
    caches: list[LogitShards], dataset: Dataset, exclude_domains: list[str]
) -> list[LogitShards]:
    """The expert caches whose teacher never saw an excluded (target) domain, checked to be
    usable: computed on this dataset, with features, each expert tied to its domains."""
    from components.artifacts.logits import check_matches_dataset

    dataset.domain_ids(exclude_domains)  # a clear error for an unknown domain name
    kept = []
    for cache in caches:
        check_matches_dataset(cache, dataset)
        if not cache.teacher_domains:
            raise ValueError(
                f"the expert behind {cache.path} does not say which domains trained it: train "
                "each expert with `domains: [...]` on a multi-domain dataset"
            )
        if not set(cache.teacher_domains) & set(exclude_domains):
            kept.append(cache)
    if len(kept) < 2:
        raise ValueError(
            f"Meta-DMoE needs at least 2 experts that never saw {exclude_domains}, got "
            f"{len(kept)} of {len(caches)}"
        )
    dims = {c.feature_dim for c in kept}
    if len(dims) != 1:
        raise ValueError(f"the experts' feature widths differ ({sorted(map(str, dims))})")
    return kept
