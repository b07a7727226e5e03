"""The `evaluate` component: score models (and their teacher) on one split, write a report."""

from __future__ import annotations

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.components.evaluate import EvaluateConfig, EvaluateInputs, EvaluateOutputs


class EvaluateComponent(Component[EvaluateConfig, EvaluateInputs, EvaluateOutputs]):
    """Accuracy (top-1; top-5 with more than 5 classes), teacher agreement, calibration (ECE,
    NLL), size (parameters, MACs), single-thread CPU latency and per-class accuracy of every
    model on one split, beside the majority-class baseline.

    Writes `report.json`, `report.md`, `predictions.parquet` (each model's class per row) and
    PNGs (reliability diagram, a confusion matrix per label, a top-1 comparison, the paired
    differences). With a teacher, each model's accuracy kept and compression (x parameters,
    x MACs, x latency) are stated. Models sharing a label are a recipe: summarised as mean ±
    sample std (ddof=1) and as mean top-1 with a 95% t interval; the recipes named by
    ``compare`` are compared over models trained with the same seed (bootstrap and paired t
    intervals, a verdict) or, one model each, over rows (McNemar's exact test).
    """

    key = "evaluate"
    version = "1"
    Config = EvaluateConfig
    Inputs = EvaluateInputs
    Outputs = EvaluateOutputs
    default_resources = Resources(num_cpus=1)
    deterministic = False  # latencies are measured

    def labels(self, inputs: EvaluateInputs) -> list[str]:
        """Each model's label, in input order: ``config.names``, else ``<arch>_<index>``."""
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

    @classmethod
    def check_wiring(cls, config: EvaluateConfig, wiring: Wiring) -> list[ConfigIssue]:
        """`compare` names labels the models have: `names` (and 'teacher' with a teacher),
        when `names` is given (default names depend on the architectures, known at run time)."""
        from components.evaluation.pairing import unknown_labels

        if config.names is None or config.compare is None:
            return []
        labels = list(dict.fromkeys(config.names))
        if wiring.connected("teacher"):
            labels.append("teacher")
        return [
            ConfigIssue(message, field=f"compare.{i}")
            for i, message in unknown_labels(config.compare, labels)
        ]

    def run(self, inputs: EvaluateInputs, ctx: StepContext) -> EvaluateOutputs:
        from components.evaluation.pairing import check_labels
        from components.evaluation.report import write_report
        from components.evaluation.scoring import score_models

        entries = [("teacher", inputs.teacher)] if inputs.teacher is not None else []
        entries += list(zip(self.labels(inputs), inputs.models, strict=True))
        check_labels(self.config.compare or [], [label for label, _ in entries])  # before scoring
        scores = score_models(ctx, self.config, inputs.data, entries)
        report = write_report(ctx, self.config, inputs.data, scores)
        return EvaluateOutputs(report=report, metrics=scores.results)
