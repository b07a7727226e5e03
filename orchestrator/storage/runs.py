"""Reading run records back: which run, what it truly is now, and what it produced.

A record says ``running`` until its driver writes the final status; a driver killed with
SIGKILL (or a machine that lost power) never does. `observed_status` tells those apart: a
``running`` record whose driver process is gone from this host is ``interrupted`` (records from
other hosts are taken at their word: their processes cannot be seen from here).
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ArtifactError
from orchestrator.storage.store import ArtifactStore
from schemas.engine.run import RunRecord, RunStatus, StepRecord, StepStatus

#: Accepted instead of a run id: the most recent run in the store.
LATEST = ("latest", "last")
#: A run, or a step, stopped before it finished (Ctrl-C, SIGTERM, or a driver killed outright).
INTERRUPTED = RunStatus.interrupted.value


def _pid_started_after(pid: int, started: float) -> bool | None:
    """Whether process ``pid`` started after ``started`` (a reused pid); None if unknown."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        return bool(psutil.Process(pid).create_time() > started + 1.0)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True  # gone by the time we looked (or only a zombie is left): not our driver
    except psutil.Error:
        return None


def driver_alive(record: RunRecord) -> bool | None:
    """True/False when the record's driver can be checked from here (same host), else None."""
    if record.driver_pid is None or record.driver_host != socket.gethostname():
        return None
    try:
        os.kill(record.driver_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process with that pid: look at when it started
    reused = _pid_started_after(record.driver_pid, record.started_at.timestamp())
    return not reused if reused is not None else True


def observed_status(record: RunRecord) -> RunStatus:
    """The record's status, except that a ``running`` run whose driver is gone is
    ``interrupted`` (it will never finish; run the pipeline again to resume it)."""
    if record.status == RunStatus.running and driver_alive(record) is False:
        return RunStatus.interrupted
    return record.status


def observed_step_status(record: RunRecord, step: StepRecord, run: RunStatus | None = None) -> str:
    """A step's status as it truly is now: ``interrupted`` for a step stopped mid-run, by
    Ctrl-C or SIGTERM (recorded ``failed``, reason ``interrupted``) or with its driver (still
    ``running`` in a run whose driver is gone, see `observed_status`); else its recorded
    status. ``run``: the run's observed status, when the caller has it already."""
    if step.status == StepStatus.failed and step.reason == INTERRUPTED:
        return INTERRUPTED
    running = step.status == StepStatus.running
    if running and (run or observed_status(record)) == RunStatus.interrupted:
        return INTERRUPTED
    return step.status.value


def step_counts(record: RunRecord) -> Counter[str]:
    """How many steps of the run are in each observed status (`observed_step_status`)."""
    run = observed_status(record)
    return Counter(observed_step_status(record, step, run) for step in record.steps)


def resolve_run_id(store: ArtifactStore, run: str) -> str:
    """``run`` itself, or the newest run's id for ``latest``; an `ArtifactError` naming the
    store (and close ids) for a run it does not hold."""
    runs = store.list_runs()
    if run in LATEST:
        if not runs:
            raise ArtifactError(f"no runs in {store.root} yet")
        return sorted(runs)[-1]
    if run not in runs:
        from orchestrator.errors import did_you_mean

        matches = [r for r in runs if r.startswith(run)]
        if len(matches) == 1:  # an unambiguous prefix, as git takes one
            return matches[0]
        hint = did_you_mean(run, runs) or (
            f"{len(matches)} runs start with '{run}'" if matches else "`kdorch runs` lists them"
        )
        raise ArtifactError(f"no run '{run}' in {store.root}; {hint}")
    return run


@dataclass(frozen=True)
class Output:
    """One output port of a step, as the record holds it."""

    step_id: str
    port: str
    value: Any

    @property
    def is_report(self) -> bool:
        return is_report(self.value)


def is_artifact(value: Any) -> bool:
    """A reference to an artifact in the store (a dumped `ArtifactRef`)."""
    return (
        isinstance(value, dict) and isinstance(value.get("path"), str) and "data_version" in value
    )


def is_report(value: Any) -> bool:
    """A dumped `EvalReport`: an artifact with a split and per-model metrics."""
    return is_artifact(value) and "split" in value and "metrics" in value


def artifact_paths(value: Any) -> list[str]:
    """Store-relative folders of the artifacts in an output value (a ref, or a list of refs)."""
    if is_artifact(value):
        return [value["path"]]
    if isinstance(value, list):
        return [p for item in value for p in artifact_paths(item)]
    return []


def outputs(record: RunRecord, steps: list[str] | None = None) -> list[Output]:
    """Every output of ``steps`` (default: all), in record order."""
    wanted = None if steps is None else set(steps)
    return [
        Output(s.step_id, port, value)
        for s in record.steps
        if wanted is None or s.step_id in wanted
        for port, value in s.outputs.items()
    ]


def report_files(store: ArtifactStore, record: RunRecord) -> list[tuple[str, str]]:
    """(step id, URI of report.md) for every evaluation report the run produced or reused."""
    return [
        (o.step_id, store.uri(f"{o.value['path']}/report.md"))
        for o in outputs(record)
        if o.is_report
    ]


def final_outputs(record: RunRecord) -> list[Output]:
    """The outputs of the run's final steps (those nothing consumes), reports included."""
    return outputs(record, record.final_steps)
