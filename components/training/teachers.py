"""Which teacher inputs can serve which losses: the one statement of the rule, checked twice.

`distill` (and every `tune` trial) calls `checked_teachers` on the real inputs before anything
trains; `kdorch validate` calls `teacher_wiring_issues` on what the compiled graph knows (which
teacher ports are connected, how many teachers a list port receives), so a loss that needs a
teacher on a step with none, or ``teacher_weights`` that do not match the teachers, is refused
before anything runs. No torch here: `kdorch validate` imports this.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.component import ConfigIssue, Wiring
from schemas.kd.artifacts import LogitShards, ModelCheckpoint
from schemas.kd.components.distill import DistillConfig

#: What each kind of teacher input puts into a batch (names of `KDBatch` fields).
_ALWAYS = frozenset({"student_logits", "student_features", "labels"})
_DENSE = frozenset({"teacher_logits"})
_TOPK = frozenset({"teacher_topk_indices", "teacher_topk_values", "teacher_rest_mass"})
_FEATURES = frozenset({"teacher_features"})
_HOW = {
    "teacher_logits": "all of the teacher's logits: run teacher_inference without `top_k`, or "
    "connect `teachers` (online)",
    "teacher_topk_indices": "a top-k logit cache: teacher_inference with `top_k`",
    "teacher_topk_values": "a top-k logit cache: teacher_inference with `top_k`",
    "teacher_rest_mass": "a top-k logit cache: teacher_inference with `top_k`",
    "teacher_features": "teacher features: teacher_inference with `feature: penultimate`, or "
    "`teachers` (online)",
}
_BOTH = "connect either `logits` (cached teacher outputs) or `teachers` (run online), not both"


def provided_fields(logits: Sequence[LogitShards], online: bool) -> frozenset[str]:
    """The batch fields the connected teacher inputs can fill."""
    if online:
        return _ALWAYS | _DENSE | _FEATURES
    if not logits:
        return _ALWAYS
    out = set(_ALWAYS)
    if all(c.top_k is None for c in logits):
        out |= _DENSE
    if all(c.top_k is not None for c in logits):
        out |= _TOPK
    if all(c.feature is not None for c in logits):
        out |= _FEATURES
    return frozenset(out)


def unserved_losses(
    cfg: DistillConfig, provided: frozenset[str], logits: Sequence[LogitShards] = ()
) -> list[tuple[int, str]]:
    """(index, why) of every loss that reads a batch field the teacher inputs cannot fill."""
    out = []
    for i, loss in enumerate(cfg.losses):
        missing = sorted(loss.requires() - provided)
        if missing:
            needs = "; ".join(dict.fromkeys(_HOW.get(m, m) for m in missing))
            hint = ""
            if (
                loss.type in ("kd", "dkd", "pld", "taid", "meal")
                and "teacher_logits" in missing
                and any(c.top_k for c in logits)
            ):
                hint = " (with a top-k cache, use `type: topk_kl`)"
            out.append((i, f"losses[{i}] ({loss.type}) needs {needs}{hint}"))
    return out


def weight_count_problem(cfg: DistillConfig, teachers: int) -> str | None:
    """Why ``cfg.teacher_weights`` cannot weigh ``teachers`` teachers (None: it can)."""
    if cfg.teacher_weights is None or len(cfg.teacher_weights) == teachers:
        return None
    return (
        f"teacher_weights has {len(cfg.teacher_weights)} weights for {teachers} teachers; "
        "give one per teacher, in input order"
    )


def check_teacher_inputs(
    cfg: DistillConfig, logits: Sequence[LogitShards], teachers: Sequence[ModelCheckpoint]
) -> None:
    """Refuse combinations of teacher inputs and losses that cannot work, before training."""
    if logits and teachers:
        raise ValueError(_BOTH)
    if len({c.top_k for c in logits}) > 1:
        raise ValueError(
            "the logit caches mix dense and top-k (or different k): give every teacher the "
            "same teacher_inference settings"
        )
    problem = weight_count_problem(cfg, len(logits) or len(teachers))
    if problem is not None:
        raise ValueError(problem)
    unserved = unserved_losses(cfg, provided_fields(logits, bool(teachers)), logits)
    if unserved:
        raise ValueError(unserved[0][1])


def kept_teachers(
    cfg: DistillConfig, logits: Sequence[LogitShards], teachers: Sequence[ModelCheckpoint]
) -> tuple[list[LogitShards], list[ModelCheckpoint]]:
    """The teachers left after `skip_teachers_trained_on` (e.g. the expert of a held-out
    domain); ``teacher_weights`` apply to these, in input order."""
    skip = set(cfg.skip_teachers_trained_on)
    kept_logits = [c for c in logits if not skip & set(c.teacher_domains)]
    kept_online = [t for t in teachers if not skip & set(t.trained_domains)]
    if skip and (logits or teachers) and not (kept_logits or kept_online):
        raise ValueError(
            f"every teacher was trained on {sorted(skip)} (skip_teachers_trained_on): none left"
        )
    return kept_logits, kept_online


def checked_teachers(
    cfg: DistillConfig, logits: Sequence[LogitShards], teachers: Sequence[ModelCheckpoint]
) -> tuple[list[LogitShards], list[ModelCheckpoint]]:
    """`kept_teachers`, refused by `check_teacher_inputs` when they cannot serve ``cfg``'s
    losses and weights: the one check of teacher inputs, before anything trains."""
    kept = kept_teachers(cfg, logits, teachers)
    check_teacher_inputs(cfg, *kept)
    return kept


def teacher_wiring_issues(
    cfg: DistillConfig, wiring: Wiring, prefix: str = ""
) -> list[ConfigIssue]:
    """`check_teacher_inputs` as far as the wiring tells before the run: teacher ports
    connected (``logits``, ``teachers``) and how many teachers they bring. ``prefix`` is where
    ``cfg`` sits in the step's config (``distill.`` in a tune step)."""
    cached, online = wiring.connected("logits"), wiring.connected("teachers")
    if cached and online:
        return [ConfigIssue(_BOTH, under="inputs")]
    if not (cached or online):
        issues = [
            ConfigIssue(
                f"losses[{i}] ({cfg.losses[i].type}) needs a teacher, but neither `logits` nor "
                "`teachers` is connected",
                f"{prefix}losses.{i}",
                "connect `logits: <teacher_inference step>.logits` (cached outputs) or "
                "`teachers: <train step>.model` (run online) under inputs; without a teacher, "
                "use `type: ce` or the `train` component",
            )
            for i, _ in unserved_losses(cfg, provided_fields([], online=False))
        ]
        if cfg.teacher_weights is not None:
            issues.append(
                ConfigIssue(
                    "teacher_weights are set, but no teacher input is connected",
                    f"{prefix}teacher_weights",
                )
            )
        return issues
    count = wiring.count("logits" if cached else "teachers")
    if count is None or cfg.teacher_weights is None:
        return []
    problem = weight_count_problem(cfg, count)
    if cfg.skip_teachers_trained_on:
        # Which teachers are skipped is known only when the run reads them: fewer weights
        # than teachers may fit; more never do.
        if len(cfg.teacher_weights) <= count:
            return []
        problem = (
            f"teacher_weights has {len(cfg.teacher_weights)} weights, but only {count} "
            "teachers are connected (skip_teachers_trained_on may leave out more); give one "
            "per teacher left, in input order"
        )
    return [] if problem is None else [ConfigIssue(problem, f"{prefix}teacher_weights")]
