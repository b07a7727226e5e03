"""The Ray Tune side of the `tune` component (a shared library, like `components.training`).

- `components.tuning.space`: the `TuneConfig` mapped onto Ray Tune's objects (search space,
  search algorithm, scheduler, ``tune.TuneConfig``, ``tune.FailureConfig``) and each trial's
  `DistillConfig`. Imports Ray.
- `components.tuning.reproduce`: the ``--set`` lines that reproduce a trial. No Ray.

Nothing is re-exported here, so importing `components.tuning.reproduce` stays cheap.
"""
