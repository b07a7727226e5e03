"""Teacher-logit cache I/O: write and read throughput, verified reads against raw pyarrow reads,
bytes per row, and how much fp16 and top-k caches change the KD loss (issue 12, goal 4).

I/O, on ROWS rows of 1,000-class logits (random normal: the contents do not matter for I/O,
only that they compress as poorly as real logits of a large model), for each format kdorch
writes: dense fp32, dense fp16, and top-k (k = 8, 32, 128: fp16 values, int32 indices, fp32
rest mass, as `components.inference.predictor.TeacherPredictor` makes them):

- write: `components.artifacts.logits.ShardWriter` (50,000-row shards, batches of 512 rows as
  the step adds them) plus sealing (`ArtifactStore.seal`: hash + manifest), against
  ``pyarrow.parquet.write_table`` of the same shards with the same settings;
- read: `read_teacher_table` — first in a "new process" (``forget_verified()`` before it: every
  shard is read once, hashed and parsed from the same bytes) and again in the same process
  (hashes memoised) — against a raw ``pyarrow.parquet.read_table`` of the same files (raw
  alternately before and after ours; every table dropped at once). Medians, and the fastest
  repeat (what it costs without other load). The first read is measured under both hashes a
  manifest may name, in the same rounds: BLAKE3 (what `seal` writes now, manifest format 2) and
  sha256 (format 1 manifests, written before): the same shards sealed twice; and each hash's
  throughput on 64 MiB in memory;
- bytes per row against dense fp32.

Loss error, on a real teacher: an MLP (hidden [256]) trained on MNIST-5k's train split and a
weaker student (MLP [32], one epoch), both plain PyTorch with `components.models`; on the
held-out rows, the KD term alpha * T^2 * KL (alpha = 1, `components.losses.kd.HintonKD`) from
fp32 logits against the same from fp16-rounded logits and from top-k caches under each rule of
`components.losses.topk` (`TopKKD`). MNIST has 10 classes, so k is 1, 2, 3 and 5 there (k = 8,
32, 128 would keep nearly or exactly every class).

Goals: first verified read (BLAKE3) <= 1.1x the raw read; second read <= 1.02x.

Run: ``python benchmarks/logit_cache_io.py`` (100,000 rows: ~3 minutes on 2 busy cores, ~2 GB
of memory); ``--smoke`` (2,000 rows, 1 repeat, a 1-epoch teacher: seconds).
"""

from __future__ import annotations

import argparse
import glob
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import header, load, median, verdict

CLASSES = 1000
TOPKS = (8, 32, 128)
MNIST_KS = (1, 2, 3, 5)
TEMPERATURES = (1.0, 2.0, 4.0)


def batches(logits: np.ndarray, fmt: str, batch: int = 512) -> list[Any]:
    """Arrow tables of ``batch`` rows as the teacher_inference step makes them."""
    import pyarrow as pa
    import torch

    from components.artifacts.logits import fixed_list

    out = []
    for start in range(0, len(logits), batch):
        z = torch.from_numpy(logits[start : start + batch])
        columns: dict[str, Any] = {"row_id": pa.array(np.arange(start, start + len(z)))}
        if fmt.startswith("top"):
            k = int(fmt[3:])
            values, indices = z.topk(k, dim=1)
            kept = torch.softmax(z, dim=1).gather(1, indices).sum(1)
            columns["topk_indices"] = fixed_list(indices.int().numpy(), pa.int32())
            columns["topk_values"] = fixed_list(values.numpy().astype(np.float16), pa.float16())
            columns["rest_mass"] = pa.array((1.0 - kept).clamp_min(0).numpy(), pa.float32())
        elif fmt == "fp16":
            columns["logits"] = fixed_list(z.numpy().astype(np.float16), pa.float16())
        else:
            columns["logits"] = fixed_list(z.numpy(), pa.float32())
        out.append(pa.table(columns))
    return out


def write_kdorch(
    store: Any, path: str, parts: list[Any], fmt: str, rows: int, algorithm: str = "blake3"
) -> Any:
    from components.artifacts.logits import ShardWriter
    from schemas.kd.artifacts import LogitShards

    writer = ShardWriter(store, f"{path}/train", 50_000)
    for part in parts:
        writer.add(part)
    writer.close()
    ref = LogitShards(
        path=path,
        splits={"train": rows},
        num_classes=CLASSES,
        dtype="float32" if fmt == "fp32" else "float16",
        top_k=int(fmt[3:]) if fmt.startswith("top") else None,
        teacher_version="bench",
        dataset_version="bench",
    )
    return store.seal(ref, algorithm=algorithm)


