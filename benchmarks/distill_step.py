"""What a `distill` step costs against the same training in a plain PyTorch loop; and what
`teacher_inference` costs against a plain loop writing the same shards (issue 12, goal 1).

Set-up, once, through kdorch (`orchestrator.run` on an embedded Ray this script starts and
keeps up): the MNIST-5k split (3,000 train / 1,000 val / 1,000 test), a small teacher
(`mnist_cnn`, width 16) and its fp16 logits (`teacher_inference`). Then, alternating, REPEATS
times each:

- kdorch: the `distill` step again (``cache=recompute``) — MLP student ``hidden: [256]``, KD
  T = 2, alpha = 0.5, 20 epochs (then 1 epoch), batch 64, Adam + cosine, last epoch kept. Two
  figures: the step's own ``seconds`` from the run record, and the wall time of the whole
  ``orchestrator.run`` (compile, cache look-ups, the Ray task, commit, record);
- plain: the same training in this process with plain PyTorch — raw pyarrow reads of the same
  split and the same cached logits, joined by ``row_id``; the same network
  (`components.models.zoo.build_model`) and loss (`components.losses.kd.HintonKD`); Adam + the same
  cosine schedule; the validation split evaluated after every epoch as the step does; the
  weights saved at the end. It mirrors kdorch's batch order (rows in ``row_id`` order, one
  seeded permutation per epoch: `components.training.batches`) and kdorch's one torch thread,
  so the weights are compared bit for bit.

And the teacher: the `teacher_inference` step again (5,000 rows, fp16) against a plain loop
that reads the same dataset files, loads the teacher's weights, runs it in batches of 512 and
writes Parquet shards with the same settings (`components.artifacts.logits.SHARD_OPTIONS`).

Goals: 20 epochs <= 1.3x the plain loop; 1 epoch <= 1.5 s above it; weights identical;
teacher inference <= 1.3x the plain loop.

Run: ``python benchmarks/distill_step.py`` (~5 minutes on 2 busy cores);
``python benchmarks/distill_step.py --smoke`` (600 rows, 2 epochs, 1 repeat: under a minute).
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import fmt_s, header, load, median, ray_up, scratch, verdict

KD = {"type": "kd", "temperature": 2.0, "alpha": 0.5}


def build_spec(max_rows: int | None, teacher_epochs: int, epochs: int) -> Any:
    from orchestrator import Pipeline

    p = Pipeline("bench_distill", ray={"dashboard": False})
    data = p.add(
        "data",
        "dataset",
        config={"source": "mnist5k", "seed": 0, **({"max_rows": max_rows} if max_rows else {})},
    )
    teacher = p.add(
        "teacher",
        "train",
        inputs={"data": data.dataset},
        config={
            "model": {"arch": "mnist_cnn", "width": 16},
            "epochs": teacher_epochs,
            "batch_size": 64,
            "optimizer": {"lr": 0.003},
        },
    )
    logits = p.add(
        "teacher_logits",
        "teacher_inference",
        inputs={"teacher": teacher.model, "data": data.dataset},
        config={"precision": "float16"},
    )
    p.add(
        "student",
        "distill",
        inputs={"data": data.dataset, "logits": logits.logits},
        config={
            "student": {"arch": "mlp", "hidden": [256]},
            "epochs": epochs,
            "batch_size": 64,
            "seed": 0,
            "losses": [KD],
        },
    )
    return p.spec


def run_kdorch(spec: Any, store: str, overrides: list[str]) -> tuple[float, Any]:
    from orchestrator import run

    started = time.perf_counter()
    record = run(spec, storage=store, overrides=overrides, raise_on_failure=True)
    return time.perf_counter() - started, record


# -- the plain loop -----------------------------------------------------------------------------
def raw_table(folder: Path, pattern: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(f) for f in sorted(glob.glob(str(folder / pattern)))]
    return pa.concat_tables(tables)


def fixed_list(column: Any) -> Any:
    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    return array.flatten().to_numpy(zero_copy_only=False).reshape(-1, array.type.list_size)


def plain_split(store: str, dataset: dict[str, Any], split: str) -> tuple[Any, Any, Any]:
    """(row_id, x, y) of one split, rows in row_id order: a raw pyarrow read."""
    import numpy as np

    table = raw_table(Path(store, dataset["path"], split), "part-*.parquet")
    row_id = table.column("row_id").to_numpy()
    order = np.argsort(row_id, kind="stable")
    x = fixed_list(table.column("x"))[order]
    return row_id[order], np.ascontiguousarray(x), table.column("y").to_numpy()[order]


def plain_logits(store: str, logits: dict[str, Any], row_id: Any) -> Any:
    """The teacher's fp16 logits in the order of ``row_id``."""
    import numpy as np

    table = raw_table(Path(store, logits["path"], "train"), "shard-*.parquet")
    ids = table.column("row_id").to_numpy()
    order = np.argsort(ids, kind="stable")
    at = np.searchsorted(ids[order], row_id)
    return np.ascontiguousarray(fixed_list(table.column("logits"))[order[at]])


