"""The scheduler: walks the graph, consults the cache, dispatches ready steps, records everything.

Steps start as soon as all their inputs exist (at most ``max_parallel`` at once), so independent
branches run at the same time on a backend that allows it (Ray). A failed step marks its
descendants `skipped`; independent branches carry on, and everything that finished stays
committed for the next run.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from orchestrator.compile.graph import Graph, Node
from orchestrator.errors import ComponentError
from orchestrator.execution.backend import Backend, Outcome
from orchestrator.execution.step_runner import StepTask
from orchestrator.storage.cache import key_material, step_key
from orchestrator.storage.store import ArtifactStore
from schemas.artifacts import ArtifactRef
from schemas.pipeline import CachePolicy
from schemas.run import ErrorInfo, Event, EventKind, RunRecord, RunStatus, StepRecord, StepStatus

Listener = Callable[[Event], None]


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def artifact_refs(outputs: BaseModel) -> list[ArtifactRef]:
    refs: list[ArtifactRef] = []
    for name in type(outputs).model_fields:
        value = getattr(outputs, name)
        values = value if isinstance(value, list) else [value]
        refs += [v for v in values if isinstance(v, ArtifactRef)]
    return refs


def resolve_inputs(node: Node, outputs: dict[str, BaseModel]) -> dict[str, Any]:
    """The values arriving at each input port of ``node`` from finished upstream steps."""
    values: dict[str, Any] = {}
    for port, binding in node.bindings.items():
        items = [getattr(outputs[s.step_id], s.port) for s in binding.sources]
        if binding.gathered:
            values[port] = items
        elif binding.as_list and not isinstance(items[0], list):
            values[port] = [items[0]]
        else:
            values[port] = items[0]
    return values


def cached_outputs(node: Node, key: str, store: ArtifactStore) -> tuple[BaseModel | None, str]:
    """The committed outputs for ``key`` if they are complete; else None and the reason."""
    commit = store.read_commit(key)
    if commit is None:
        return None, "no cached result"
    try:
        outputs = node.component.Outputs.model_validate(commit.outputs)
    except ValueError:
        return None, "the cached result no longer fits the component's outputs"
    for ref in artifact_refs(outputs):
        if not store.exists(ref.manifest_uri):
            return None, f"cached artifact {ref.uri} is incomplete or deleted"
    return outputs, f"committed by run {commit.run_id}"


@dataclass
class PlannedStep:
    step_id: str
    component: str
    action: str  # "cached" | "run"
    key: str | None
    reason: str


def plan(graph: Graph, store: ArtifactStore) -> list[PlannedStep]:
    """What a run would do now: which steps are cached and which would run, and why."""
    known: dict[str, BaseModel] = {}
    steps = []
    for node in graph.nodes.values():
        pending = sorted(u for u in node.upstream if u not in known)
        if pending:
            steps.append(
                PlannedStep(node.id, node.component.key, "run", None, f"after {', '.join(pending)}")
            )
            continue
        material = key_material(
            node.component.key, node.component.version, node.config, resolve_inputs(node, known)
        )
        key = step_key(material)
        if node.cache != CachePolicy.default:
            steps.append(
                PlannedStep(node.id, node.component.key, "run", key, f"cache: {node.cache.value}")
            )
            continue
        outputs, reason = cached_outputs(node, key, store)
        if outputs is not None:
            known[node.id] = outputs
            steps.append(PlannedStep(node.id, node.component.key, "cached", key, reason))
        else:
            steps.append(PlannedStep(node.id, node.component.key, "run", key, reason))
    return steps


class Scheduler:
    def __init__(
        self,
        graph: Graph,
        store: ArtifactStore,
        backend: Backend,
        *,
        run_id: str | None = None,
        listeners: Iterable[Listener] = (),
        ray_address: str | None = None,
        dashboard_url: str | None = None,
        max_parallel: int | None = None,
    ):
        """``max_parallel`` caps how many steps run at once (None: as many as are ready)."""
        if max_parallel is not None and max_parallel < 1:
            raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
        self.graph = graph
        self.max_parallel = max_parallel
        self.store = store
        self.backend = backend
        self.run_id = run_id or new_run_id()
        self.listeners = list(listeners)
        self.events: list[Event] = []
        self.outputs: dict[str, BaseModel] = {}
        self.failures: list[ComponentError] = []
        self.records = {
            nid: StepRecord(step_id=nid, component=n.component.key, version=n.component.version)
            for nid, n in graph.nodes.items()
        }
        self.record = RunRecord(
            run_id=self.run_id,
            pipeline=graph.spec.name,
            status=RunStatus.running,
            started_at=now(),
            storage=store.root,
            ray_address=ray_address,
            dashboard_url=dashboard_url,
            steps=list(self.records.values()),
        )
        self._started: dict[str, float] = {}

    # -- bookkeeping ----------------------------------------------------------------------------
    def emit(self, kind: EventKind, step_id: str | None = None, **fields: Any) -> None:
        event = Event(kind=kind, run_id=self.run_id, step_id=step_id, time=now(), **fields)
        self.events.append(event)
        for listener in self.listeners:
            listener(event)

    def update(self, step_id: str, **fields: Any) -> None:
        self.records[step_id] = self.records[step_id].model_copy(update=fields)

    def persist(self, status: RunStatus = RunStatus.running) -> RunRecord:
        finished = None if status == RunStatus.running else now()
        self.record = self.record.model_copy(
            update={"status": status, "finished_at": finished, "steps": list(self.records.values())}
        )
        self.store.write_run(self.record, [e.model_dump(mode="json") for e in self.events])
        return self.record

    # -- the loop -------------------------------------------------------------------------------
    def reuse_or_prepare(self, node: Node) -> StepTask | None:
        """Record the committed result if there is one (None), else the task that must run."""
        inputs = resolve_inputs(node, self.outputs)
        material = key_material(node.component.key, node.component.version, node.config, inputs)
        key = step_key(material)
        reason = f"cache: {node.cache.value}"
        if node.cache == CachePolicy.default:
            outputs, reason = cached_outputs(node, key, self.store)
            if outputs is not None:
                self.outputs[node.id] = outputs
                self.update(
                    node.id,
                    key=key,
                    status=StepStatus.cached,
                    seconds=0.0,
                    reason=reason,
                    outputs=outputs.model_dump(mode="json"),
                )
                self.emit(EventKind.cache_hit, node.id, key=key, message=reason)
                return None
        self.update(node.id, key=key, reason=reason)
        return StepTask(
            step_id=node.id,
            component=node.component,
            config=node.config,
            inputs=inputs,
            key=key,
            key_material=material,
            run_id=self.run_id,
            cache=node.cache,
            resources=node.resources,
            store=self.store,
        )

    def submit(self, node: Node, task: StepTask) -> object:
        self._started[node.id] = time.perf_counter()
        self.update(node.id, status=StepStatus.running, started_at=now())
        self.emit(EventKind.started, node.id, key=task.key, message=self.records[node.id].reason)
        self.persist()
        return self.backend.submit(node, task)

    def has_slot(self, running: int) -> bool:
        return self.max_parallel is None or running < self.max_parallel

    def finish(self, node: Node, outcome: Outcome) -> None:
        seconds = time.perf_counter() - self._started[node.id]
        key = self.records[node.id].key
        if outcome.error is None and outcome.result is not None:
            self.outputs[node.id] = outcome.result.outputs
            self.update(
                node.id,
                status=StepStatus.ran,
                seconds=seconds,
                outputs=outcome.result.outputs.model_dump(mode="json"),
            )
            self.emit(EventKind.finished, node.id, key=key, seconds=seconds)
            return
        cause = outcome.error or RuntimeError("step returned no result")
        error = ComponentError(node.id, node.component.key, key, cause)
        error.__cause__ = cause
        self.failures.append(error)
        self.update(
            node.id,
            status=StepStatus.failed,
            seconds=seconds,
            error=ErrorInfo(
                type=type(cause).__name__, message=str(cause), traceback=outcome.traceback
            ),
        )
        self.emit(EventKind.failed, node.id, key=key, seconds=seconds, message=str(error))

    def run(self) -> RunRecord:
        """Run every step; returns the record (status failed if any step failed)."""
        for nid in self.graph.order:
            self.emit(EventKind.planned, nid)
        remaining = list(self.graph.order)
        ready: dict[str, StepTask] = {}  # not cached, waiting for a slot (in graph order)
        running: dict[object, str] = {}
        blocked: set[str] = set()  # failed or skipped
        try:
            while remaining or ready or running:
                before = len(remaining)
                for nid in list(remaining):
                    node = self.graph.nodes[nid]
                    upstream_bad = node.upstream & blocked
                    if upstream_bad:
                        remaining.remove(nid)
                        blocked.add(nid)
                        why = f"upstream failed: {', '.join(sorted(upstream_bad))}"
                        self.update(nid, status=StepStatus.skipped, reason=why)
                        self.emit(EventKind.skipped, nid, message=why)
                        continue
                    if not node.upstream <= self.outputs.keys():
                        continue
                    remaining.remove(nid)
                    task = self.reuse_or_prepare(node)
                    if task is not None:
                        ready[nid] = task
                while ready and self.has_slot(len(running)):
                    nid = next(iter(ready))
                    running[self.submit(self.graph.nodes[nid], ready.pop(nid))] = nid
                if not running:
                    if remaining and len(remaining) == before:
                        raise RuntimeError(f"scheduler stalled with {remaining} waiting")
                    continue
                handle, outcome = self.backend.wait_any(list(running))
                nid = running.pop(handle)
                self.finish(self.graph.nodes[nid], outcome)
                if outcome.error is not None:
                    blocked.add(nid)
                self.persist()
        except KeyboardInterrupt:
            self.backend.cancel(list(running))
            for nid in running.values():
                self.update(nid, status=StepStatus.failed, reason="interrupted")
            self.persist(RunStatus.interrupted)
            raise
        status = RunStatus.failed if self.failures else RunStatus.succeeded
        return self.persist(status)
