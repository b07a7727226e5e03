"""The `evaluate` component: score models (and their teacher) on one split, write a report."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np

from orchestrator import Component, StepContext
from schemas.engine.pipeline import Resources
from schemas.kd.artifacts import AdaptiveModelCheckpoint, EvalReport
from schemas.kd.components.evaluate import EvaluateConfig, EvaluateInputs, EvaluateOutputs


class EvaluateComponent(Component[EvaluateConfig, EvaluateInputs, EvaluateOutputs]):
    """Accuracy (top-1; top-5 with more than 5 classes), teacher agreement, calibration (ECE,
    NLL), size (parameters, MACs), single-thread CPU latency and per-class accuracy of every
    model on one split, beside the majority-class baseline.

    Writes `report.json`, `report.md` and PNGs (reliability diagram, a confusion matrix per
    label, a top-1 comparison). With a teacher, each model's accuracy kept and compression
    (x parameters, x MACs, x latency) are stated; models sharing a label are also summarised
    as mean ± sample std (ddof=1).
    """

    key = "evaluate"
    version = "1"
    Config = EvaluateConfig
    Inputs = EvaluateInputs
    Outputs = EvaluateOutputs
    default_resources = Resources(num_cpus=1)
    deterministic = False  # latencies are measured

    def labels(self, inputs: EvaluateInputs) -> list[str]:
        names = self.config.names
        if names is None:
            return [f"{m.model.arch}_{i}" for i, m in enumerate(inputs.models)]
        if len(names) != len(inputs.models):
            raise ValueError(
                f"evaluate got {len(inputs.models)} models but {len(names)} names; give one "
                "name per model, in input order (repeat a name for seeds of one recipe)"
            )
        if "teacher" in names and inputs.teacher is not None:
            raise ValueError("the name 'teacher' is taken by the `teacher` input")
        return list(names)

    def run(self, inputs: EvaluateInputs, ctx: StepContext) -> EvaluateOutputs:
        from components.artifacts.checkpoints import load_model
        from components.artifacts.datasets import read_labels, read_split, select_domains
        from components.evaluation import metrics as m
        from components.evaluation import plots
        from components.evaluation.report import markdown
        from components.models.profile import count_parameters, estimate_flops

        cfg, data = self.config, inputs.data
        labels = self.labels(inputs)
        entries = [("teacher", inputs.teacher)] if inputs.teacher is not None else []
        entries += list(zip(labels, inputs.models, strict=True))
        split = select_domains(read_split(ctx.store, data, cfg.split), data, cfg.domains)
        x, y = split.x, split.y
        adaptation: dict[str, dict[str, list[int]]] = {}  # model -> domain -> adaptation rows
        saw: list[str] = []  # models whose training saw the domains scored here
        class_names = data.class_names or [str(c) for c in range(data.num_classes)]
        teacher_logits = None
        results: dict[str, dict[str, float]] = {}
        members: dict[str, list[str]] = defaultdict(list)
        logits_of: dict[str, np.ndarray] = {}
        scored = set(cfg.domains or data.domains)
        for label, checkpoint in entries:
            key = label if labels.count(label) <= 1 else f"{label}[{len(members[label])}]"
            members[label].append(key)
            if isinstance(checkpoint, AdaptiveModelCheckpoint):
                model, logits, adaptation[key] = self.adapted(ctx, checkpoint, split, data)
            else:
                model, _ = load_model(ctx.store, checkpoint)
                logits = m.predict(model, x)
            if scored & set(checkpoint.trained_domains):
                saw.append(key)
            row = {
                **m.accuracies(logits, y),  # top-1; top-5 only with more than 5 classes
                "nll": m.nll(logits, y),
                "ece": m.reliability(logits, y, cfg.ece_bins).ece,
                "parameters": float(count_parameters(model)),
                "macs": float(estimate_flops(model, data.feature_shape)),
            }
            if label == "teacher":
                teacher_logits = logits
            if teacher_logits is not None:
                row["agreement"] = m.agreement(logits, teacher_logits)
            for batch in cfg.latency_batch_sizes:
                row[f"latency_ms_b{batch}"] = m.latency_ms(
                    model, x, batch, cfg.latency_repeats, cfg.latency_budget_s
                )
            row.update(m.class_accuracies(logits, y, class_names))
            results[key] = row
            logits_of[key] = logits
            ctx.log("%s: top-1 %.4f", key, row["top1"])
        for key, row in results.items():  # accuracy kept, x params, x MACs, x latency
            if key != "teacher" and "teacher" in results:
                row.update(m.compression(row, results["teacher"]))
        fit = "train" if "train" in data.splits else cfg.split
        fit_labels = y if fit == cfg.split else read_labels(ctx.store, data, fit)
        baseline = m.majority_baseline(fit_labels, y, class_names, fit)
        groups = {
            label: m.summarize([results[k] for k in keys])
            for label, keys in members.items()
            if len(keys) > 1
        }

        path = ctx.output_path("report")
        written: list[str] = []
        if cfg.plots:
            firsts = {label: keys[0] for label, keys in members.items()}
            files = {
                "reliability.png": plots.reliability_diagram(
                    {k: m.reliability(logits_of[k], y, cfg.ece_bins) for k in firsts.values()}
                )
            }
            for label, key in firsts.items():
                files[f"confusion_{label}.png"] = plots.confusion_matrix(
                    m.confusion(logits_of[key], y, data.num_classes),
                    class_names,
                    f"{key} ({cfg.split})",
                )
            if len(members) > 1:
                bars = {
                    label: (groups[label]["top1_mean"], groups[label]["top1_std"])
                    if label in groups
                    else (results[keys[0]]["top1"], 0.0)
                    for label, keys in members.items()
                }
                files["comparison.png"] = plots.comparison_chart(bars)
            for name, content in files.items():
                ctx.store.write_bytes(f"{path}/{name}", content)
            written = sorted(files)
        where = f"{data.source} {data.domain}".strip()
        if cfg.domains:
            where += f" (domains {', '.join(cfg.domains)})"
        title = f"{where}: {cfg.split} split, {len(y)} rows"
        document = {
            "split": cfg.split,
            "dataset": data.source,
            "domain": data.domain,
            "domains": cfg.domains or data.domains,
            "rows": len(y),
            "metrics": results,
            "groups": groups,
            "adaptation": adaptation,
            "trained_on_scored_domains": saw,
        }
        document["baseline"] = baseline.as_dict()
        ctx.store.write_bytes(
            f"{path}/report.json", json.dumps(document, indent=1, sort_keys=True).encode()
        )
        text = markdown(title, results, groups, written, baseline=baseline) + self.notes(
            adaptation, saw, data
        )
        ctx.store.write_bytes(f"{path}/report.md", text.encode())
        report = EvalReport(
            path=path,
            split=cfg.split,
            metrics=results,
            groups=groups,
            baselines={"majority": baseline.top1},
        )
        return EvaluateOutputs(report=report, metrics=results)

    def adapted(
        self, ctx: StepContext, checkpoint: AdaptiveModelCheckpoint, split: Any, data: Any
    ) -> tuple[Any, np.ndarray, dict[str, list[int]]]:
        """An adaptive model's logits: each domain adapts on its own first rows (unlabeled),
        then is predicted with those weights (the `AdaptiveModelCheckpoint` contract)."""
        from components.metadmoe.adaptive import predict_per_domain
        from components.metadmoe.checkpoints import load_adaptive

        model = load_adaptive(ctx.store, checkpoint)
        logits, adapted_on = predict_per_domain(
            model, split.x, split.row_id, split.domain, checkpoint.adaptation.support_size
        )
        names = data.domains or [data.domain or "all"]
        return model.student, logits, {names[int(d)]: rows for d, rows in adapted_on.items()}

    @staticmethod
    def notes(adaptation: dict[str, dict[str, list[int]]], saw: list[str], data: Any) -> str:
        lines = []
        if adaptation:
            lines += ["", "## Test-time adaptation", ""]
            for key, domains in adaptation.items():
                for domain, rows in domains.items():
                    shown = ", ".join(map(str, rows[:8])) + (" ..." if len(rows) > 8 else "")
                    lines.append(
                        f"- `{key}` adapted to {domain} on its first {len(rows)} rows by row_id "
                        f"(labels unused): {shown}; every {domain} row was then predicted with "
                        "those weights"
                    )
        if saw:
            lines += [
                "",
                "Trained on a scored domain (not a held-out result): "
                + ", ".join(f"`{k}`" for k in saw),
            ]
        return "\n".join(lines) + ("\n" if lines else "")
