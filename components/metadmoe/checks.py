"""What a Meta-DMoE step needs of its wiring, checked before anything runs (`check_wiring` of
`aggregator` and `meta_distill`; no torch): a multi-domain dataset holding the held-out
domains and the splits the step reads, and at least two experts.

The experts trained on a held-out domain are known only when the step reads their caches, so
"two experts left after the held-out ones" is checked at run time (`experts.usable_caches`).
"""

from __future__ import annotations

from components.data.promise import PromisedData
from orchestrator.component import ConfigIssue, Wiring

#: Meta-DMoE needs this many experts that never saw a held-out domain (`experts.usable_caches`).
MIN_EXPERTS = 2


def metadmoe_issues(
    wiring: Wiring,
    reads: str,
    exclude_domains: list[str],
    always: tuple[str, ...] = (),
    named: dict[str, str] | None = None,
) -> list[ConfigIssue]:
    """Issues of a Meta-DMoE step (``reads``: its name in messages) that holds out
    ``exclude_domains`` and reads the splits ``always`` and ``named`` (config field -> split)."""
    issues = []
    experts = wiring.count("features")
    if experts is not None and experts < MIN_EXPERTS:
        issues.append(
            ConfigIssue(
                f"{reads} needs at least {MIN_EXPERTS} experts' feature caches, got {experts}",
                "features",
                'gather every expert\'s cache, e.g. `features: "expert_features[*].logits"`',
                under="inputs",
            )
        )
    data = PromisedData.of(wiring)
    if data is None:
        return issues
    flat = data.needs_domains(reads)
    if flat:
        return issues + flat
    issues += data.domain_issues("exclude_domains", exclude_domains)
    for split in always:
        issues += data.split_issues("", split, reads=reads)
    for field, split in (named or {}).items():
        issues += data.split_issues(field, split)
    return issues
