"""The callable each Ray Data actor holds: a teacher turning dataset batches into outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from components.artifacts.datasets import XReader
from components.artifacts.logits import fixed_list
from components.data.augment import Views
from orchestrator import ArtifactStore
from schemas.kd.artifacts import ModelCheckpoint


class TeacherPredictor:
    """Loads the teacher once per actor; ``__call__(pyarrow batch) -> pyarrow batch``.

    Output columns: ``row_id``; ``logits`` or ``topk_indices``/``topk_values``/``rest_mass``;
    ``feature`` when asked. Computation is fp32 in eval mode; only storage is cast. With
    ``views``, the teacher runs on each augmented view of the batch and a row holds its views'
    outputs side by side (`schemas.kd.artifacts.LogitShards`).
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
        views: Views | None = None,
        x_reader: XReader | None = None,
    ):
        import torch

        from components.artifacts.checkpoints import load_model

        self.torch = torch
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        model, _ = load_model(store, teacher)
        self.model = model.eval().to(self.device)
        self.shape = feature_shape
        # How the dataset stores x (`x_reader(dataset)`); None: float32 rows, as tables do.
        self.x_reader = x_reader or XReader("float32", int(np.prod(feature_shape)), 1)
        self.dtype = pa.float16() if precision == "float16" else pa.float32()
        self.np_dtype = np.float16 if precision == "float16" else np.float32
        self.top_k, self.feature = top_k, feature
        self.views = views

    def inputs(self, batch: pa.Table) -> list[Any]:
        """What the teacher sees of ``batch``: the clean rows, or each view's tensors in view
        order (`components.data.augment`), on the teacher's device."""
        torch = self.torch
        x = torch.from_numpy(self.x_reader.numpy(batch.column("x"))).reshape(-1, *self.shape)
        x = x.to(self.device)
        if self.views is None:
            return [x]
        row_id = batch.column("row_id").to_numpy()
        return [self.views.tensors(x, row_id, v) for v in range(self.views.count)]

    def _run(self, x: Any) -> tuple[Any, Any]:
        if self.feature:
            out = self.model.intermediate(x, [self.feature, "logits"])
            return out["logits"].float(), out[self.feature].flatten(1)
        return self.model(x).float(), None

    def __call__(self, batch: pa.Table) -> pa.Table:
        torch = self.torch
        with torch.inference_mode():
            # One (logits, feature) per view; with views, a row holds its views side by side.
            outs = [self._run(x) for x in self.inputs(batch)]
        logits = torch.cat([o[0] for o in outs], dim=1)
        feature = None if outs[0][1] is None else torch.cat([o[1] for o in outs], dim=1)
        columns: dict[str, Any] = {"row_id": batch.column("row_id")}
        if "path" in batch.column_names:  # which split file the row came from (for routing)
            columns["path"] = batch.column("path")
        if self.top_k is not None:
            columns.update(self._topk([o[0] for o in outs]))
        else:
            columns["logits"] = fixed_list(logits.cpu().numpy().astype(self.np_dtype), self.dtype)
        if feature is not None:
            columns["feature"] = fixed_list(
                feature.float().cpu().numpy().astype(self.np_dtype), self.dtype
            )
        return pa.table(columns)

    def _topk(self, per_view: list[Any]) -> dict[str, Any]:
        """Top-k columns; with views, each view's k side by side and ``rest_mass`` one per view."""
        torch = self.torch
        k = min(self.top_k or 0, per_view[0].shape[1])
        picked = [logits.topk(k, dim=1) for logits in per_view]
        rest = [
            (1.0 - torch.softmax(logits, dim=1).gather(1, indices).sum(1)).clamp_min(0)
            for logits, (_, indices) in zip(per_view, picked, strict=True)
        ]
        values = torch.cat([v for v, _ in picked], dim=1)
        indices = torch.cat([i for _, i in picked], dim=1)
        mass = rest[0] if self.views is None else torch.stack(rest, dim=1)
        return {
            "topk_indices": fixed_list(indices.int().cpu().numpy(), pa.int32()),
            "topk_values": fixed_list(values.cpu().numpy().astype(self.np_dtype), self.dtype),
            "rest_mass": (
                pa.array(mass.cpu().numpy(), pa.float32())
                if mass.dim() == 1
                else fixed_list(mass.cpu().numpy().astype(np.float32), pa.float32())
            ),
        }
