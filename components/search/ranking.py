"""What a search hands on: its ranking as a table, the baselines, and the validation sample.

- `ranking_table`: every distinct candidate, best score first (ties: the one found first);
  `write_ranking` stores it with the search's history.
- `largest_candidate`, `random_candidate`: the naive choices a search has to beat — the biggest
  student that fits the caps, and any student that fits them.
- `validation_sample`: which evaluated candidates to distil for the score's rank correlation.
"""

from __future__ import annotations

import json
import math
import random

import pyarrow as pa

from components.artifacts.datasets import parquet_bytes
from components.search.candidates import Candidate, CandidateSpace
from components.search.diswot import derive_seed
from components.search.evolution import Evaluation, SearchResult
from orchestrator import StepContext
from schemas.kd.artifacts import SearchRanking


def ranked(result: SearchResult) -> list[Evaluation]:
    """Distinct candidates, best score first; ties keep the search's order."""
    return sorted(result.unique(), key=lambda e: (-e.score, e.index))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def ranking_table(result: SearchResult) -> pa.Table:
    """The ranking as an Arrow table (columns in `schemas.kd.artifacts.SearchRanking`)."""
    rows = ranked(result)
    specs = [json.dumps(e.candidate.spec.model_dump(mode="json"), sort_keys=True) for e in rows]
    return pa.table(
        {
            "rank": pa.array(range(1, len(rows) + 1), pa.int32()),
            "key": pa.array([e.candidate.key for e in rows], pa.string()),
            "arch": pa.array([e.candidate.arch for e in rows], pa.string()),
            "knobs": pa.array([json.dumps(e.candidate.choice) for e in rows], pa.string()),
            "spec": pa.array(specs, pa.string()),
            "parameters": pa.array([e.candidate.parameters for e in rows], pa.int64()),
            "macs": pa.array([e.candidate.macs for e in rows], pa.int64()),
            "score": pa.array([e.score for e in rows], pa.float64()),
            "semantic": pa.array([e.terms.get("semantic") for e in rows], pa.float64()),
            "relation": pa.array([e.terms.get("relation") for e in rows], pa.float64()),
            "origin": pa.array([e.origin for e in rows], pa.string()),
            "first_seen": pa.array([e.index for e in rows], pa.int32()),
        }
    )


def history_document(result: SearchResult) -> list[dict[str, object]]:
    """Every evaluation in order, JSON-ready (a non-finite score becomes null)."""
    out = []
    for e in result.history:
        row = e.to_dict()
        row["score"] = _finite(e.score)
        out.append(row)
    return out


def write_ranking(ctx: StepContext, result: SearchResult) -> SearchRanking:
    """``ranking.parquet`` and ``history.json`` into the output ``ranking``."""
    path = ctx.output_path("ranking")
    table = ranking_table(result)
    ctx.store.write_bytes(f"{path}/ranking.parquet", parquet_bytes(table))
    ctx.store.write_bytes(
        f"{path}/history.json", json.dumps(history_document(result), indent=1).encode()
    )
    return SearchRanking(
        path=path,
        candidates=table.num_rows,
        evaluations=len(result.history),
        best=result.best.candidate.key,
    )


def largest_candidate(space: CandidateSpace) -> Candidate:
    """The candidate with the most parameters under the caps (ties: most MACs, then the
    space's order), over the whole space."""
    return max(space.enumerate(), key=lambda c: (c.parameters, c.macs))


def random_candidate(space: CandidateSpace, seed: int) -> Candidate:
    """A random candidate under the caps, drawn like a search's first population (`sample`),
    from its own stream of ``seed`` (so it does not depend on the search's draws)."""
    return space.sample(random.Random(derive_seed(seed, "random-baseline")))


def validation_sample(result: SearchResult, count: int, pick: str, seed: int) -> list[Evaluation]:
    """``count`` distinct evaluated candidates (all of them when fewer were evaluated).

    ``spread``: evenly over the ranking, best and worst included (what a rank correlation
    needs: the whole range of scores); ``top``: the best; ``random``: uniformly (seeded).
    """
    rows = ranked(result)
    if count >= len(rows):
        return rows
    if pick == "top":
        return rows[:count]
    if pick == "random":
        chosen = random.Random(derive_seed(seed, "validation")).sample(range(len(rows)), count)
        return [rows[i] for i in sorted(chosen)]
    positions = sorted({round(i * (len(rows) - 1) / (count - 1)) for i in range(count)})
    return [rows[i] for i in positions]
