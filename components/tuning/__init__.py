"""The Ray Tune side of the `tune` component (a shared library, like `components.training`).

- `components.tuning.distill_sweep`: what the step runs: the sweep on its inputs, the best
  trial's student and the sweep's record (`sweep_distill`).
- `components.tuning.resources`: what each trial reserves (no Ray: `kdorch validate` calls it).
- `components.tuning.ray_config`: the `TuneConfig` mapped onto Ray Tune's objects (search space,
  search algorithm, scheduler, ``tune.TuneConfig``, ``tune.FailureConfig``) and each trial's
  `DistillConfig`. Imports Ray.
- `components.tuning.reproduce`: the ``--set`` lines that reproduce a trial. No Ray.
- `components.tuning.trial`: one trial (the training loop in the trial's process with a Tune
  session, or a TorchTrainer for several workers) and the trainable Tune runs.
- `components.tuning.sweep`: the Tune experiment in the store (run or restore) and the progress
  callback.
- `components.tuning.results`: a finished sweep as rows, the best trial, its weights, the table.
- `components.tuning.plots`: learning curves and the alpha x temperature heat map.

Nothing is re-exported here, so importing `components.tuning.reproduce` stays cheap.
"""
