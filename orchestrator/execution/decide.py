"""The one place that decides, for a step whose inputs are known, whether it is cached or must
run, and why. `kdorch plan` and the scheduler both call `decide`, so they cannot disagree.

A cache hit needs a readable COMMIT.json whose outputs fit the component's Outputs and whose
artifacts pass `ArtifactStore.quick_check` (manifest hash equals the data version, every file
present with its size). A commit that fails any of this is moved aside (`quarantine`) with a
warning and the step runs again; nobody has to delete anything by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from orchestrator.compile.graph import Node
from orchestrator.errors import ArtifactError, KdorchError
from orchestrator.storage.cache import explain_difference, key_material, step_key
from orchestrator.storage.store import ArtifactStore
from schemas.engine.artifacts import ArtifactRef
from schemas.engine.pipeline import CachePolicy


@dataclass
class Decision:
    step_id: str
    component: str
    action: str  # "cached" | "run"
    key: str | None
    reason: str
    material: dict[str, Any] | None = None
    outputs: BaseModel | None = None


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


#: Code fingerprints by component class, kept for one plan or run (`Component.fingerprint`
#: reads and hashes the component's source tree: once per component, not once per step).
Fingerprints = dict[type, tuple[dict[str, str], dict[str, str]]]


def material_for(
    node: Node, inputs: dict[str, Any], fingerprints: Fingerprints | None = None
) -> dict[str, Any]:
    component = node.component
    if fingerprints is None:
        code, packages = component.fingerprint()
    else:
        if component not in fingerprints:
            fingerprints[component] = component.fingerprint()
        code, packages = fingerprints[component]
    try:
        external = component.external_fingerprint(node.config)
    except KdorchError:
        raise
    except (OSError, ValueError) as e:
        raise ArtifactError(f"step '{node.id}': cannot read its outside data: {e}") from e
    return key_material(
        component.key,
        component.version,
        node.config,
        inputs,
        code=code,
        packages=packages,
        external=external,
    )


def cached_outputs(node: Node, key: str, store: ArtifactStore) -> tuple[BaseModel | None, str]:
    """The committed outputs for ``key`` if they are intact; else None and the reason (a bad
    commit is moved aside on the way)."""
    try:
        commit = store.read_commit(key)
    except ArtifactError as e:
        store.quarantine(key, str(e))
        return None, "its cached result was unreadable (moved aside)"
    if commit is None:
        return None, "no cached result"
    try:
        outputs = node.component.Outputs.model_validate(commit.outputs)
    except ValueError as e:
        store.quarantine(key, f"outputs do not fit {node.component.Outputs.__name__}: {e}")
        return None, "its cached result no longer fits the component's outputs (moved aside)"
    for ref in artifact_refs(outputs):
        try:
            store.quick_check(ref)
        except ArtifactError as e:
            store.quarantine(key, str(e))
            return None, f"its cached result is damaged (moved aside): {e}"
    return outputs, f"committed by run {commit.run_id}"


def why_missed(
    store: ArtifactStore, pipeline: str, node: Node, material: dict[str, Any], fallback: str
) -> str:
    """What changed since this step last committed (from the store's step index)."""
    previous = store.read_index(pipeline, node.id)
    if previous is None:
        return "new" if fallback == "no cached result" else fallback
    if previous == step_key(material):
        return fallback
    try:
        commit = store.read_commit(previous)
    except ArtifactError:
        commit = None
    if commit is None:
        return fallback
    return explain_difference(commit.key_material, material)


def decide(
    node: Node,
    inputs: dict[str, Any],
    store: ArtifactStore,
    pipeline: str,
    fingerprints: Fingerprints | None = None,
) -> Decision:
    """Cached or run, with the key and the reason (see the module docstring). ``fingerprints``:
    a memo shared by the steps of one plan or run."""
    material = material_for(node, inputs, fingerprints)
    key = step_key(material)
    name = node.component.key
    if node.cache != CachePolicy.default:
        return Decision(node.id, name, "run", key, f"cache: {node.cache.value}", material)
    outputs, reason = cached_outputs(node, key, store)
    if outputs is not None:
        return Decision(node.id, name, "cached", key, reason, material, outputs)
    return Decision(
        node.id, name, "run", key, why_missed(store, pipeline, node, material, reason), material
    )
