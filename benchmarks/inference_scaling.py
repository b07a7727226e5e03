"""How `teacher_inference` grows with the rows: fixed cost and per-row slope (issue 12, goal 5).

Datasets of 1x, 4x and 16x MNIST-5k rows (5,000 / 20,000 / 80,000): the `dataset` component
with ``rotation`` makes MNIST-5k under 16 angles (0, 22.5, ..., 337.5 degrees; one matrix step,
in-process); the first 1, 4 and 16 of them are concatenated (new unique ids) into Parquet files
that a `dataset` step reads back (``source: parquet``, ``normalize: none``). A small teacher
(MLP [512], 2 epochs on the 1x data) is trained through kdorch. Then, on an embedded Ray that
this script keeps up, each `teacher_inference` step (fp16, every split) is run again
(``cache=recompute``) REPEATS times:

- in-process (``num_actors: 1``, the default): the teacher runs in the step's own task;
- Ray Data actor pool (``num_actors: 2``);
- and a plain torch loop in this process (read the same files, run the teacher in batches of
  512, write fp16 Parquet shards), as the baseline of the slope.

Reported: the step's own seconds (run record), the cache's bytes on disk, and a least-squares
fit ``seconds = fixed + slope * rows`` over the three sizes for each path.

Run: ``python benchmarks/inference_scaling.py`` (~6 minutes on 2 busy cores);
``--smoke`` (1x/2x/4x of 300 rows, 1 repeat: about a minute).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import header, linear_fit, load, median, ray_up, scratch
from distill_step import plain_teacher_inference

ANGLES = [22.5 * i for i in range(16)]
PATHS = {"in-process": 1, "actor pool": 2}


def rotated_sources(folder: Path, multiples: list[int], max_rows: int | None) -> dict[int, Path]:
    """Parquet files of the first ``m`` rotations of MNIST-5k for each multiple ``m``, made by
    the dataset component's ``rotation`` option (a matrix step over the angles)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.artifacts.datasets import read_split
    from orchestrator import ArtifactStore, Pipeline, run
    from schemas.kd.artifacts import Dataset

    angles = ANGLES[: max(multiples)]
    p = Pipeline("bench_rotations")
    config: dict[str, Any] = {"source": "mnist5k", "seed": 0, "rotation": "${angle}"}
    if max_rows:
        config["max_rows"] = max_rows
    p.add("rot", "dataset", matrix={"angle": angles}, config=config)
    store = str(folder / "rotations")
    record = run(p.spec, storage=store, executor="local", raise_on_failure=True)
    from orchestrator.compile.refs import instance_id

    parts = []
    for i, angle in enumerate(angles):
        step = record.step(instance_id("rot", {"angle": angle}))
        ref = Dataset.model_validate(step.outputs["dataset"])
        for split in ref.splits:
            arrays = read_split(ArtifactStore(store), ref, split)
            x = arrays.x.reshape(len(arrays), -1).astype(np.float32)
            parts.append(
                pa.table(
                    {
                        "id": pa.array(arrays.row_id + i * 1_000_000),
                        "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1]),
                        "y": pa.array(arrays.y),
                    }
                )
            )
        parts[-len(ref.splits) :] = [pa.concat_tables(parts[-len(ref.splits) :])]
    out = {}
    for m in multiples:
        path = folder / f"mnist_x{m}.parquet"
        pq.write_table(pa.concat_tables(parts[:m]), path)
        out[m] = path
    return out


def build_spec(sources: dict[int, Path]) -> Any:
    from orchestrator import Pipeline

    # One step at a time: several actor-pool steps at once can ask for more CPUs than the
    # cluster has, and then wait for each other forever (see benchmarks/README.md).
    p = Pipeline("bench_inference_scaling", ray={"max_parallel_steps": 1})
    data = {}
    for m, path in sources.items():
        data[m] = p.add(
            f"data_x{m}",
            "dataset",
            config={
                "source": "parquet",
                "uri": str(path),
                "id_column": "id",
                "feature_shape": [1, 28, 28],
                "normalize": "none",
            },
        )
    first = min(sources)
    teacher = p.add(
        "teacher",
        "train",
        inputs={"data": data[first].dataset},
        config={"model": {"arch": "mlp", "hidden": [512]}, "epochs": 2, "batch_size": 64},
    )
    for m in sources:
        for name, actors in PATHS.items():
            p.add(
                step_id(m, name),
                "teacher_inference",
                inputs={"teacher": teacher.model, "data": data[m].dataset},
                config={"precision": "float16", "num_actors": actors},
            )
    return p.spec


def step_id(multiple: int, path: str) -> str:
    return f"logits_x{multiple}_{'pool' if PATHS[path] > 1 else 'here'}"


