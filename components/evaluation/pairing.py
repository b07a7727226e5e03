"""Which models of two recipes are paired: the training seed of each model, and the rule.

A model's seed is read from the record its training step committed: a checkpoint lives in the
store at ``objects/<key[:2]>/<key>/<attempt>/<port>`` (`ArtifactStore.object_dir`), and the
step's ``COMMIT.json`` there holds the config that went into its key — the ``seed`` a matrix
over seeds fills in (``seed: ${seed}``), or a `tune` sweep's trial seed ``distill.seed``. A
model whose step committed nothing (a step with ``cache: off``, a checkpoint made outside a
run) has no known seed.

Models of two recipes are paired by seed when every model of both has a known seed, distinct
within its recipe; else by position (the i-th model of each, which for ``step[*]`` inputs is
the matrix order) when both recipes have as many models; one model each are always a pair
(they are scored on the same rows).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator import ArtifactError, ArtifactStore
from schemas.engine.artifacts import ArtifactRef

#: Where a component's config holds the seed its models were trained with, when not ``seed``.
SEED_PATHS: dict[str, tuple[str, ...]] = {"tune": ("distill", "seed")}


def producing_key(ref: ArtifactRef) -> str | None:
    """The key of the step whose output ``ref`` is (None: not a step's output folder)."""
    parts = ref.path.split("/")
    if len(parts) >= 4 and "/".join(parts[:3]) == ArtifactStore.object_dir(parts[2]):
        return parts[2]
    return None


def training_seed(store: ArtifactStore, ref: ArtifactRef) -> int | None:
    """The seed ``ref``'s producing step was configured with, from its committed record."""
    key = producing_key(ref)
    if key is None:
        return None
    try:
        record = store.read_commit(key)
    except ArtifactError:  # an unreadable record: the seed is unknown, nothing else is wrong
        return None
    if record is None:
        return None
    value: Any = record.key_material.get("config", {})
    for part in SEED_PATHS.get(record.component, ("seed",)):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Pairing:
    """The pairs of two recipes' models (keys, with the seed they share when paired by seed)."""

    by: Literal["seed", "position", "single", "none"]
    pairs: list[tuple[int | None, str, str]]
    unpaired: list[str] = field(default_factory=list)
    note: str = ""


def pair_models(
    a: Sequence[str], a_seeds: Sequence[int | None], b: Sequence[str], b_seeds: Sequence[int | None]
) -> Pairing:
    """Pair models ``a`` (keys) with ``b`` by the rule of the module docstring."""
    if len(a) == 1 and len(b) == 1:
        return Pairing("single", [(_same(a_seeds[0], b_seeds[0]), a[0], b[0])])
    if _distinct(a_seeds) and _distinct(b_seeds):
        of_b = dict(zip(b_seeds, b, strict=True))
        common = [s for s in a_seeds if s in of_b]
        by_seed = dict(zip(a_seeds, a, strict=True))
        pairs = [(s, by_seed[s], of_b[s]) for s in sorted(common)]  # type: ignore[type-var]
        paired = {k for _, x, y in pairs for k in (x, y)}
        unpaired = [k for k in [*a, *b] if k not in paired]
        note = "" if pairs else f"no common seed ({_seeds(a_seeds)} against {_seeds(b_seeds)})"
        return Pairing("seed" if pairs else "none", pairs, unpaired, note)
    if len(a) == len(b):
        pairs = [(_same(x, y), i, j) for i, j, x, y in zip(a, b, a_seeds, b_seeds, strict=True)]
        return Pairing("position", pairs, [], "paired by position: " + _why(a_seeds, b_seeds))
    return Pairing(
        "none",
        [],
        [*a, *b],
        f"cannot pair {len(a)} models with {len(b)}: {_why(a_seeds, b_seeds)}",
    )


def _same(x: int | None, y: int | None) -> int | None:
    return x if x == y else None


def _distinct(seeds: Sequence[int | None]) -> bool:
    return None not in seeds and len(set(seeds)) == len(seeds)


def _seeds(seeds: Sequence[int | None]) -> str:
    return "seeds " + ", ".join(str(s) for s in seeds)


def _why(*recipes: Sequence[int | None]) -> str:
    if any(None in seeds for seeds in recipes):
        return "a training seed is not recorded (no committed training step)"
    return "a seed repeats within a recipe"


def unknown_labels(pairs: Sequence[Sequence[str]], labels: Sequence[str]) -> list[tuple[int, str]]:
    """(index in ``compare``, message) for every label a pair names that no model has."""
    found = []
    for i, pair in enumerate(pairs):
        for label in pair:
            if label not in labels:
                close = difflib.get_close_matches(label, list(labels), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                found.append(
                    (i, f"names '{label}', which no model has (labels: {', '.join(labels)}){hint}")
                )
    return found


def check_labels(pairs: Sequence[Sequence[str]], labels: Sequence[str]) -> None:
    """Refuse `compare` pairs naming a label no model has (a `ValueError` naming each)."""
    problems = unknown_labels(pairs, labels)
    if problems:
        raise ValueError(
            "evaluate: " + "; ".join(f"compare[{i}] {message}" for i, message in problems)
        )