def write_raw(folder: Path, parts: list[Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.artifacts.logits import _shard_options

    table = pa.concat_tables(parts)
    folder.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, table.num_rows, 50_000)):
        shard = table.slice(start, 50_000).combine_chunks()
        pq.write_table(shard, folder / f"shard-{i:05d}.parquet", **_shard_options(shard))


def read_raw(files: list[str]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def bookkeeping(store: Any, ref: Any, files: list[str], repeats: int = 200) -> float:
    """Seconds a second (memoised) read spends on kdorch's own work, beyond opening and
    parsing the files as a raw read does: the manifest look-up, a size check per shard."""
    import pyarrow as pa

    names = sorted(e.path for e in store.manifest(ref).files)

    def ours() -> None:
        for name in names:
            store.read_parsed(ref, name, lambda f: None, arrow_file=True)

    def raw() -> None:
        for f in files:
            pa.OSFile(f, "rb").close()

    ours_s = median([timed(ours) for _ in range(repeats)])
    raw_s = median([timed(raw) for _ in range(repeats)])
    return max(0.0, ours_s - raw_s)


def timed(action: Any) -> float:
    started = time.perf_counter()
    action()  # a table read is dropped at once: every read starts with the same memory
    return time.perf_counter() - started


def io_benchmark(root: Path, rows: int, repeats: int) -> list[dict[str, Any]]:
    from components.artifacts.logits import read_teacher_table
    from orchestrator import ArtifactStore
    from orchestrator.storage.verified import forget_verified

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((rows, CLASSES), dtype=np.float32) * 3.0
    store = ArtifactStore(str(root / "store"))
    results = []
    for fmt in ("fp32", "fp16", *(f"top{k}" for k in TOPKS)):
        parts = batches(logits, fmt)
        data_bytes = sum(p.nbytes for p in parts)
        w_ours: list[float] = []
        w_sha: list[float] = []
        w_raw: list[float] = []
        r_raw: list[float] = []
        r_first: list[float] = []
        r_sha: list[float] = []
        r_second: list[float] = []
        ref = sha = None
        for i in range(repeats):
            path = f"objects/{fmt}/{i}"
            started = time.perf_counter()
            ref = write_kdorch(store, path, parts, fmt, rows)
            w_ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            sha = write_kdorch(store, f"{path}-sha256", parts, fmt, rows, "sha256")
            w_sha.append(time.perf_counter() - started)
            started = time.perf_counter()
            write_raw(root / "raw" / fmt / str(i), parts)
            w_raw.append(time.perf_counter() - started)
        assert ref is not None and sha is not None
        assert store.manifest(sha).hash == "sha256" and store.manifest(ref).hash == "blake3"
        files = sorted(glob.glob(str(Path(store.root, ref.path, "train", "*.parquet"))))
        file_bytes = sum(Path(f).stat().st_size for f in files)
        forget_verified()
        assert read_teacher_table(store, ref, "train").equals(read_raw(files))  # and warm-up
        assert read_teacher_table(store, sha, "train").equals(read_raw(files))

        for i in range(repeats):
            # Alternate raw before and after ours (the second read must follow the first).
            if i % 2 == 0:
                r_raw.append(timed(partial(read_raw, files)))
            forget_verified()  # a new process: nothing hashed, no manifest read yet
            # Both hashes, in turn first (the machine's drift falls on both alike).
            order = [(r_first, ref), (r_sha, sha)][:: 1 if i % 2 == 0 else -1]
            for samples, which in order:
                samples.append(timed(partial(read_teacher_table, store, which, "train")))
            r_second.append(timed(partial(read_teacher_table, store, ref, "train")))
            if i % 2 == 1:
                r_raw.append(timed(partial(read_raw, files)))
        result = {
            "format": fmt,
            "data_mb": data_bytes / 2**20,
            "file_bytes": file_bytes,
            "write": median(w_ours),
            "write_sha256": median(w_sha),
            "write_raw": median(w_raw),
            "read_raw": median(r_raw),
            "read_first": median(r_first),
            "read_first_sha256": median(r_sha),
            "read_second": median(r_second),
            "min_raw": min(r_raw),
            "min_first": min(r_first),
            "min_first_sha256": min(r_sha),
            "min_second": min(r_second),
            "bookkeeping": bookkeeping(store, ref, files),
        }
        results.append(result)
        print(
            f"   {fmt:<6} write {result['write']:6.2f} s (sha256 {result['write_sha256']:6.2f} s, "
            f"raw {result['write_raw']:6.2f} s); read raw {result['read_raw']:6.3f} s, verified "
            f"{result['read_first']:6.3f} s (sha256 {result['read_first_sha256']:6.3f} s), "
            f"again {result['read_second']:6.3f} s  ({load()})",
            flush=True,
        )
        del parts
    return results


# -- loss error on a real teacher ---------------------------------------------------------------
def train(model: Any, x: Any, y: Any, epochs: int, seed: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), 64):
            index = order[start : start + 64]
            loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def loss_errors(teacher_epochs: int) -> tuple[list[tuple[Any, ...]], str]:
    import torch

    from components.data.sources import load_mnist5k
    from components.data.transforms import stratified_split
    from components.losses import KDBatch
    from components.losses.kd import HintonKD
    from components.losses.topk import RULES, TopKKD
    from components.models.zoo import build_model
    from schemas.kd.losses import KDLoss, TopKKLLoss

    raw = load_mnist5k()
    parts = stratified_split(raw.y, {"train": 0.6, "rest": 0.4}, 0)
    x = torch.from_numpy(raw.x).float()
    y = torch.from_numpy(raw.y)
    tr, te = torch.from_numpy(parts["train"]), torch.from_numpy(parts["rest"])
    shape = {"num_classes": 10, "input_shape": [1, 28, 28]}
    teacher = build_model({"arch": "mlp", "hidden": [256], **shape}, seed=0)
    student = build_model({"arch": "mlp", "hidden": [32], **shape}, seed=1)
    train(teacher, x[tr], y[tr], teacher_epochs, 0)
    train(student, x[tr], y[tr], 1, 1)
    torch.set_grad_enabled(False)
    z_t, z_s = teacher(x[te]).float(), student(x[te]).float()
    accuracy = lambda z: float((z.argmax(1) == y[te]).float().mean())  # noqa: E731
    note = (
        f"teacher MLP [256] {teacher_epochs} epochs: held-out accuracy {accuracy(z_t):.3f}; "
        f"student MLP [32] 1 epoch: {accuracy(z_s):.3f}; {len(te)} held-out rows"
    )
    probs = torch.softmax(z_t, dim=1)
    rows = []
    for T in TEMPERATURES:
        dense = float(
            HintonKD(KDLoss(temperature=T, alpha=1.0))(
                KDBatch(student_logits=z_s, teacher_logits=z_t)
            ).total
        )
        half = z_t.numpy().astype(np.float16)
        fp16 = float(
            HintonKD(KDLoss(temperature=T, alpha=1.0))(
                KDBatch(student_logits=z_s, teacher_logits=torch.from_numpy(half))
            ).total
        )
        rows.append((T, "fp16 dense", "-", dense, fp16, 0.0))
        for k in MNIST_KS:
            values, indices = z_t.topk(k, dim=1)
            rest = (1.0 - probs.gather(1, indices).sum(1)).clamp_min(0)
            batch = KDBatch(
                student_logits=z_s,
                teacher_topk_indices=indices,
                teacher_topk_values=torch.from_numpy(values.numpy().astype(np.float16)),
                teacher_rest_mass=rest,
            )
            for rule in RULES:
                term = TopKKD(TopKKLLoss(temperature=T, alpha=1.0, rule=rule), num_classes=10)
                rows.append(
                    (T, f"top-{k}", rule, dense, float(term(batch).total), float(rest.mean()))
                )
    torch.set_grad_enabled(True)
    return rows, note


