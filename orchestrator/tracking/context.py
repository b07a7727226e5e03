"""What a run's steps need to know about its tracking, told through the run's folder in the
store: ``runs/<run id>/tracking.json``, written by the tracker before any step starts.

A step reads it through `tensorboard_folder` (one small read, only when it trains); without
tracking the file does not exist and nothing else happens. The store carries it, so a step on
any node of a cluster finds it, and no setting travels in a step's config (where it would
change the step's cache key).
"""

from __future__ import annotations

import re
from typing import Any

from orchestrator.storage.files import safe_segment
from orchestrator.storage.store import ArtifactStore

CONTEXT_FILE = "tracking.json"
TENSORBOARD_ROOT = "tracking/tensorboard"


def context_path(run_id: str) -> str:
    return f"{ArtifactStore.run_dir(run_id)}/{CONTEXT_FILE}"


def tensorboard_run_folder(pipeline: str, run_id: str) -> str:
    """The store folder of a run's TensorBoard event files (one subfolder per step)."""
    return f"{TENSORBOARD_ROOT}/{safe_segment(pipeline)}/{safe_segment(run_id)}"


def step_segment(step_id: str) -> str:
    """A step id as a readable folder name: ``student_kd[0]`` -> ``student_kd=0``."""
    return safe_segment(re.sub(r"\[(.*)\]$", r"=\1", step_id))


def write_context(store: ArtifactStore, run_id: str, context: dict[str, Any]) -> None:
    store.write_json(context_path(run_id), context, durable=False)


def read_context(store: ArtifactStore, run_id: str) -> dict[str, Any] | None:
    """The run's tracking context; None when the run is not tracked (or the file is unreadable:
    tracking never fails a step)."""
    try:
        data = store.read_json(context_path(run_id))
    except FileNotFoundError:
        return None
    except Exception:  # an unreadable context: no tracking, never a failed step
        return None
    return data if isinstance(data, dict) else None


def tensorboard_folder(store: ArtifactStore, run_id: str, step_id: str) -> str | None:
    """The store folder for this step's TensorBoard event files; None when the run writes none."""
    context = read_context(store, run_id)
    root = (context or {}).get("tensorboard")
    if not isinstance(root, str) or not root:
        return None
    return f"{root}/{step_segment(step_id)}"