def plain_distill(store: str, record: Any, epochs: int, out: Path, seed: int = 0) -> dict[str, Any]:
    """The distill step's training as a plain single-process PyTorch loop (see the docstring)."""
    import torch

    from components.losses import KDBatch
    from components.losses.kd import HintonKD
    from components.models.zoo import build_model
    from schemas.kd.losses import KDLoss

    torch.set_num_threads(1)  # as the step: one CPU, one thread
    dataset = record.step("data").outputs["dataset"]
    row_id, x_np, y_np = plain_split(store, dataset, "train")
    _, xv_np, yv_np = plain_split(store, dataset, "val")
    t_np = plain_logits(store, record.step("teacher_logits").outputs["logits"], row_id)
    x, y, t = torch.from_numpy(x_np), torch.from_numpy(y_np), torch.from_numpy(t_np)
    xv, yv = torch.from_numpy(xv_np), torch.from_numpy(yv_np)
    shape = tuple(dataset["feature_shape"])
    spec = {
        "arch": "mlp",
        "hidden": [256],
        "num_classes": dataset["num_classes"],
        "input_shape": list(shape),
    }
    torch.manual_seed(seed)
    model = build_model(spec, seed=seed)
    batch, rows = 64, len(y)
    total = epochs * math.ceil(rows / batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / max(total, 1)))
    )
    loss_fn = HintonKD(KDLoss(temperature=KD["temperature"], alpha=KD["alpha"]))
    accuracy = 0.0
    for epoch in range(epochs):
        model.train()
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch * 101)
        order = torch.randperm(rows, generator=generator)
        for start in range(0, rows, batch):
            index = order[start : start + batch]
            xb = x[index].float().reshape(-1, *shape)
            kd = KDBatch(student_logits=model(xb), labels=y[index], teacher_logits=t[index])
            loss = loss_fn(kd).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(yv), 256):
                pred = model(xv[start : start + 256].float().reshape(-1, *shape)).argmax(1)
                correct += int((pred == yv[start : start + 256]).sum())
        accuracy = correct / len(yv)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(state, out / "plain_student.pt")
    return {"state": state, "val_accuracy": accuracy}


