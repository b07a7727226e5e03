"""A streamed split's units read through Ray Data, at bounded memory.

The units of an epoch (`components.lm.stream_units.epoch_order`) go to Ray Data as groups of
consecutive units that start in the same sequence part; one read task per group
(`UnitReader`: the part read once, then a unit at a time) yields one block per unit, and the
training worker takes the blocks in order (`regroup` joins a unit that Ray split in two).

Memory, whatever the cache's size — the settings, on the dataset's own `DataContext`:

- ``TaskPoolStrategy(size=1)``, ``num_cpus=READ_CPUS``: one read task at a time (one part and
  a unit in the reader), a fraction of a CPU, so that it runs beside training workers on a
  small node;
- ``resource_limits.object_store_memory``: a few units' bytes (`object_store_budget`); Ray
  Data's backpressure pauses the read task when its blocks in the object store reach it;
- ``_max_num_blocks_in_streaming_gen_buffer = 2``: a read task runs at most two units ahead
  of what the executor has taken from it;
- ``target_max_block_size``: above a unit's bytes, so a unit is one block;
- ``preserve_order``: blocks in the epoch's order (a resumed epoch reads the same rows the same
  way), and ``iter_batches(prefetch_batches=1)``: one block waiting on the worker's side.

The worker then holds its shuffle buffer, a block and the one prefetched.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

from components.lm.stream_units import Columns, Unit, UnitPlan, UnitReader

#: CPUs a read task asks of Ray (a fraction: it waits on I/O and decodes in numpy).
READ_CPUS = 0.25
#: Units that the object store may hold at once, and its floor in bytes.
UNITS_IN_FLIGHT = 4
MIN_BUDGET = 16 * 2**20


def object_store_budget(unit_bytes: int) -> int:
    """Bytes of blocks Ray Data may keep in the object store for one stream."""
    return max(MIN_BUDGET, UNITS_IN_FLIGHT * unit_bytes)


def groups_of(plan: UnitPlan, units: list[Unit]) -> list[list[int]]:
    """Runs of consecutive ``units`` that start in the same part, as unit indices."""
    out: list[list[int]] = []
    last = -1
    for unit in units:
        part = plan.part_of(unit.start)
        if not out or part != last:
            out.append([])
        out[-1].append(unit.index)
        last = part
    return out


def _read_group(batch: Any, reader: UnitReader, groups: list[list[int]]) -> Iterator[Any]:
    for group in batch["group"]:
        for index in groups[int(group)]:
            yield reader.read(reader.plan.units[index])


def ray_feed(reader: UnitReader, units: list[Unit], unit_bytes: int) -> Iterator[Columns]:
    """The columns of ``units`` in order, one unit at a time, read by Ray Data (module
    docstring)."""
    import ray.data

    groups = groups_of(reader.plan, units)
    if not groups:
        return
    items = [{"group": i} for i in range(len(groups))]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        functools.partial(_read_group, reader=reader, groups=groups),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.TaskPoolStrategy(size=1),
        num_cpus=READ_CPUS,
    )
    context = dataset.context
    context.execution_options.preserve_order = True
    limits = context.execution_options.resource_limits
    context.execution_options.resource_limits = limits.copy(
        object_store_memory=object_store_budget(unit_bytes)
    )
    context.target_max_block_size = max(context.target_max_block_size or 0, 2 * unit_bytes)
    context._max_num_blocks_in_streaming_gen_buffer = 2
    blocks = dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1)
    yield from regroup(
        blocks, [reader.plan.units[i].stop - reader.plan.units[i].start for g in groups for i in g]
    )


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
