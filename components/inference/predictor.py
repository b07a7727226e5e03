"""The callable each Ray Data actor holds: a teacher turning dataset batches into outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from components.artifacts.datasets import fixed_list_to_numpy
from components.artifacts.logits import fixed_list
from orchestrator import ArtifactStore
from schemas.kd.artifacts import ModelCheckpoint


class TeacherPredictor:
    """Loads the teacher once per actor; ``__call__(pyarrow batch) -> pyarrow batch``.

    Output columns: ``row_id``; ``logits`` or ``topk_indices``/``topk_values``/``rest_mass``;
    ``feature`` when asked. Computation is fp32 in eval mode; only storage is cast.
    """

    def __init__(
        self,
        store: ArtifactStore,
        teacher: ModelCheckpoint,
        feature_shape: list[int],
        precision: str,
        top_k: int | None,
        feature: str | None,
        use_gpu: bool,
    ):
        import torch

        from components.artifacts.checkpoints import load_model

        self.torch = torch
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        model, _ = load_model(store, teacher)
        self.model = model.eval().to(self.device)
        self.shape = feature_shape
        self.dtype = pa.float16() if precision == "float16" else pa.float32()
        self.np_dtype = np.float16 if precision == "float16" else np.float32
        self.top_k, self.feature = top_k, feature

    def __call__(self, batch: pa.Table) -> pa.Table:
        torch = self.torch
        x = torch.from_numpy(fixed_list_to_numpy(batch.column("x"))).reshape(-1, *self.shape)
        with torch.inference_mode():
            x = x.to(self.device)
            if self.feature:
                out = self.model.intermediate(x, [self.feature, "logits"])
                logits, feature = out["logits"], out[self.feature].flatten(1)
            else:
                logits, feature = self.model(x), None
            logits = logits.float()
        columns: dict[str, Any] = {"row_id": batch.column("row_id")}
        if "path" in batch.column_names:  # which split file the row came from (for routing)
            columns["path"] = batch.column("path")
        if self.top_k is not None:
            k = min(self.top_k, logits.shape[1])
            values, indices = logits.topk(k, dim=1)
            kept = torch.softmax(logits, dim=1).gather(1, indices).sum(1)
            columns["topk_indices"] = fixed_list(indices.int().cpu().numpy(), pa.int32())
            columns["topk_values"] = fixed_list(
                values.cpu().numpy().astype(self.np_dtype), self.dtype
            )
            columns["rest_mass"] = pa.array((1.0 - kept).clamp_min(0).cpu().numpy(), pa.float32())
        else:
            columns["logits"] = fixed_list(logits.cpu().numpy().astype(self.np_dtype), self.dtype)
        if feature is not None:
            columns["feature"] = fixed_list(
                feature.float().cpu().numpy().astype(self.np_dtype), self.dtype
            )
        return pa.table(columns)