def cache_bytes(store: str, logits: dict[str, Any]) -> int:
    folder = Path(store, logits["path"])
    return sum(f.stat().st_size for f in folder.rglob("*.parquet"))


def measure(spec: Any, store: str, multiples: list[int], repeats: int, out: Path) -> Any:
    from orchestrator import run

    results: dict[tuple[str, int], dict[str, float]] = {}
    record = run(spec, storage=store, raise_on_failure=True)  # all cached: the references
    plain_teacher_inference(  # warm-up of the plain path (imports), not timed
        store,
        record.step(f"data_x{multiples[0]}").outputs["dataset"],
        record.step("teacher").outputs["model"],
        out,
    )
    for m in multiples:
        for name in [*PATHS, "plain torch"]:
            seconds = []
            for _ in range(repeats):
                if name == "plain torch":
                    assert record is not None
                    started = time.perf_counter()
                    rows = plain_teacher_inference(
                        store,
                        record.step(f"data_x{m}").outputs["dataset"],
                        record.step("teacher").outputs["model"],
                        out,
                    )
                    seconds.append(time.perf_counter() - started)
                    size = sum(f.stat().st_size for f in (out / "plain_logits").rglob("*.parquet"))
                else:
                    sid = step_id(m, name)
                    record = run(
                        spec,
                        storage=store,
                        overrides=[f"steps.{sid}.cache=recompute"],
                        raise_on_failure=True,
                    )
                    seconds.append(float(record.step(sid).seconds))
                    logits = record.step(sid).outputs["logits"]
                    rows, size = sum(logits["splits"].values()), cache_bytes(store, logits)
            results[(name, m)] = {"seconds": median(seconds), "rows": rows, "bytes": size}
            print(
                f"   {name:<11} x{m:<3} {rows:>7,} rows: {median(seconds):7.2f} s, "
                f"{size / 2**20:7.2f} MB  ({load()})",
                flush=True,
            )
    return results


def report(results: dict[tuple[str, int], dict[str, float]], multiples: list[int]) -> None:
    print(f"\nmedians; {load()}")
    print(
        f"{'path':<12}"
        + "".join(f"{'x' + str(m):>10}" for m in multiples)
        + f"{'fixed':>10}{'slope':>14}{'bytes/row':>11}"
    )
    for name in [*PATHS, "plain torch"]:
        rows = [results[(name, m)]["rows"] for m in multiples]
        secs = [results[(name, m)]["seconds"] for m in multiples]
        fixed, slope = linear_fit(rows, secs)
        per_row = results[(name, multiples[-1])]["bytes"] / rows[-1]
        print(
            f"{name:<12}"
            + "".join(f"{s:>9.2f}s" for s in secs)
            + f"{fixed:>9.2f}s{1000 * slope:>9.4f} ms/row{per_row:>11.1f}"
        )
    print(
        "fixed, slope: least-squares fit seconds = fixed + slope * rows; bytes/row: the "
        "cache's Parquet bytes on disk at the largest size"
    )
    here = linear_fit(
        [results[("in-process", m)]["rows"] for m in multiples],
        [results[("in-process", m)]["seconds"] for m in multiples],
    )
    plain = linear_fit(
        [results[("plain torch", m)]["rows"] for m in multiples],
        [results[("plain torch", m)]["seconds"] for m in multiples],
    )
    print(
        f"in-process slope / plain slope: {here[1] / plain[1]:.2f}; fixed cost above plain: "
        f"{here[0] - plain[0]:+.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="300-row base, 1 repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--store", help="keep the store (and the Parquet sources) here")
    args = parser.parse_args()
    multiples, max_rows, repeats = ([1, 2, 4], 300, 1) if args.smoke else ([1, 4, 16], None, 2)
    if not args.smoke:
        repeats = args.repeats
    header("teacher_inference: fixed cost and per-row slope, in-process vs actor pool")
    with scratch("kdorch-bench-infer-", args.store) as folder:
        started = time.perf_counter()
        sources = rotated_sources(folder, multiples, max_rows)
        print(f"   rotated datasets made in {time.perf_counter() - started:.1f} s", flush=True)
        spec = build_spec(sources)
        store = str(folder / "store")
        with ray_up(num_cpus=4):
            from orchestrator import run

            started = time.perf_counter()
            run(spec, storage=store, raise_on_failure=True)  # every step once (warm-up)
            print(f"   set-up run {time.perf_counter() - started:.1f} s", flush=True)
            results = measure(spec, store, multiples, repeats, Path(tempfile.mkdtemp(dir=folder)))
    report(results, multiples)


if __name__ == "__main__":
    main()
