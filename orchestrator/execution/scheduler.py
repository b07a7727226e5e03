"""The scheduler: walks the graph, consults the cache, dispatches ready steps, records everything.

Steps start as soon as all their inputs exist (at most ``max_parallel`` at once), so independent
branches run at the same time on a backend that allows it (Ray). A failed step marks its
descendants `skipped`; independent branches carry on, and everything that finished stays
committed for the next run.

The run record costs O(1) per step: events are appended in chunks and ``run.json`` is rewritten
at most once per `PERSIST_INTERVAL_S` while steps finish quickly, and when the scheduler waits
for a step with news unwritten: at once, or, if it wrote less than `WAIT_PERSIST_S` ago, after
waiting out the rest of that time — so the record on disk is current whenever a step takes a
while, and a 1,000-step run does not rewrite a growing file 2,000 times.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from orchestrator.compile.graph import Graph, Node
from orchestrator.compile.resources import resource_request
from orchestrator.errors import ComponentError
from orchestrator.execution.backend import Backend, Outcome
from orchestrator.execution.decide import Decision, Fingerprints, decide, resolve_inputs
from orchestrator.execution.step_runner import StepTask
from orchestrator.storage.store import ArtifactStore
from orchestrator.storage.verified import CorruptArtifact
from schemas.engine.run import (
    ErrorInfo,
    Event,
    EventKind,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
)

Listener = Callable[[Event], None]
PERSIST_INTERVAL_S = 1.0
WAIT_PERSIST_S = 0.05


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def plan(graph: Graph, store: ArtifactStore) -> list[Decision]:
    """What a run would do now: which steps are cached and which would run, and why."""
    known: dict[str, BaseModel] = {}
    steps = []
    fingerprints: Fingerprints = {}
    for node in graph.nodes.values():
        pending = sorted(u for u in node.upstream if u not in known)
        if pending:
            steps.append(
                Decision(node.id, node.component.key, "run", None, f"after {', '.join(pending)}")
            )
            continue
        decision = decide(node, resolve_inputs(node, known), store, graph.spec.name, fingerprints)
        if decision.outputs is not None:
            known[node.id] = decision.outputs
        steps.append(decision)
    return steps


def corrupt_cause(error: BaseException | None) -> CorruptArtifact | None:
    """The `CorruptArtifact` behind a step's failure, if that is what it was."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, CorruptArtifact):
            return error
        error = getattr(error, "cause", None) or error.__cause__
        seen += 1
    return None


