"""The `tune` component: a Ray Tune sweep over a distill config, on the shared logit cache."""

from __future__ import annotations

from components.models.checks import ModelSpecSteps
from orchestrator import Component, StepContext
from orchestrator.component import ConfigIssue, Wiring
from schemas.engine.pipeline import Resources
from schemas.kd.components.tune import TuneConfig, TuneInputs, TuneOutputs


class Tune(ModelSpecSteps, Component[TuneConfig, TuneInputs, TuneOutputs]):
    """Search distill's config (fusion ratios, temperatures, teacher weights, ...) with Ray Tune.

    The step reads the dataset and the cached teacher outputs once and puts them into the object
    store; every trial maps them from there (no shard read, no teacher forward pass in a trial).
    A one-worker trial trains in its own process; a multi-worker trial drives a TorchTrainer.
    ASHA stops weak trials on per-epoch validation accuracy; a failed trial does not fail the
    sweep; an interrupted sweep resumes its finished trials when the step runs again. Outputs:
    the best trial's student (a normal checkpoint), its config and ``--set`` lines, a Parquet
    table of every trial and PNG plots.

    The student spec under ``distill`` is checked and keyed as `train`'s and `distill`'s are
    (`ModelSpecSteps`): `kdorch validate` builds a model source on the meta device, and the
    step's key covers a `python` student's factory code, a library's version and a weights
    file's content, so editing the factory re-runs the sweep.
    """

    key = "tune"
    version = "1"
    Config = TuneConfig
    Inputs = TuneInputs
    Outputs = TuneOutputs
    #: The step's own task only drives Tune (and reads the data once): the trials reserve CPUs.
    default_resources = Resources(num_cpus=0)
    deterministic = False

    @classmethod
    def resource_demand(cls, config: TuneConfig) -> dict[str, float]:
        """One trial must fit: its own process plus, for multi-worker trials, its workers."""
        from components.tuning.resources import trial_demand

        return trial_demand(config)

    @classmethod
    def check_wiring(cls, config: TuneConfig, wiring: Wiring) -> list[ConfigIssue]:
        """What would fail every trial, before any starts: distill's checks of the base config
        against the inputs (teachers for its losses, the dataset's splits and domains), a
        student architecture, and a `metric` the trials report (`components.tuning.checks`)."""
        from components.tuning.checks import tune_issues

        return tune_issues(config, wiring)

    def run(self, inputs: TuneInputs, ctx: StepContext) -> TuneOutputs:
        from components.tuning.distill_sweep import sweep_distill
        from components.tuning.reproduce import set_lines, tune_step_prefix

        cfg = self.config
        swept = sweep_distill(ctx, cfg, inputs)
        return TuneOutputs(
            model=swept.model,
            best_config=swept.best_config,
            set_lines=set_lines(
                cfg.distill, swept.best_params, prefix=tune_step_prefix(ctx.step_id)
            ),
            results=swept.results,
            metrics=swept.metrics,
        )
