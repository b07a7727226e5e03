"""Experiment tracking of runs: MLflow runs (`mlflow_tracker`) and TensorBoard curves (written by
the training steps into the folder `context.tensorboard_folder` names).

Off unless configured (the pipeline's ``tracking:`` block, `kdorch run --track URI`): nothing of
MLflow or TensorBoard is imported otherwise. The tracker is a scheduler listener attached by
`orchestrator.api.run`, like `StepMetrics`; the scheduler never imports it. Guide:
docs/tracking.md.
"""
