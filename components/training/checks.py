"""A training config checked against the dataset its step will read, before anything runs
(`TrainingComponent.check_wiring`; `tune` checks its base distill config the same way): the
split it trains on and the one it evaluates, and the domains it selects. No torch here."""

from __future__ import annotations

from components.data.promise import PromisedData
from orchestrator.component import ConfigIssue, Wiring
from schemas.kd.components.training import TrainingSettings

TRAIN_SPLIT = "train"
"""The split every training step trains on."""


def training_issues(
    cfg: TrainingSettings, wiring: Wiring, prefix: str = "", reads: str = "training"
) -> list[ConfigIssue]:
    """What in ``cfg`` the promised dataset on the ``data`` input cannot serve. ``prefix`` is
    where ``cfg`` sits in the step's config (``distill.`` in a tune step)."""
    data = PromisedData.of(wiring)
    if data is None:
        return []
    issues = data.split_issues("", TRAIN_SPLIT, reads=reads)
    issues += data.split_issues(f"{prefix}eval_split", cfg.eval_split)
    issues += data.domain_issues(f"{prefix}domains", cfg.domains)
    issues += data.domain_issues(f"{prefix}exclude_domains", cfg.exclude_domains)
    domains = data.promise.domains
    if not issues and domains and (cfg.domains or cfg.exclude_domains):
        left = [d for d in (cfg.domains or domains) if d not in cfg.exclude_domains]
        if not left:
            issues.append(
                ConfigIssue(
                    f"exclude_domains {cfg.exclude_domains} leaves no domain of "
                    f"{cfg.domains or domains} to train on",
                    f"{prefix}exclude_domains",
                )
            )
    return issues
