"""Scoring models on one split: a row of metrics per model, the teacher comparison, the
summaries of models sharing a label and the majority-class baseline (`score_models`).

An adaptive model (`AdaptiveModelCheckpoint`, Meta-DMoE's) adapts to each domain on that
domain's own unlabeled rows, cross-fitted (each row is scored with the weights adapted on a
disjoint batch of the domain: `components.metadmoe.adaptive.predict_per_domain`). A model whose
`trained_domains` include a scored domain is an oracle (an upper bound, `Scores.oracle`); when
some other model trained only on other domains, the scored domains are held out
(`Scores.held_out`).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from components.artifacts.checkpoints import load_model
from components.artifacts.datasets import SplitArrays, read_labels, read_split, select_domains
from components.evaluation import metrics as m
from components.evaluation.pairing import training_seed
from components.models.checkpoint import SPEC_FILE
from components.models.profile import count_parameters, estimate_flops
from components.training.views import VIEWS_KEY
from orchestrator import StepContext
from schemas.kd.artifacts import AdaptiveModelCheckpoint, Dataset, ModelCheckpoint
from schemas.kd.components.evaluate import EvaluateConfig

Row = dict[str, float]
MARK = "†"  # after the name of a model trained on a scored domain, in tables and plots


@dataclass
class Scores:
    """Everything the report is made of. Keys are the labels, with ``[i]`` appended when
    several models share a label (``mlp[0]``, ``mlp[1]``)."""

    labels: np.ndarray  # the split's labels, in row order
    results: dict[str, Row]  # key -> metrics
    members: dict[str, list[str]]  # label -> its keys
    logits: dict[str, np.ndarray]  # key -> (N, K) logits
    adaptation: dict[str, dict[str, list[int]]]  # key -> domain -> adaptation rows
    saw: dict[str, list[str]]  # key -> the scored domains its training saw (oracles only)
    held_out: list[str]  # the scored domains, when some model never trained on them; else []
    groups: dict[str, Row]  # label -> mean and sample std over its keys
    baseline: m.Baseline
    views: dict[str, str] = field(default_factory=dict)  # key -> augmented views it distilled on
    row_ids: np.ndarray | None = None  # the split's row_id, in row order
    seeds: dict[str, int | None] = field(default_factory=dict)  # key -> its training seed

    def oracle(self, label: str) -> bool:
        """Whether, in a held-out report, a model of ``label`` (or the model of that key)
        trained on a scored domain: an upper bound, not a held-out result. Without held-out
        domains every model saw what it is scored on, and none is singled out."""
        members = self.members.get(label, [label])
        return bool(self.held_out) and any(key in self.saw for key in members)

    def oracle_note(self) -> str:
        """What `MARK` means, for the line under a table or plot ("" when nothing is marked)."""
        if not self.held_out or not self.saw:
            return ""
        seen = sorted({d for domains in self.saw.values() for d in domains})
        what = "the held-out domain" + ("s" if len(seen) > 1 else "")
        return (
            f"{MARK} trained on {', '.join(seen)} ({what}): an upper bound, not a held-out "
            "result; listed last"
        )

    def ordered_labels(self) -> list[str]:
        """The labels in input order, but the oracles' last: the order of the report's tables
        and plots."""
        return sorted(self.members, key=self.oracle)


def class_names(data: Dataset) -> list[str]:
    return data.class_names or [str(c) for c in range(data.num_classes)]


def score_models(
    ctx: StepContext,
    cfg: EvaluateConfig,
    data: Dataset,
    entries: list[tuple[str, ModelCheckpoint]],
) -> Scores:
    """Score every (label, checkpoint) of ``entries`` on ``cfg.split``, in order; a teacher
    comes first, labelled "teacher", so that the others are compared with it."""
    split = select_domains(read_split(ctx.store, data, cfg.split), data, cfg.domains)
    counts = Counter(label for label, _ in entries)
    scored = set(cfg.domains or data.domains)
    results: dict[str, Row] = {}
    members: dict[str, list[str]] = defaultdict(list)
    logits_of: dict[str, np.ndarray] = {}
    adaptation: dict[str, dict[str, list[int]]] = {}
    saw: dict[str, list[str]] = {}
    unseen = False  # some model trained only on other domains: a held-out evaluation
    teacher_logits = None
    views: dict[str, str] = {}
    seeds: dict[str, int | None] = {}
    for label, checkpoint in entries:
        key = label if counts[label] <= 1 else f"{label}[{len(members[label])}]"
        members[label].append(key)
        seeds[key] = training_seed(ctx.store, checkpoint)
        if (described := distilled_views(ctx, checkpoint)) is not None:
            views[key] = described
        if isinstance(checkpoint, AdaptiveModelCheckpoint):
            model, logits, adaptation[key] = adapted_logits(ctx, checkpoint, split, data)
        else:
            model, logits = plain_logits(ctx, checkpoint, split.x)
        if scored & set(checkpoint.trained_domains):
            saw[key] = sorted(scored & set(checkpoint.trained_domains))
        elif checkpoint.trained_domains:
            unseen = True
        if label == "teacher":
            teacher_logits = logits
        results[key] = metrics_row(cfg, data, model, split.x, split.y, logits, teacher_logits)
        logits_of[key] = logits
        ctx.log("%s: top-1 %.4f", key, results[key]["top1"])
    for key, row in results.items():  # accuracy kept, x params, x MACs, x latency
        if key != "teacher" and "teacher" in results:
            row.update(m.compression(row, results["teacher"]))
    fit = "train" if "train" in data.splits else cfg.split
    fit_labels = split.y if fit == cfg.split else read_labels(ctx.store, data, fit)
    groups = {
        label: m.summarize([results[k] for k in keys])
        for label, keys in members.items()
        if len(keys) > 1
    }
    baseline = m.majority_baseline(fit_labels, split.y, class_names(data), fit)
    held_out = list(cfg.domains or data.domains) if unseen else []
    return Scores(
        split.y,
        results,
        dict(members),
        logits_of,
        adaptation,
        saw,
        held_out,
        groups,
        baseline,
        views,
        split.row_id,
        seeds,
    )


def distilled_views(ctx: StepContext, checkpoint: ModelCheckpoint) -> str | None:
    """The augmented views a student was distilled on, as its ``model.json`` says (None: clean
    rows, or not distilled)."""
    document = json.loads(ctx.store.read_file(checkpoint, SPEC_FILE))
    views = document.get(VIEWS_KEY)
    return str(views["describe"]) if isinstance(views, dict) else None


def metrics_row(
    cfg: EvaluateConfig,
    data: Dataset,
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    logits: np.ndarray,
    teacher_logits: np.ndarray | None,
) -> Row:
    """One model's metrics: accuracies, calibration, size, agreement with the teacher (once
    there is one), latency per batch size and per-class accuracy."""
    row = {
        **m.accuracies(logits, y),  # top-1; top-5 only with more than 5 classes
        "nll": m.nll(logits, y),
        "ece": m.reliability(logits, y, cfg.ece_bins).ece,
        "parameters": float(count_parameters(model)),
        "macs": float(estimate_flops(model, data.feature_shape)),
    }
    if teacher_logits is not None:
        row["agreement"] = m.agreement(logits, teacher_logits)
    for batch in cfg.latency_batch_sizes:
        row[f"latency_ms_b{batch}"] = m.latency_ms(
            model, x, batch, cfg.latency_repeats, cfg.latency_budget_s
        )
    row.update(m.class_accuracies(logits, y, class_names(data)))
    return row


def plain_logits(
    ctx: StepContext, checkpoint: ModelCheckpoint, x: np.ndarray
) -> tuple[nn.Module, np.ndarray]:
    """A checkpoint's model and its logits of ``x``."""
    model, _ = load_model(ctx.store, checkpoint)
    return model, m.predict(model, x)


def adapted_logits(
    ctx: StepContext, checkpoint: AdaptiveModelCheckpoint, split: SplitArrays, data: Dataset
) -> tuple[nn.Module, np.ndarray, dict[str, list[int]]]:
    """An adaptive model's student and logits: each domain adapts on its own first rows
    (unlabeled), then is predicted with those weights (the `AdaptiveModelCheckpoint` contract);
    which rows each domain (by name) adapted on."""
    # Meta-DMoE's library, imported only when such a model is scored.
    from components.metadmoe.adaptive import predict_per_domain
    from components.metadmoe.checkpoints import load_adaptive

    model = load_adaptive(ctx.store, checkpoint)
    logits, adapted_on = predict_per_domain(
        model, split.x, split.row_id, split.domain, checkpoint.adaptation.support_size
    )
    names = data.domains or [data.domain or "all"]
    return model.student, logits, {names[int(d)]: rows for d, rows in adapted_on.items()}