def hash_speeds(repeats: int) -> str:
    """GB/s of each hash a manifest may name, on 64 MiB in memory (fastest of ``repeats``)."""
    import os

    from orchestrator.storage.hashing import digest
    from schemas.engine.artifacts import HashName

    data = os.urandom(64 << 20)
    speeds = []
    variants: list[tuple[str, HashName, bool]] = [
        ("sha256", "sha256", False),
        ("BLAKE3 on one thread", "blake3", False),
        ("BLAKE3 on every core", "blake3", True),
    ]
    for name, algorithm, threads in variants:
        best = min(timed(partial(digest, algorithm, data, threads=threads)) for _ in range(repeats))
        speeds.append(f"{name} {len(data) / best / 1e9:.2f} GB/s")
    return "hash throughput: " + ", ".join(speeds) + f" ({load()})"


def report(results: list[dict[str, Any]], rows: int, repeats: int) -> None:
    dense32 = next(r for r in results if r["format"] == "fp32")["file_bytes"] / rows
    print(f"\n{rows:,} rows x {CLASSES} classes, median of {repeats}; {load()}")
    print(
        f"{'format':<7}{'B/row':>8}{'vs fp32':>8}{'write MB/s':>11}{'(sha256)':>9}{'(raw)':>8}"
        f"{'read MB/s':>10}{'first/raw':>10}{'(sha256)':>9}{'again/raw':>10}"
    )
    worst_first = worst_sha = worst_second = 0.0
    for r in results:
        per_row = r["file_bytes"] / rows
        first, second = r["read_first"] / r["read_raw"], r["read_second"] / r["read_raw"]
        sha = r["read_first_sha256"] / r["read_raw"]
        worst_first, worst_second = max(worst_first, first), max(worst_second, second)
        worst_sha = max(worst_sha, sha)
        print(
            f"{r['format']:<7}{per_row:>8.0f}{per_row / dense32:>8.3f}"
            f"{r['data_mb'] / r['write']:>11.0f}{r['data_mb'] / r['write_sha256']:>9.0f}"
            f"{r['data_mb'] / r['write_raw']:>8.0f}"
            f"{r['data_mb'] / r['read_first']:>10.0f}{first:>10.3f}{sha:>9.3f}{second:>10.3f}"
        )
    print(
        "(MB/s of in-memory Arrow data; B/row: bytes on disk per row; first: BLAKE3, what new "
        "manifests name; (sha256): the same shards under a format 1 manifest's hash)"
    )
    print(
        "second read, kdorch's own work beyond a raw read (manifest look-up, size checks): "
        + ", ".join(
            f"{r['format']} {1e6 * r['bookkeeping']:.0f} us "
            f"({r['bookkeeping'] / r['read_raw']:.2%})"
            for r in results
        )
    )
    print(
        "fastest of the repeats (the cost without other load; hashing needs the second core): "
        + ", ".join(
            f"{r['format']} {r['min_first'] / r['min_raw']:.3f}x "
            f"(sha256 {r['min_first_sha256'] / r['min_raw']:.3f}x) / "
            f"{r['min_second'] / r['min_raw']:.3f}x"
            for r in results
        )
    )
    print(
        f"goal first verified read <= 1.1x raw: worst {worst_first:.3f}x "
        f"({verdict(worst_first <= 1.1)}; under sha256 {worst_sha:.3f}x)"
    )
    print(
        f"goal second read <= 1.02x raw: worst {worst_second:.3f}x "
        f"({verdict(worst_second <= 1.02)})"
    )


