"""What a sweep can run and optimise, known before any trial starts (no Ray, no torch:
`kdorch validate` calls it through `Tune.check_wiring`).

- `unsupported` and `student_of`: a trial config a sweep cannot train (each trial checks its
  own config again; validation checks the base config);
- `metric_issue`: ``metric`` must be a number the trials report every epoch: the training
  loop's own (`EPOCH_METRICS`, which a test ties to a real run's history), one of the loss
  terms' (``train_<term>/<part>``), or one Ray Tune adds to every result;
- `tune_issues`: all of it plus distill's checks of the base config against the step's wiring.
"""

from __future__ import annotations

import re

from components.training.checks import training_issues
from components.training.teachers import teacher_wiring_issues
from orchestrator.component import ConfigIssue, Wiring
from orchestrator.errors import did_you_mean
from schemas.kd.components.distill import DistillConfig
from schemas.kd.components.tune import TuneConfig
from schemas.kd.models import ModelSpec

#: What the training loop reports every epoch (`components.training.loop`), loss terms aside.
EPOCH_METRICS = ("val_accuracy", "val_loss", "train_loss", "epoch", "seconds", "lr", "workers")
#: What Ray Tune adds to every result a trial reports.
TUNE_METRICS = ("training_iteration", "time_this_iter_s", "time_total_s")
_NO_STUDENT = "a tune step needs `distill.student`: the architecture every trial trains"


def unsupported(cfg: DistillConfig) -> str | None:
    """Why a trial config cannot run in a sweep (None: it can)."""
    if cfg.strategy == "deepspeed":
        return (
            "strategy: deepspeed is not supported in a tune sweep yet; sweep with ddp (the "
            "best config then trains with deepspeed in a distill step)"
        )
    if any(loss.type == "nd" for loss in cfg.losses):
        return (
            "the nd loss needs class means of the fused teacher features, which a sweep does not "
            "compute yet; tune another loss, or run distill with nd"
        )
    return None


def student_of(cfg: DistillConfig) -> ModelSpec:
    """The architecture every trial trains (a sweep has no `student` input to take it from)."""
    if cfg.student is None:
        raise ValueError(_NO_STUDENT)
    return cfg.student


def metric_issue(config: TuneConfig) -> ConfigIssue | None:
    """``config.metric`` when no trial will report it, with the names they do report."""
    metric = config.metric
    types = sorted({loss.type for loss in config.distill.losses})
    # A term's parts are logged as train_<type>/<part> (a repeated type: <type>_1, ...).
    term = re.compile(rf"train_({'|'.join(map(re.escape, types))})(_\d+)?/\w+")
    if metric in EPOCH_METRICS or metric in TUNE_METRICS or term.fullmatch(metric):
        return None
    terms = [f"train_{t}/total" for t in types]
    return ConfigIssue(
        f"metric '{metric}' is not reported by the trials; they report "
        f"{', '.join(EPOCH_METRICS[:3])}, train_<loss>/<part> ({', '.join(terms)}, ...) and "
        f"{', '.join(EPOCH_METRICS[3:])}",
        "metric",
        did_you_mean(metric, [*EPOCH_METRICS, *TUNE_METRICS, *terms]),
    )


def tune_issues(config: TuneConfig, wiring: Wiring) -> list[ConfigIssue]:
    """Everything about a tune step that is certain to fail its trials, before any starts."""
    base = config.distill
    issues = training_issues(base, wiring, prefix="distill.", reads="every trial")
    issues += teacher_wiring_issues(base, wiring, prefix="distill.")
    if base.student is None:
        issues.append(
            ConfigIssue(
                _NO_STUDENT,
                "distill",
                "add e.g. `student: {arch: mlp, hidden: [64]}` under distill",
            )
        )
    reason = unsupported(base)
    if reason is not None:
        issues.append(ConfigIssue(reason, "distill"))
    metric = metric_issue(config)
    return issues if metric is None else [*issues, metric]
