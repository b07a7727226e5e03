"""The Python entry points behind the CLI: load, validate, plan, run."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from orchestrator.compile.compiler import compile_pipeline
from orchestrator.compile.external import config_check_problems
from orchestrator.compile.graph import Graph
from orchestrator.compile.problems import make_locator
from orchestrator.compile.resources import capacity_problems
from orchestrator.compile.wiring import wiring_problems
from orchestrator.errors import RunFailed, StorageError, ValidationFailed
from orchestrator.execution.decide import Decision
from orchestrator.execution.metrics import StepMetrics
from orchestrator.execution.ray_session import embedded_capacity, ray_session, target_address
from orchestrator.execution.scheduler import Listener, Scheduler, new_run_id
from orchestrator.execution.scheduler import plan as plan_graph
from orchestrator.frontend.loader import LoadedPipeline, load_pipeline, with_overrides
from orchestrator.storage.files import resolve_storage
from orchestrator.storage.options import merge_options
from orchestrator.storage.store import ArtifactStore
from schemas.engine.pipeline import PipelineSpec
from schemas.engine.run import RunRecord, RunStatus
from schemas.engine.storage import StorageOptions

log = logging.getLogger("kdorch")
Source = str | Path | PipelineSpec


def load(
    source: Source, overrides: Sequence[str] = (), profile: str | None = None
) -> LoadedPipeline:
    """A pipeline from a YAML path or a spec, with a profile and `--set` overrides applied."""
    if isinstance(source, PipelineSpec):
        return LoadedPipeline(with_overrides(source, overrides, profile))
    return load_pipeline(source, overrides, profile)


def _compile(
    loaded: LoadedPipeline, capacity: dict[str, float] | None, *, check_data: bool = True
) -> Graph:
    """The compiled graph, then each step's checks against its wiring (`wiring_problems`:
    teacher inputs for its losses, domains its dataset has) and, unless ``check_data`` is off,
    its look at the world outside the pipeline (`Component.check_config`: data files,
    columns), all reported together as located problems like the rest."""
    graph = compile_pipeline(loaded.spec, loaded.source_map, capacity)
    locate = make_locator(loaded.source_map, [s.id for s in loaded.spec.steps])
    problems = config_check_problems(graph.nodes.values(), locate) if check_data else []
    problems += wiring_problems(graph, locate, outside=check_data)
    if problems:
        raise ValidationFailed(problems, source=loaded.source)
    return graph


def validate(
    source: Source,
    *,
    overrides: Sequence[str] = (),
    profile: str | None = None,
    address: str | None = None,
    check_data: bool = True,
) -> Graph:
    """Every check that needs no cluster; resources are checked against the embedded Ray's size
    when the pipeline would run on one. ``check_data`` also looks at the data steps read from
    outside the store (Parquet footers; off for `kdorch submit`, whose run checks it on the
    cluster, which may reach data this machine cannot)."""
    loaded = load(source, overrides, profile)
    embedded = target_address(loaded.spec.ray, address) is None
    capacity = embedded_capacity(loaded.spec.ray) if embedded else None
    return _compile(loaded, capacity, check_data=check_data)


def open_store(
    spec: PipelineSpec,
    storage: str | None,
    *,
    write: bool = True,
    options: StorageOptions | None = None,
) -> ArtifactStore:
    """The run's store, checked to be usable before any step starts (see `storage.probe`).
    ``options`` (the command line's) override the file's ``storage_options`` one by one."""
    from orchestrator.storage.probe import check_store

    store = ArtifactStore(
        resolve_storage(storage, spec.storage), merge_options(spec.storage_options, options)
    )
    check_store(store, write=write)
    return store


def plan(
    source: Source,
    *,
    storage: str | None = None,
    overrides: Sequence[str] = (),
    profile: str | None = None,
    storage_options: StorageOptions | None = None,
) -> list[Decision]:
    """Which steps a run would take from the cache and which it would run, and why (no Ray)."""
    loaded = load(source, overrides, profile)
    graph = _compile(loaded, None)
    store = open_store(loaded.spec, storage, write=False, options=storage_options)
    return plan_graph(graph, store)


def _check_shared_storage(store: ArtifactStore, embedded: bool) -> None:
    """Refuse a local-path store on a cluster of several nodes: they share no disk, so a step
    on one node could not read what another wrote (object storage is what works)."""
    if embedded or not store.is_local:
        return
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1:
        raise StorageError(
            f"the artifact store {store.root} is a local folder, but the cluster has "
            f"{len(nodes)} nodes that share no disk: steps on other nodes could not read it. "
            "Use object storage: --storage s3://BUCKET/PREFIX (see infra/README.md)"
        )


def _check_capacity(
    graph: Graph, loaded: LoadedPipeline, resources: dict[str, float], strict: bool
) -> None:
    """The cluster we connected to against what every step needs (`capacity_problems`)."""
    locate = make_locator(loaded.source_map, [s.id for s in loaded.spec.steps])
    problems = capacity_problems(graph.nodes.values(), resources, locate)
    if problems and strict:
        raise ValidationFailed(problems, source=loaded.source)
    for p in problems:  # an autoscaling cluster may still grow to fit
        log.warning("%s (waiting for the cluster to scale up)", p.message)


def _tracker(
    loaded: LoadedPipeline, graph: Graph, store: ArtifactStore, run_id: str, track: str | None
) -> Any:
    """The run's `MlflowTracker` when tracking is on (the ``tracking:`` block or ``track``);
    None otherwise, and then nothing of MLflow is imported."""
    from orchestrator.tracking.settings import requested, resolve

    target = resolve(requested(loaded.spec.tracking, track), store, loaded.spec.name)
    if target is None:
        return None
    from orchestrator.tracking.mlflow_tracker import MlflowTracker

    tracker = MlflowTracker(target, graph, store, run_id, source=loaded.source)
    log.info(
        "tracking in MLflow at %s (experiment %s)%s",
        target.uri,
        target.experiment,
        f": {tracker.url}" if tracker.url else "",
    )
    return tracker


def run(
    source: Source,
    *,
    storage: str | None = None,
    address: str | None = None,
    overrides: Sequence[str] = (),
    profile: str | None = None,
    executor: str = "ray",
    listeners: Iterable[Listener] = (),
    on_session: Any = None,
    raise_on_failure: bool = False,
    storage_options: StorageOptions | None = None,
    run_id: str | None = None,
    track: str | None = None,
) -> RunRecord:
    """Validate and run a pipeline; returns its `RunRecord` (see `RunFailed` for failures).

    ``executor="local"`` runs steps one by one in this process without starting Ray. When every
    step is cached, no Ray is started either: the run only records the cache hits.
    ``on_session`` is called with the `RaySession` once Ray is up (the CLI prints the dashboard).
    ``storage_options`` override the file's ``storage_options`` one by one (``--storage-option``).
    ``listeners`` observe the run's events as they happen: `kdorch run` prints them with
    `orchestrator.cli.progress.ConsoleReporter`, which a script may attach too. The steps'
    Prometheus metrics (`StepMetrics`) are always attached; the MLflow tracker when tracking is
    on (``track``: a tracking URI, or ``"local"``, turns it on; docs/tracking.md).
    """
    loaded = load(source, overrides, profile)
    graph = _compile(loaded, None)
    store = open_store(loaded.spec, storage, options=storage_options)
    run_id = run_id or new_run_id()
    tracker = _tracker(loaded, graph, store, run_id, track)
    listeners = [*listeners, StepMetrics(graph), *([tracker] if tracker is not None else [])]
    if executor == "ray" and all(d.action == "cached" for d in plan_graph(graph, store)):
        executor = "local"  # nothing will run: skip the cluster's start-up and shutdown
    schedulers: list[Scheduler] = []
    try:
        record = _execute(
            loaded, graph, store, executor, listeners, run_id, address, on_session, schedulers
        )
    finally:
        if tracker is not None:
            tracker.close(schedulers[0].record if schedulers else None)
    if raise_on_failure and record.status == RunStatus.failed:
        raise RunFailed(record, schedulers[0].failures)
    return record


def _execute(
    loaded: LoadedPipeline,
    graph: Graph,
    store: ArtifactStore,
    executor: str,
    listeners: list[Listener],
    run_id: str,
    address: str | None,
    on_session: Any,
    made: list[Scheduler],
) -> RunRecord:
    """Run the graph on ``executor``; the scheduler it made is appended to ``made``."""
    if executor == "local":
        from orchestrator.execution.backend import LocalBackend

        made.append(Scheduler(graph, store, LocalBackend(), listeners=listeners, run_id=run_id))
        return made[0].run()
    if executor != "ray":
        raise ValueError(f"executor must be 'ray' or 'local', got {executor!r}")
    from orchestrator.execution.ray_backend import RayBackend

    with ray_session(loaded.spec.ray, address) as session:
        _check_capacity(graph, loaded, session.resources, strict=session.local)
        _check_shared_storage(store, session.local)
        if on_session is not None:
            on_session(session)
        made.append(
            Scheduler(
                graph,
                store,
                RayBackend(warm=session.warm),
                run_id=run_id,
                listeners=listeners,
                ray_address=session.address,
                dashboard_url=session.dashboard_url,
                max_parallel=session.max_parallel_steps,
                # An embedded Ray has what it has; a cluster may autoscale (Ray queues there).
                capacity=session.step_capacity,
            )
        )
        return made[0].run()
