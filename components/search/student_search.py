"""The `student_search` component: pick a student architecture for a teacher without training
(DisWOT), and hand its spec to `distill`."""

from __future__ import annotations

from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.components.student_search import (
    StudentSearchConfig,
    StudentSearchInputs,
    StudentSearchOutputs,
)
from schemas.kd.models import ModelSpecValue

_RAISE_CAPS = "raise max_parameters/max_macs or allow smaller knob values"


class StudentSearch(Component[StudentSearchConfig, StudentSearchInputs, StudentSearchOutputs]):
    """Search a space of zoo students under parameter/MAC caps for the one whose DisWOT score
    against the teacher is highest, with no training (regularised evolution or random search).

    Candidates are scored in batches as Ray tasks (in this process without Ray), every one on
    the same seeded batch of training rows with the same seeded weights, so a search is
    repeatable. Outputs: the ranking (Parquet), the chosen `student` spec (connect it to
    `distill`'s `student` input), two baselines under the same caps (`largest`, `random`), and
    with `validation` the distilled accuracy of a sample of candidates and the rank correlation
    of score, terms, parameters and MACs with it. `kdorch validate` refuses a space whose caps
    no candidate can meet (`check_config`). The search is `components.search.choose`.

    On the evidence so far (docs/diswot.md) the score does not rank distilled students better
    than their parameter count, even within one family and size band: compare the pick with
    `largest` (or run `validation`) before trusting it.
    """

    key = "student_search"
    version = "1"
    Config = StudentSearchConfig
    Inputs = StudentSearchInputs
    Outputs = StudentSearchOutputs
    default_resources = Resources(num_cpus=1)
    deterministic = False  # its metrics hold timings; the artifacts and specs are repeatable

    @classmethod
    def resource_demand(cls, config: StudentSearchConfig) -> dict[str, float]:
        return {"CPU": config.parallel.cpus_per_task}

    @classmethod
    def check_config(cls, config: StudentSearchConfig) -> list[ConfigIssue]:
        """A space no dataset can fit: every architecture's smallest candidate over a cap for
        the smallest data possible (counted from the zoo's layer plans, without torch)."""
        from components.search.candidates import unfit_for_any_dataset

        problem = unfit_for_any_dataset(config.space)
        return [] if problem is None else [ConfigIssue(problem, field="space")]

    @classmethod
    def check_wiring(cls, config: StudentSearchConfig, wiring: Wiring) -> list[ConfigIssue]:
        """The splits the search reads, and a space whose caps no candidate meets for the
        dataset's real shape and classes when the dataset step promises them (a space that
        fits no dataset at all is `check_config`'s, reported once)."""
        from components.data.promise import PromisedData
        from components.search.candidates import (
            CandidateSpace,
            SearchSpaceError,
            unfit_for_any_dataset,
        )

        data = PromisedData.of(wiring)
        if data is None:
            return []
        issues = data.split_issues("", "train", reads="the score's batch")
        if config.validation is not None:
            issues += data.split_issues("", "val", reads="validation")
        shape, classes = data.promise.feature_shape, data.promise.num_classes
        if shape is None or not classes or unfit_for_any_dataset(config.space) is not None:
            return issues
        try:
            CandidateSpace(config.space, input_shape=tuple(shape), num_classes=classes)
        except SearchSpaceError as e:
            issues.append(ConfigIssue(f"{e} ({data.where})", "space", _RAISE_CAPS))
        return issues

    def run(self, inputs: StudentSearchInputs, ctx: StepContext) -> StudentSearchOutputs:
        from components.search.choose import choose_student
        from components.search.shortfall import shortfalls

        outcome = choose_student(ctx, self.config, inputs.data, inputs.teacher, inputs.logits)
        notes = shortfalls(self.config, inputs.data, outcome)
        for note in notes:
            ctx.log("less than asked: %s", note)
        return StudentSearchOutputs(
            ranking=outcome.ranking.model_copy(update={"notes": notes}),
            student=ModelSpecValue(outcome.best.spec),
            largest=ModelSpecValue(outcome.largest.spec),
            random=ModelSpecValue(outcome.random.spec),
            metrics=outcome.metrics,
            validation=outcome.validation,
        )
