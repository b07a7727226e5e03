"""A run in MLflow: one MLflow run per kdorch run, with a nested run per step.

`MlflowTracker` is a scheduler listener (`orchestrator.api.run` attaches it when tracking is
on). For each step that runs, a nested run opens when it starts — params: its config,
flattened; tags: component, version, cache key, store, kdorch version — and, when it finishes,
gets its per-epoch history (a metric per column, step = epoch), its final metrics and its
reports (`uploads`). A cached step gets a nested run tagged ``kdorch.status = cached`` with its
params and final metrics, linked to the kdorch run that made it and to that run's MLflow run
when it was tracked. A sweep's trials become runs nested in their step's run (`_trials`). The
parent run ends with the run's status, counts and the run record; the reports of the run are
attached to it too.

The MLflow calls happen on a thread of their own, in event order: a slow tracking server never
slows the scheduler, and a tracker that fails mid-run only says so (the run goes on). Opening
the tracker (experiment, parent run) is done at once and fails fast, before anything runs.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from orchestrator.compile.graph import Graph
from orchestrator.storage.store import ArtifactStore
from orchestrator.tracking import records, uploads
from orchestrator.tracking.context import tensorboard_run_folder, write_context
from orchestrator.tracking.settings import TrackingTarget, TrackingUnavailable
from schemas.engine.run import Event, EventKind, RunRecord, RunStatus

log = logging.getLogger("kdorch")

#: How long `close` waits for the tracker's thread to send what it was given.
CLOSE_TIMEOUT_S = 120.0
_HANDLED = {EventKind.started, EventKind.finished, EventKind.failed, EventKind.cache_hit}
_END = {
    RunStatus.succeeded: "FINISHED",
    RunStatus.failed: "FAILED",
    RunStatus.interrupted: "KILLED",
    RunStatus.running: "KILLED",
}
_BATCH = {"metrics": 1000, "params": 100, "tags": 100}


def kdorch_version() -> str:
    try:
        return importlib.metadata.version("kdorch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def _fail_fast() -> Iterator[None]:
    """MLflow retries an HTTP call for minutes by default; opening the tracker should fail in
    seconds when the server is not there."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES",)}
    saved["MLFLOW_HTTP_REQUEST_TIMEOUT"] = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class MlflowTracker:
    """A scheduler listener that records the run in MLflow (see the module docstring); call
    `close` with the run's record when the run ends."""

    def __init__(
        self,
        target: TrackingTarget,
        graph: Graph,
        store: ArtifactStore,
        run_id: str,
        *,
        source: str | None = None,
    ):
        from mlflow import MlflowClient

        if logging.getLogger().getEffectiveLevel() > logging.INFO:
            # MLflow logs its own INFO lines ("Creating initial MLflow database tables...")
            # through a handler of its own: only with `kdorch run --verbose`.
            logging.getLogger("mlflow").setLevel(logging.WARNING)
        # MLflow prints "View run ... at URL" on stdout for every run it ends (a line per
        # step); kdorch says the parent's URL once.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.target, self.graph, self.store, self.run_id = target, graph, store, run_id
        self.client = MlflowClient(tracking_uri=target.uri)
        try:
            with _fail_fast():
                self.experiment_id = self._experiment()
                self.parent = self._open_parent(source)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise TrackingUnavailable(
                f"tracking: could not use the MLflow tracking store {target.uri}: {first}. "
                "Check that the server is up and the URI right (`curl URI/health` for a "
                "server), or run without tracking"
            ) from e
        if target.tensorboard:
            folder = tensorboard_run_folder(graph.spec.name, run_id)
            write_context(store, run_id, {"tensorboard": folder})
        self.children: dict[str, str] = {}  # step id -> its MLflow run id
        self._open: set[str] = set()  # step runs not ended yet
        self._deferred: set[str] = set()  # ran, but their outputs are not committed
        self._reports: list[tuple[str, Mapping[str, Any]]] = []  # (step, report ref)
        self._broken = False
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="kdorch-tracker", daemon=True)
        self._thread.start()

    # -- the listener -----------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        if event.kind in _HANDLED and event.step_id is not None:
            self._queue.put(event)

    def close(self, record: RunRecord | None) -> None:
        """End the step runs and the parent run (with ``record``'s status and account; None: the
        run did not get to record anything) and wait for everything to be sent."""
        self._queue.put(("close", record))
        self._thread.join(CLOSE_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning(
                "tracking: MLflow (%s) did not take the run's last records within %g s; "
                "they are lost",
                self.target.uri,
                CLOSE_TIMEOUT_S,
            )

    @property
    def url(self) -> str | None:
        """The parent run in the tracking server's UI (a server only)."""
        if not self.target.is_server:
            return None
        base = self.target.uri.rstrip("/")
        return f"{base}/#/experiments/{self.experiment_id}/runs/{self.parent}"

    # -- the thread -------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            closing = isinstance(item, tuple)
            try:
                if closing:
                    self._close(item[1])
                elif not self._broken:
                    self._handle(item)
            except Exception as e:  # tracking is informative: never fail the run for it
                if not self._broken:
                    log.warning(
                        "tracking: MLflow failed (%s: %s); the run goes on without the rest "
                        "of its tracking",
                        type(e).__name__,
                        str(e).splitlines()[0][:300] if str(e) else "",
                    )
                self._broken = True
            if closing:
                return

    def _handle(self, event: Event) -> None:
        step_id = event.step_id
        assert step_id is not None
        if event.kind == EventKind.started:
            self.children[step_id] = self._open_child(step_id, event.key, "running")
            self._open.add(step_id)
        elif event.kind == EventKind.finished:
            self._finished(step_id, event)
        elif event.kind == EventKind.failed:
            run = self.children[step_id]
            self._log(run, tags={"kdorch.status": "failed", "kdorch.error": event.message})
            self._end(step_id, "FAILED")
        elif event.kind == EventKind.cache_hit:
            self._cached(step_id, event.key)

    # -- MLflow records ---------------------------------------------------------------------------
    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.target.experiment)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(
                self.client.create_experiment(
                    self.target.experiment, artifact_location=self.target.artifact_location
                )
            )
        except Exception:  # another run created it a moment ago
            found = self.client.get_experiment_by_name(self.target.experiment)
            if found is None:
                raise
            return str(found.experiment_id)

    def _common_tags(self) -> dict[str, str]:
        return {
            "kdorch.run_id": self.run_id,
            "kdorch.pipeline": self.graph.spec.name,
            "kdorch.store": self.store.root,
            "kdorch.version": kdorch_version(),
        }

    def _open_parent(self, source: str | None) -> str:
        tags = {**self._common_tags(), "kdorch.status": "running"}
        if source:
            tags["mlflow.source.name"] = source
        if self.graph.spec.description:
            tags["mlflow.note.content"] = self.graph.spec.description
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=self.run_id)
        parent = str(run.info.run_id)
        self._log(parent, params=records.flatten_params(dict(self.graph.spec.params)))
        return parent

    def _open_child(self, step_id: str, key: str | None, status: str) -> str:
        node = self.graph.nodes[step_id]
        tags = {
            **self._common_tags(),
            "mlflow.parentRunId": self.parent,
            "kdorch.step_id": step_id,
            "kdorch.component": node.component.key,
            "kdorch.component_version": str(node.component.version),
            "kdorch.cache_key": key or "",
            "kdorch.status": status,
        }
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=step_id)
        child = str(run.info.run_id)
        self._log(child, params=records.flatten_params(node.config.model_dump(mode="json")))
        return child

    def _log(
        self,
        run: str,
        *,
        metrics: list[tuple[str, float, int]] | None = None,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """One `log_batch` per MLflow's batch limits."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        entities: dict[str, list[Any]] = {
            "metrics": [Metric(n, v, now, s) for n, v, s in metrics or []],
            "params": [Param(k, v) for k, v in (params or {}).items()],
            "tags": [RunTag(k, records.tag_text(v)) for k, v in (tags or {}).items()],
        }
        for kind, items in entities.items():
            size = _BATCH[kind]
            for start in range(0, len(items), size):
                chunk = items[start : start + size]
                if kind == "metrics":
                    self.client.log_batch(run, metrics=chunk)
                elif kind == "params":
                    self.client.log_batch(run, params=chunk)
                else:
                    self.client.log_batch(run, tags=chunk)

    def _end(self, step_id: str, status: str) -> None:
        self.client.set_terminated(self.children[step_id], status=status)
        self._open.discard(step_id)

    # -- steps ------------------------------------------------------------------------------------
    def _finished(self, step_id: str, event: Event) -> None:
        commit = self.store.read_commit(event.key) if event.key else None
        if commit is None or commit.run_id != self.run_id:  # cache: off, nothing committed
            self._deferred.add(step_id)
            return
        self._record_outputs(step_id, commit.outputs, seconds=event.seconds)
        self._end(step_id, "FINISHED")

    def _record_outputs(
        self, step_id: str, outputs: Mapping[str, Any], *, seconds: float | None
    ) -> None:
        run = self.children[step_id]
        history = records.output_history(outputs)
        points = list(records.history_points(history))
        last = max((s for _, _, s in points), default=0)
        points += [(n, v, last) for n, v in records.output_metrics(outputs).items()]
        if seconds is not None:
            points.append(("step_seconds", float(seconds), 0))
        self._log(run, metrics=points, tags={"kdorch.status": "ran"})
        self._upload(step_id, run, outputs, trials=True)

    def _upload(
        self, step_id: str, run: str | None, outputs: Mapping[str, Any], *, trials: bool
    ) -> None:
        """The step's reports (and models, if asked) to ``run``; a sweep's trials as runs
        nested in it; reports are also kept for the parent run."""
        for port, value in records.artifacts(outputs):
            ref = uploads.as_ref(value)
            kind = uploads.kind_of(self.store, ref)
            if kind == "EvalReport":
                self._reports.append((step_id, value))
            if run is None or not uploads.uploaded(kind, self.target.log_models):
                continue
            with tempfile.TemporaryDirectory(prefix="kdorch-track-") as tmp:
                uploads.copy_files(self.store, ref, Path(tmp))
                self.client.log_artifacts(run, tmp, artifact_path=port)
            if trials and kind == uploads.SWEEP_KIND:
                self._trials(step_id, run, ref, str(value.get("metric", "")))

    def _trials(self, step_id: str, run: str, ref: Any, metric: str) -> None:
        """Each trial of a sweep as a run nested in its step's run: its searched values as
        params, its result and timings as metrics, its status (and error) as tags."""
        for row in uploads.trial_rows(self.store, ref):
            params, metrics, tags = uploads.split_trial(row, metric)
            tags.update({**self._common_tags(), "mlflow.parentRunId": run})
            tags["kdorch.step_id"] = step_id
            name = str(row.get("trial") or row.get("trial_id") or "trial")
            trial = str(
                self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id
            )
            self._log(trial, params=params, metrics=[(k, v, 0) for k, v in metrics.items()])
            failed = row.get("status") == "failed"
            self.client.set_terminated(trial, status="FAILED" if failed else "FINISHED")

    def _cached(self, step_id: str, key: str | None) -> None:
        """A cached step: its params and final metrics, linked to the run that made it."""
        commit = self.store.read_commit(key) if key else None
        child = self.children[step_id] = self._open_child(step_id, key, "cached")
        self._open.add(step_id)
        if commit is not None:
            made = self._made_by(key or "")
            tags = {"kdorch.made_by_run": commit.run_id}
            note = f"Cached: made by kdorch run {commit.run_id}"
            if made is not None:
                tags["kdorch.made_by_mlflow_run"] = made
                note += f" ([its MLflow run](#/experiments/{self.experiment_id}/runs/{made}))"
            tags["mlflow.note.content"] = note + "."
            metrics = [(n, v, 0) for n, v in records.output_metrics(commit.outputs).items()]
            self._log(child, metrics=metrics, tags=tags)
            self._upload(step_id, None, commit.outputs, trials=False)
        self._end(step_id, "FINISHED")

    def _made_by(self, key: str) -> str | None:
        """The MLflow run of the step run that committed ``key``, when it was tracked."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`kdorch.cache_key` = '{key}' and tags.`kdorch.status` = 'ran'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return str(found[0].info.run_id) if found else None

    # -- the end ----------------------------------------------------------------------------------
    def _close(self, record: RunRecord | None) -> None:
        if record is not None and not self._broken:
            for step_id in sorted(self._deferred):
                step = record.step(step_id)
                self._record_outputs(step_id, step.outputs, seconds=step.seconds)
                self._end(step_id, "FINISHED")
        for step_id in sorted(self._open):
            self.client.set_terminated(self.children[step_id], status="KILLED")
        status = record.status if record is not None else RunStatus.interrupted
        if record is not None:
            self._close_parent(record)
        self.client.set_terminated(self.parent, status=_END[status])

    def _close_parent(self, record: RunRecord) -> None:
        counts: dict[str, float] = {}
        for step in record.steps:
            counts[f"steps_{step.status.value}"] = counts.get(f"steps_{step.status.value}", 0) + 1
        if record.finished_at is not None:
            counts["run_seconds"] = (record.finished_at - record.started_at).total_seconds()
        self._log(
            self.parent,
            metrics=[(n, v, 0) for n, v in counts.items()],
            tags={"kdorch.status": record.status.value},
        )
        self.client.log_text(self.parent, record.model_dump_json(indent=1), "run.json")
        for step_id, value in self._reports:
            with tempfile.TemporaryDirectory(prefix="kdorch-track-") as tmp:
                uploads.copy_files(self.store, uploads.as_ref(value), Path(tmp))
                self.client.log_artifacts(self.parent, tmp, artifact_path=f"report/{step_id}")
