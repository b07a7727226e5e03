"""A streamed split's units read through Ray Data, at bounded memory.

The units of an epoch (`components.lm.stream_units.epoch_order`) go to Ray Data one item
each; one actor (`UnitActor`: a `UnitReader`, which keeps the sequence part it read, so a part
is read once per pass of its units) reads a unit per call, and the training worker takes the
blocks in order (`regroup` joins a unit that Ray split in two).

Memory, whatever the cache's size — the settings, on the dataset's own `DataContext`:

- ``ActorPoolStrategy(size=1, max_tasks_in_flight_per_actor=1)``, ``num_cpus=READ_CPUS``: one
  reader, one unit being read at a time (it holds a part and a unit), on a fraction of a CPU,
  so that it runs beside training workers on a small node. (A read task per part that yields
  its units was tried first: Ray Data then queues every unit the task yields, the whole part's
  teacher tensors, whatever the limits.)
- ``resource_limits.object_store_memory``: a few units' bytes (`object_store_budget`); Ray
  Data's backpressure stops submitting units to the reader when the blocks waiting in the
  object store reach it;
- ``target_max_block_size``: above a unit's bytes, so a unit is one block;
- ``preserve_order``: blocks in the epoch's order (a resumed epoch reads the same rows the same
  way), and ``iter_batches(prefetch_batches=1)``: one block waiting on the worker's side.

The worker then holds its shuffle buffer, a block and the one prefetched.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from components.lm.stream_units import Columns, Unit, UnitReader

#: CPUs a read task asks of Ray (a fraction: it waits on I/O and decodes in numpy).
READ_CPUS = 0.25
#: Units that the object store may hold at once, and its floor in bytes.
UNITS_IN_FLIGHT = 4
MIN_BUDGET = 16 * 2**20


def object_store_budget(unit_bytes: int) -> int:
    """Bytes of blocks Ray Data may keep in the object store for one stream."""
    return max(MIN_BUDGET, UNITS_IN_FLIGHT * unit_bytes)


class UnitActor:
    """Ray Data's reader of units: one actor, which keeps its `UnitReader` (and so the last
    sequence parts it read) from one unit to the next; a call reads one unit."""

    def __init__(self, reader: UnitReader) -> None:
        self.reader = reader

    def __call__(self, batch: dict[str, np.ndarray]) -> Columns:
        (index,) = batch["unit"]
        return self.reader.read(self.reader.plan.units[int(index)])


def ray_feed(reader: UnitReader, units: list[Unit], unit_bytes: int) -> Iterator[Columns]:
    """The columns of ``units`` in order, one unit at a time, read by Ray Data (module
    docstring)."""
    import ray.data

    items = [{"unit": u.index} for u in units]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        UnitActor,
        fn_constructor_kwargs={"reader": reader},
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=1, max_tasks_in_flight_per_actor=1),
        num_cpus=READ_CPUS,
    )
    context = dataset.context
    context.execution_options.preserve_order = True
    limits = context.execution_options.resource_limits
    context.execution_options.resource_limits = limits.copy(
        object_store_memory=object_store_budget(unit_bytes)
    )
    context.target_max_block_size = max(context.target_max_block_size or 0, 2 * unit_bytes)
    blocks = dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1)
    yield from regroup(blocks, [u.stop - u.start for u in units])


def regroup(blocks: Any, sizes: list[int]) -> Iterator[Columns]:
    """Blocks of consecutive rows as one set of columns per unit of ``sizes`` rows."""
    pending: list[Columns] = []
    count = 0
    wanted = iter(sizes)
    size = next(wanted, 0)
    for block in blocks:
        pending.append({name: np.asarray(values) for name, values in block.items()})
        count += len(pending[-1]["row_id"])
        while size and count >= size:
            joined = {n: np.concatenate([p[n] for p in pending]) for n in pending[0]}
            yield {n: v[:size] for n, v in joined.items()}
            rest = {n: v[size:] for n, v in joined.items()}
            count -= size
            pending = [rest] if count else []
            size = next(wanted, 0)