def report_losses(rows: list[tuple[Any, ...]], note: str) -> None:
    print(f"\nKD-loss relative error on a real teacher (MNIST-5k, K = 10): {note}")
    print(
        f"{'T':>4} {'cache':<11} {'rule':<12}{'rest mass':>10}{'dense':>10}{'cached':>10}"
        f"{'rel err':>10}"
    )
    for T, cache, rule, dense, approx, rest in rows:
        rel = abs(approx - dense) / dense
        shown = f"{rel:.2%}" if rel >= 1e-3 else f"{rel:.1e}"
        print(
            f"{T:>4.0f} {cache:<11} {rule:<12}{rest:>10.4f}{dense:>10.5f}{approx:>10.5f}{shown:>10}"
        )
    print(
        "losses: alpha * T^2 * KL with alpha = 1 (batch mean); rest mass: the teacher's mean "
        "probability outside the top-k at T = 1"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="2,000 rows, 1 repeat")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    rows, repeats, teacher_epochs = (2_000, 1, 1) if args.smoke else (args.rows, args.repeats, 5)
    header("logit cache I/O and the loss error of fp16 / top-k caches")
    with tempfile.TemporaryDirectory(prefix="kdorch-bench-io-") as tmp:
        results = io_benchmark(Path(tmp), rows, repeats)
    report(results, rows, repeats)
    print(hash_speeds(max(repeats, 3)))
    losses, note = loss_errors(teacher_epochs)
    report_losses(losses, note)


if __name__ == "__main__":
    main()
