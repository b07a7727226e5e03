"""Streamed token data resumed inside an epoch: a real top-k cache of many shards (lm_inference
on packed standard-library text, 16 rows a shard), read a unit (shard) at a time.

- the stream's `position` after any batch, through JSON, gives a fresh stream the exact
  batches that were still to come, reading again only the units whose rows were in the
  shuffle buffer (files read counted at the store);
- the loop checkpoints between optimiser steps; a run that dies mid-epoch (here: an exception
  right after a mid-epoch checkpoint reached the store) and is started again on the same
  resume folder trains bit for bit the weights of a run that did not die, and reads no
  finished shard of that epoch again.

(tests/integration/test_lm_stream_kill.py kills the step's process for real.)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from components.lm.distilling import TokenDistillObjective
from components.lm.ray_feed import regroup
from components.lm.stream_units import epoch_order
from components.lm.streams import SequenceStream, held_columns
from components.lm.training import LMTask, checked_spec
from components.training.loop import LoopResult, LoopSpec, run_loop
from components.training.session import LocalSession
from components.training.trainer import steps_per_epoch
from orchestrator import ArtifactStore, run
from schemas.kd.components.training import TrainingSettings
from schemas.kd.lm import CausalLMSpec
from schemas.kd.losses import ForwardKLLoss
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache
from tests.support.lm import corpus_file, lm_steps, write_pipeline

STUDENT = {"arch": "causal_lm", "layers": 1, "width": 32, "heads": 2, "max_positions": 64}


class CountingStore(ArtifactStore):
    """The real store, counting the files it reads whole (verified) by name."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.reads: Counter[str] = Counter()

    def read_parsed(self, ref: Any, name: str, parse: Callable[[Any], Any], **kw: Any) -> Any:
        self.reads[name] += 1
        return super().read_parsed(ref, name, parse, **kw)


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("lm_stream")
    steps = lm_steps(corpus_file(folder, count=24), cache={"k": 8, "rows_per_shard": 16})
    path = write_pipeline(folder / "lm.yaml", steps)
    record = run(path, storage=str(folder / "store"), executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    outputs = {s.step_id: s.outputs for s in record.steps}
    return {
        "root": str(folder / "store"),
        "sequences": TokenSequences.model_validate(outputs["tokens"]["sequences"]),
        "cache": TokenCache.model_validate(outputs["cache"]["cache"]),
    }


def test_a_stream_resumes_from_its_position_without_rereading_finished_units(
    cached: dict[str, Any],
) -> None:
    store = CountingStore(cached["root"])
    stream = SequenceStream(store, cached["sequences"], cached["cache"], "train", via="local")
    settings = TrainingSettings(shuffle_buffer=40, seed=3)

    def rows() -> Any:
        return stream.for_worker(batch_size=5, shuffle=True, settings=settings, rank=0, world=1)

    full = list(rows().batches(1))
    plan = rows().plan()
    assert len(plan.units) > 100 and all(u.shard for u in plan.units)  # many shards
    held = held_columns(store, cached["sequences"], cached["cache"], "train", settings)
    order = torch.cat([b["row_id"] for b in full]).numpy()
    assert sorted(order.tolist()) == list(range(len(held["y"])))  # every row once
    np.testing.assert_array_equal(
        torch.cat([b["teacher_topk_values"] for b in full]).numpy(),
        held["teacher_topk_values"][order],
    )
    for k in (1, 40, len(full) - 1):
        first = rows()
        batches = first.batches(1)
        for _ in range(k):
            next(batches)
        position = json.loads(json.dumps(first.position()))  # what a checkpoint keeps
        store.reads.clear()
        again = rows()
        again.resume_from(position)
        rest = list(again.batches(1))
        assert len(rest) == len(full) - k
        for mine, theirs in zip(rest, full[k:], strict=True):
            for name, value in theirs.items():
                assert torch.equal(mine[name], value), (k, name)
        fed = epoch_order(plan, settings.seed, 1, True)[: position["fed"]]
        buffered = set(plan.units_of(np.asarray(position["ahead"], np.int64)).tolist())
        finished = {u.shard for u in fed if u.index not in buffered}
        assert not finished & set(store.reads), k  # no finished shard read again
        assert len(finished) >= (0 if k == 1 else 10)
        shards_read = [n for n in store.reads if n.startswith("train/shard-")]
        assert len(shards_read) == len(plan.units) - len(finished)
        assert all(store.reads[n] == 1 for n in shards_read)


class DiesAfterACheckpoint(LocalSession):
    """The real local session; the process 'dies' (an exception) right after the
    ``after``-th mid-epoch checkpoint of epoch 1 reached the store."""

    def __init__(self, *args: Any, after: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after = after
        self.within: list[str] = []

    def save(self, checkpoint: Path, folder: str) -> None:
        super().save(checkpoint, folder)
        if folder.startswith("ckpt-00001-"):
            self.within.append(folder)
            if len(self.within) == self.after:
                raise KeyboardInterrupt("killed")


def _loop(cached: dict[str, Any], store: ArtifactStore) -> tuple[LoopSpec, Any, Any]:
    sequences = cached["sequences"]
    settings = TrainingSettings(
        epochs=2, batch_size=32, shuffle_buffer=64, checkpoint_every_s=0, seed=5
    )
    spec = checked_spec(CausalLMSpec.model_validate(STUDENT), sequences)
    assert spec.vocab_size is not None
    objective = TokenDistillObjective(
        losses=[ForwardKLLoss(targets="topk")],
        vocab_size=spec.vocab_size,
    )
    rows = sequences.splits["train"].sequences
    loop = LoopSpec(
        spec, settings, objective, steps_per_epoch(rows, settings), store, task=LMTask()
    )
    train = SequenceStream(store, sequences, cached["cache"], "train", via="local")
    return loop, train, SequenceStream(store, sequences, None, "val", via="local")


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(cached: dict[str, Any]) -> None:
    store = CountingStore(cached["root"])
    cpu = torch.device("cpu")
    loop, train, val = _loop(cached, store)
    whole: LoopResult = run_loop(loop, LocalSession(store, "whole", cpu), train, val)

    dying = DiesAfterACheckpoint(store, "killed", cpu, after=20)
    with pytest.raises(KeyboardInterrupt):
        run_loop(loop, dying, train, val)
    latest = store.read_json("killed/latest.json")
    assert latest["folder"] == dying.within[-1]  # the mid-epoch checkpoint is the one in use
    meta = json.loads(store.read_bytes(f"killed/{latest['folder']}/meta.json"))
    position = meta["within"]["position"]
    store.reads.clear()
    resumed = run_loop(loop, LocalSession(store, "killed", cpu), train, val)

    assert resumed.resumes == 1 and whole.resumes == 0
    for name, value in whole.student_state.items():
        assert torch.equal(resumed.student_state[name], value), name  # bit for bit
    timed = {"seconds", "units_read"}
    same = [{k: v for k, v in h.items() if k not in timed} for h in whole.history]
    assert [{k: v for k, v in h.items() if k not in timed} for h in resumed.history] == same
    plan = train.for_worker(
        batch_size=32, shuffle=True, settings=loop.training, rank=0, world=1
    ).plan()
    fed = epoch_order(plan, loop.training.seed, 1, True)[: position["fed"]]
    buffered = set(plan.units_of(np.asarray(position["ahead"], np.int64)).tolist())
    finished = {u.shard for u in fed if u.index not in buffered}
    assert len(finished) >= 10
    assert not finished & set(store.reads)  # the resumed epoch read no finished shard
    shards_read = [n for n in store.reads if n.startswith("train/shard-")]
    assert len(shards_read) == len(plan.units) - len(finished)
    assert [h["units_read"] for h in whole.history] == [len(plan.units)] * 2
    assert resumed.history[-1]["units_read"] == len(plan.units) - len(finished)


def test_blocks_that_ray_split_or_joined_come_back_as_one_unit_each() -> None:
    rows = np.arange(10)
    blocks = [{"row_id": rows[:3]}, {"row_id": rows[3:4]}, {"row_id": rows[4:10]}]
    units = list(regroup(iter(blocks), [4, 2, 4]))
    assert [u["row_id"].tolist() for u in units] == [[0, 1, 2, 3], [4, 5], [6, 7, 8, 9]]
