"""The engine's contract: everything the orchestrator reads or writes.

- `pipeline`: `PipelineSpec` and `StepSpec` (what YAML and the Python API build), `RaySettings`,
  resources and cache policies;
- `run`: run records, step records, executor events, commit records;
- `storage`: options of the artifact store (credentials stay out of records);
- `artifacts`: `ArtifactRef` (a sealed folder in the store) and its `Manifest`.

A component author needs only these and `schemas.base.Model` to plug a component into kdorch;
the vocabulary of the built-in components (datasets, models, losses, their configs) is
`schemas.kd`, which the orchestrator never imports (an import-linter contract says so).
"""