def plain_teacher_inference(
    store: str, dataset: dict[str, Any], teacher: dict[str, Any], out: Path
) -> int:
    """Read the dataset's files, run the teacher in batches of 512, write fp16 shards (the
    `Dataset` and `ModelCheckpoint` references as the run record holds them)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from components.artifacts.logits import SHARD_OPTIONS
    from components.models.zoo import build_model

    torch.set_num_threads(1)  # as the step: one actor, one CPU
    model = build_model(teacher["model"])
    state = torch.load(Path(store, teacher["path"], "weights.pt"), weights_only=True)
    model.load_state_dict(state)
    model.eval()
    shape = tuple(dataset["feature_shape"])
    rows = 0
    for split in dataset["splits"]:
        table = raw_table(Path(store, dataset["path"], split), "part-*.parquet")
        outputs = []
        for batch in table.to_batches(max_chunksize=512):
            x = torch.from_numpy(fixed_list(batch.column("x")).copy()).reshape(-1, *shape)
            with torch.inference_mode():
                logits = model(x).float().numpy().astype(np.float16)
            flat = pa.array(logits.reshape(-1), type=pa.float16())
            outputs.append(
                pa.table(
                    {
                        "row_id": batch.column("row_id"),
                        "logits": pa.FixedSizeListArray.from_arrays(flat, logits.shape[1]),
                    }
                )
            )
        shard = pa.concat_tables(outputs).combine_chunks()
        target = out / "plain_logits" / split
        target.mkdir(parents=True, exist_ok=True)
        options = {**SHARD_OPTIONS, "use_byte_stream_split": ["logits"]}
        pq.write_table(shard, target / "shard-00000.parquet", **options)
        rows += shard.num_rows
    return rows


def references(record: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return record.step("data").outputs["dataset"], record.step("teacher").outputs["model"]


# -- comparisons --------------------------------------------------------------------------------
def same_weights(store: str, record: Any, plain: dict[str, Any]) -> tuple[bool, float]:
    import torch

    from components.artifacts.checkpoints import load_model
    from orchestrator import ArtifactStore
    from schemas.kd.artifacts import ModelCheckpoint

    ref = ModelCheckpoint.model_validate(record.step("student").outputs["model"])
    model, _ = load_model(ArtifactStore(store), ref)
    ours = model.state_dict()
    diff = max(float((ours[k] - plain["state"][k]).abs().max()) for k in ours)
    return all(torch.equal(ours[k], plain["state"][k]) for k in ours), diff


def compare_student(spec: Any, store: str, out: Path, epochs: int, repeats: int) -> dict[str, Any]:
    overrides = ["steps.student.cache=recompute", f"steps.student.config.epochs={epochs}"]
    step_s, wall_s, plain_s = [], [], []
    identical, diff, plain = None, 0.0, None
    record = None
    for _ in range(repeats):
        wall, record = run_kdorch(spec, store, overrides)
        wall_s.append(wall)
        step_s.append(float(record.step("student").seconds))
        started = time.perf_counter()
        plain = plain_distill(store, record, epochs, out)
        plain_s.append(time.perf_counter() - started)
        identical, diff = same_weights(store, record, plain)
        print(
            f"   {epochs:>2} epochs: kdorch step {step_s[-1]:6.2f} s, run {wall:6.2f} s; "
            f"plain {plain_s[-1]:6.2f} s  ({load()})",
            flush=True,
        )
    assert record is not None and plain is not None
    ours = record.step("student").outputs["metrics"]["val_accuracy"]
    return {
        "step": median(step_s),
        "wall": median(wall_s),
        "plain": median(plain_s),
        "identical": identical,
        "max_abs_diff": diff,
        "val_kdorch": ours,
        "val_plain": plain["val_accuracy"],
    }


def compare_teacher(spec: Any, store: str, out: Path, repeats: int) -> dict[str, float]:
    overrides = ["steps.teacher_logits.cache=recompute"]
    step_s, wall_s, plain_s = [], [], []
    rows = 0
    for _ in range(repeats):
        wall, record = run_kdorch(spec, store, overrides)
        wall_s.append(wall)
        step_s.append(float(record.step("teacher_logits").seconds))
        started = time.perf_counter()
        rows = plain_teacher_inference(store, *references(record), out)
        plain_s.append(time.perf_counter() - started)
        print(
            f"   teacher inference ({rows} rows): kdorch step {step_s[-1]:6.2f} s, run "
            f"{wall:6.2f} s; plain {plain_s[-1]:6.2f} s  ({load()})",
            flush=True,
        )
    return {"step": median(step_s), "wall": median(wall_s), "plain": median(plain_s), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="600 rows, 2 epochs, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store", help="keep the artifact store here (default: a temp dir)")
    args = parser.parse_args()
    max_rows, long_epochs, teacher_epochs = (600, 2, 1) if args.smoke else (None, 20, 2)
    repeats = 1 if args.smoke else args.repeats
    header("distill step vs plain PyTorch loop; teacher_inference vs plain loop")
    with scratch("kdorch-bench-distill-", args.store) as folder, ray_up(num_cpus=4):
        store, out = str(folder / "store"), Path(tempfile.mkdtemp(dir=folder))
        spec = build_spec(max_rows, teacher_epochs, long_epochs)
        wall, record = run_kdorch(spec, store, [])
        first = float(record.step("student").seconds)
        print(
            f"   set-up run (data, teacher, logits, first student: a cold worker) {wall:.1f} s; "
            f"its student step {first:.2f} s",
            flush=True,
        )
        plain_distill(store, record, 1, out)  # warm-up: imports, allocator (not timed)
        plain_teacher_inference(store, *references(record), out)
        long = compare_student(spec, store, out, long_epochs, repeats)
        short = compare_student(spec, store, out, 1, repeats)
        teacher = compare_teacher(spec, store, out, repeats)
    report(long_epochs, long, short, teacher, first, repeats)


def report(
    epochs: int,
    long: dict[str, Any],
    short: dict[str, Any],
    teacher: dict[str, float],
    first: float,
    repeats: int,
) -> None:
    print(f"\nmedians of {repeats}; {load()}")
    print(f"{'':<34}{'kdorch step':>12}{'kdorch run':>12}{'plain':>10}{'step/plain':>12}")
    for name, r in ((f"distill, {epochs} epochs", long), ("distill, 1 epoch", short)):
        print(
            f"{name:<34}{r['step']:>11.2f}s{r['wall']:>11.2f}s{r['plain']:>9.2f}s"
            f"{r['step'] / r['plain']:>11.2f}x   run/plain {r['wall'] / r['plain']:.2f}x"
        )
    print(
        f"{'teacher_inference, ' + str(int(teacher['rows'])) + ' rows':<34}"
        f"{teacher['step']:>11.2f}s{teacher['wall']:>11.2f}s{teacher['plain']:>9.2f}s"
        f"{teacher['step'] / teacher['plain']:>11.2f}x   run/plain "
        f"{teacher['wall'] / teacher['plain']:.2f}x"
    )
    print(f"first student step of the session (cold Ray worker): {fmt_s(first)}")
    ratio = long["step"] / long["plain"]
    above = short["step"] - short["plain"]
    above_wall = short["wall"] - short["plain"]
    t_ratio = teacher["step"] / teacher["plain"]
    print(
        f"goal {epochs} epochs <= 1.3x: step {ratio:.2f}x ({verdict(ratio <= 1.3)}), run "
        f"{long['wall'] / long['plain']:.2f}x ({verdict(long['wall'] / long['plain'] <= 1.3)})"
    )
    print(
        f"goal 1 epoch <= +1.5 s: step {above:+.2f} s ({verdict(above <= 1.5)}), run "
        f"{above_wall:+.2f} s ({verdict(above_wall <= 1.5)})"
    )
    print(
        f"goal teacher inference <= 1.3x: step {t_ratio:.2f}x ({verdict(t_ratio <= 1.3)}), run "
        f"{teacher['wall'] / teacher['plain']:.2f}x "
        f"({verdict(teacher['wall'] / teacher['plain'] <= 1.3)})"
    )
    for name, r in ((f"{epochs} epochs", long), ("1 epoch", short)):
        print(
            f"weights ({name}): {'identical, bit for bit' if r['identical'] else 'DIFFERENT'} "
            f"(max |diff| {r['max_abs_diff']:.3g}); val accuracy kdorch {r['val_kdorch']:.4f}, "
            f"plain {r['val_plain']:.4f}"
        )


if __name__ == "__main__":
    main()