class Scheduler:
    """Runs a compiled graph on a backend, step by step as inputs become ready, and records it.

    Everything it does is told as an `Event` to its ``listeners``, in order: console progress,
    metrics and tests observe a run that way, attached by whoever runs the scheduler
    (`orchestrator.api.run`); it imports none of them, and a listener changes nothing.
    """

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
        capacity: Mapping[str, float] | None = None,
    ):
        """``max_parallel`` caps how many steps run at once (None: as many as are ready).

        ``capacity`` (a fixed cluster's resources, e.g. an embedded Ray's) admits a step beside
        running ones only when all their requests, the workers and actors they start included
        (`resource_request`), fit in it together. Ray queues tasks and placement groups by
        resources itself, but not a step's actor pool: two inference steps that each got half
        of their actors would wait for the other half forever. A step always starts when
        nothing else runs (compilation checked that each fits alone). On a cluster that
        autoscales, leave it None: what it has now is not what it can have."""
        if max_parallel is not None and max_parallel < 1:
            raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
        self.graph = graph
        self.max_parallel = max_parallel
        self.capacity = dict(capacity) if capacity is not None else None
        self.store = store
        self.backend = backend
        self.run_id = run_id or new_run_id()
        self.listeners = list(listeners)
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
            driver_host=socket.gethostname(),
            driver_pid=os.getpid(),
            steps=list(self.records.values()),
            final_steps=[nid for nid in graph.nodes if not graph.downstream(nid)],
        )
        self._pending_events: list[str] = []
        self._chunk = 0
        self._last_persist = 0.0
        self._fingerprints: Fingerprints = {}
        self._progress = backend.progress_channel(
            lambda step_id, message: self.emit(EventKind.progress, step_id, message=message)
        )

    # -- bookkeeping ----------------------------------------------------------------------------
    def emit(self, kind: EventKind, step_id: str | None = None, **fields: Any) -> None:
        event = Event(kind=kind, run_id=self.run_id, step_id=step_id, time=now(), **fields)
        self._pending_events.append(event.model_dump_json() + "\n")
        for listener in self.listeners:
            listener(event)

    def update(self, step_id: str, **fields: Any) -> None:
        self.records[step_id] = self.records[step_id].model_copy(update=fields)

    def persist(
        self, status: RunStatus = RunStatus.running, interval: float = PERSIST_INTERVAL_S
    ) -> RunRecord:
        """Write the record and new events; while running, at most every ``interval`` s."""
        final = status != RunStatus.running
        if not final and time.monotonic() - self._last_persist < interval:
            return self.record
        self.record = self.record.model_copy(
            update={
                "status": status,
                "finished_at": now() if final else None,
                "steps": list(self.records.values()),
            }
        )
        if self._pending_events:
            self.store.append_events(self.run_id, self._chunk, self._pending_events)
            self._chunk += 1
            self._pending_events = []
        self.store.write_run(self.record)
        self._last_persist = time.monotonic()
        return self.record

    def wait_any(self, handles: list[object]) -> tuple[object, Outcome]:
        """The next step to finish. News not yet on disk (a step started, another finished) is
        written before blocking, or — when the record was written less than `WAIT_PERSIST_S`
        ago — once that much time has passed without a step finishing: the record is rewritten
        at most every `WAIT_PERSIST_S`, and while a step takes a while it says so."""
        backend = self.backend
        if getattr(backend, "runs_on_submit", False) or not self._pending_events:
            return self._finished(backend.wait_any(handles))
        remaining = WAIT_PERSIST_S - (time.monotonic() - self._last_persist)
        if remaining > 0:
            finished = backend.wait_any(handles, timeout=remaining)
            if finished is not None:
                return finished
        self.persist(interval=0.0)
        return self._finished(backend.wait_any(handles))

    @staticmethod
    def _finished(finished: tuple[object, Outcome] | None) -> tuple[object, Outcome]:
        assert finished is not None, "a wait without a timeout returned nothing"
        return finished

    # -- the loop -------------------------------------------------------------------------------
    def reuse_or_prepare(self, node: Node) -> StepTask | None:
        """Record the committed result if there is one (None), else the task that must run."""
        inputs = resolve_inputs(node, self.outputs)
        decision = decide(node, inputs, self.store, self.graph.spec.name, self._fingerprints)
        assert decision.key is not None and decision.material is not None
        if decision.outputs is not None:
            self.outputs[node.id] = decision.outputs
            self.update(
                node.id,
                key=decision.key,
                status=StepStatus.cached,
                seconds=0.0,
                reason=decision.reason,
                outputs=decision.outputs.model_dump(mode="json"),
            )
            self.emit(EventKind.cache_hit, node.id, key=decision.key, message=decision.reason)
            return None
        self.update(node.id, key=decision.key, reason=decision.reason)
        return StepTask(
            step_id=node.id,
            component=node.component,
            config=node.config,
            inputs=inputs,
            key=decision.key,
            key_material=decision.material,
            run_id=self.run_id,
            cache=node.cache,
            resources=node.resources,
            store=self.store,
            progress=self._progress,
        )

    def submit(self, node: Node, task: StepTask) -> object:
        self.update(node.id, status=StepStatus.running, started_at=now())
        self.emit(EventKind.started, node.id, key=task.key, message=self.records[node.id].reason)
        self.persist()
        return self.backend.submit(node, task)

    def full(self, running: int) -> bool:
        return self.max_parallel is not None and running >= self.max_parallel

    def admits(self, running: Collection[str], nid: str) -> bool:
        """Whether step ``nid`` may start beside the ``running`` ones (see ``capacity``)."""
        if self.full(len(running)):
            return False
        if self.capacity is None or not running:
            return True
        need: dict[str, float] = {}
        for other in (*running, nid):
            for name, amount in resource_request(self.graph.nodes[other]).items():
                need[name] = need.get(name, 0.0) + amount
        return all(amount <= self.capacity.get(name, 0.0) + 1e-9 for name, amount in need.items())

    def finish(self, node: Node, outcome: Outcome) -> None:
        key = self.records[node.id].key
        if outcome.error is None and outcome.result is not None:
            result = outcome.result
            self.outputs[node.id] = result.outputs
            self.update(
                node.id,
                status=StepStatus.ran,
                seconds=result.seconds,
                node=result.node or None,
                outputs=result.outputs.model_dump(mode="json"),
            )
            if key is not None and node.cache.value != "off":
                self.store.write_index(self.graph.spec.name, node.id, key)
            self.emit(EventKind.finished, node.id, key=key, seconds=result.seconds)
            return
        cause = outcome.error or RuntimeError("step returned no result")
        message = str(cause)
        corrupt = corrupt_cause(cause)
        # An input's committed bytes changed under us: move that result aside so the next run
        # recomputes the step that made it (and, through its key, everything after it).
        if (
            corrupt is not None
            and corrupt.key
            and corrupt.key != key
            and self.store.quarantine(corrupt.key, str(corrupt))
        ):
            message += " [its committed result was moved aside: run again to recompute it]"
        error = ComponentError(node.id, node.component.key, key, cause)
        error.__cause__ = cause
        self.failures.append(error)
        self.update(
            node.id,
            status=StepStatus.failed,
            seconds=outcome.seconds,
            error=ErrorInfo(
                type=type(cause).__name__, message=message, traceback=outcome.traceback
            ),
        )
        self.emit(EventKind.failed, node.id, key=key, seconds=outcome.seconds, message=str(error))

    def run(self) -> RunRecord:
        """Run every step; returns the record (status failed if any step failed)."""
        for nid in self.graph.order:
            self.emit(EventKind.planned, nid)
        graph = self.graph
        position = {nid: i for i, nid in enumerate(graph.order)}
        waiting = {nid: len(graph.nodes[nid].upstream) for nid in graph.order}
        ready_ids = deque(nid for nid, n in waiting.items() if n == 0)  # inputs known, graph order
        ready: dict[str, StepTask] = {}  # not cached, waiting for a slot (in graph order)
        running: dict[object, str] = {}
        blocked: set[str] = set()  # failed or skipped

        def done(nid: str) -> None:  # a step's outputs exist: its children may become ready
            for child in sorted(graph.downstream(nid), key=position.__getitem__):
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready_ids.append(child)

        def block(nid: str) -> None:
            why = f"upstream failed: {nid}"
            for child in sorted(graph.descendants(nid) - blocked, key=position.__getitem__):
                blocked.add(child)
                self.update(child, status=StepStatus.skipped, reason=why)
                self.emit(EventKind.skipped, child, message=why)

        try:
            while ready_ids or ready or running:
                while ready_ids:
                    nid = ready_ids.popleft()
                    if nid in blocked:
                        continue
                    task = self.reuse_or_prepare(self.graph.nodes[nid])
                    if task is None:
                        done(nid)
                    else:
                        ready[nid] = task
                for nid in list(ready):  # in graph order; a smaller later step may fit first
                    if self.full(len(running)):
                        break
                    if self.admits(list(running.values()), nid):
                        running[self.submit(self.graph.nodes[nid], ready.pop(nid))] = nid
                if not running:
                    continue
                handle, outcome = self.wait_any(list(running))
                nid = running.pop(handle)
                self.finish(self.graph.nodes[nid], outcome)
                if outcome.error is not None:
                    blocked.add(nid)
                    block(nid)
                else:
                    done(nid)
                self.persist()
        except KeyboardInterrupt:
            self.backend.cancel(list(running))
            for nid in running.values():
                self.update(nid, status=StepStatus.failed, reason="interrupted")
            self.persist(RunStatus.interrupted)
            raise
        status = RunStatus.failed if self.failures else RunStatus.succeeded
        return self.persist(status)
