"""Streamed token caches at bounded memory (issue 19): peak memory against the cache's size,
and the time to the first batch against the whole read.

Set-up through kdorch (``executor="local"``): the standard library's Parquet corpus, slices of
``--documents`` documents (several sizes), a 2,048-id BPE, rows of 128 tokens, a tiny random
teacher (`lm_model`, llama 1 x 16: memory depends on the cache's size, not on the teacher) and
its top-32 cache in shards of ``--rows-per-shard`` rows (`lm_inference`), in a store on local
disk and in one on a local S3 server (moto, started by the script in its own process, as the
tests' fixture does).

Then, in a process connected to an embedded local Ray (4 logical CPUs, `_bench.ray_up`), the
train split's epoch as a streamed distill step reads it (`components.lm.streams.StreamedRows`,
shuffled, units read by Ray Data's reader actor: `components.lm.ray_feed`), each batch turned
into the tensors a step takes (no student step: its memory does not grow with the cache, and
it would make the larger runs hours long on 2 cores). A sampler thread reads every 0.1 s the
resident memory (RSS) of this process (the training worker's place) and of every Ray worker
process this script's Ray started (the reader actor among them, and the idle workers Ray keeps
started), and the object store's bytes in use (``ray.available_resources``). Printed per store
and size: the cache's bytes, the peaks, the time to the first batch and to the whole epoch.
Each epoch is measured in a fresh process (the builds' leftovers stay in the parent).

Run: ``python benchmarks/lm_stream_memory.py`` (a few minutes on 2 busy cores),
``--smoke`` for two small sizes, local disk only.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import ROOT, fmt_s, header, load, ray_up, scratch
from lm_cache_epoch import data_steps

KEY = {"key": "testing", "secret": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def s3_server() -> Iterator[dict[str, Any]]:
    """moto's S3 server in its own process (its memory is not ours), a bucket 'bench'."""
    import s3fs

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    options = {**KEY, "client_kwargs": {"endpoint_url": endpoint}}
    try:
        for _ in range(100):
            try:
                s3fs.S3FileSystem(**options).mkdir("bench")
                break
            except Exception:
                time.sleep(0.2)
        yield options
    finally:
        server.terminate()
        server.wait(timeout=30)


def build(corpus: Path, documents: int, storage: str, rows: int) -> dict:
    """The cache of ``documents`` documents in ``storage``: the tokens' and cache's records."""
    import yaml

    from orchestrator import run

    steps = data_steps(corpus, documents, None)
    steps[-1]["config"]["rows_per_shard"] = rows
    path = Path(f"/tmp/kdb-stream-{os.getpid()}-{documents}.yaml")
    path.write_text(yaml.safe_dump({"name": "stream_bench", "steps": steps}, sort_keys=False))
    record = run(path, storage=storage, executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    return {s.step_id: s.outputs for s in record.steps if s.step_id in ("tokens", "cache")}


class Sampler:
    """Peak RSS of this process and of Ray's worker processes, and of the object store's use,
    sampled every ``every_s`` seconds while running."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.every_s = every_s
        self.peaks = {"driver": 0.0, "ray_workers": 0.0, "largest_worker": 0.0, "objects": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil
        import ray

        me = psutil.Process()
        rss = {"driver": me.memory_info().rss}
        workers = []
        for proc in me.children(recursive=True):  # this script's own Ray: not other jobs'
            try:
                if " ".join(proc.cmdline()).startswith("ray::"):
                    workers.append(proc.memory_info().rss)
            except psutil.Error:  # ended between the listing and the read
                continue
        total = ray.cluster_resources().get("object_store_memory", 0.0)
        free = ray.available_resources().get("object_store_memory", total)
        values = {
            "driver": rss["driver"] / 2**20,
            "ray_workers": sum(workers) / 2**20,
            "largest_worker": max(workers, default=0) / 2**20,
            "objects": (total - free) / 2**20,
        }
        for name, value in values.items():
            self.peaks[name] = max(self.peaks[name], value)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.every_s)

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def stream_epoch(storage: str, options: dict | None, built: dict, args: Any) -> dict:
    """One shuffled epoch of the train split through Ray Data, sampled (module docstring)."""
    from components.lm.streams import SequenceStream
    from orchestrator import ArtifactStore
    from schemas.kd.components.training import TrainingSettings
    from schemas.kd.text import TokenSequences
    from schemas.kd.token_cache import TokenCache

    store = ArtifactStore(storage, options)
    sequences = TokenSequences.model_validate(built["tokens"]["sequences"])
    cache = TokenCache.model_validate(built["cache"]["cache"])
    stream = SequenceStream(store, sequences, cache, "train", via="ray")
    settings = TrainingSettings(
        batch_size=args.batch_size, worker_cache_mb=0, shuffle_buffer=args.shuffle_buffer
    )
    rows = stream.for_worker(
        batch_size=args.batch_size, shuffle=True, settings=settings, rank=0, world=1
    )
    import psutil

    before = psutil.Process().memory_info().rss / 2**20  # what the set-up left in this process
    first = None
    started = time.perf_counter()
    with Sampler().running() as sampler:
        for batch in rows.batches(0):
            _ = {k: v.long() if v.dtype == _int32() else v for k, v in batch.items()}
            if first is None:
                first = time.perf_counter() - started
        whole = time.perf_counter() - started
    return {
        "rows": sequences.splits["train"].sequences,
        "tokens": cache.splits["train"].tokens,
        "bytes": cache.splits["train"].bytes,
        "shards": cache.splits["train"].shards,
        "units_read": rows.units_read,
        "first_s": first or 0.0,
        "epoch_s": whole,
        "driver_before": before,
        **sampler.peaks,
    }


def _int32() -> Any:
    import torch

    return torch.int32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "stdlib.parquet")
    parser.add_argument("--documents", type=int, nargs="+", default=[40, 160, 640])
    parser.add_argument("--rows-per-shard", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shuffle-buffer", type=int, default=256, help="rows")
    parser.add_argument("--stores", nargs="+", default=["local", "s3"])
    parser.add_argument("--keep", help="keep the stores in this folder (a rerun reuses them)")
    parser.add_argument("--smoke", action="store_true", help="8 documents")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # `measured`'s child process
    args = parser.parse_args()
    if args.measure:
        measure(json.loads(args.measure))
        return
    if not args.corpus.exists():
        raise SystemExit(
            f"{args.corpus} is missing: python -m components.text.bundled stdlib {args.corpus}"
        )
    if args.smoke:
        args.documents = [8]
    header("lm_stream_memory: a streamed token cache's peak memory vs its size")
    results = []
    with scratch("kdb-stream-", args.keep) as folder, s3_server() as s3:
        for documents in args.documents:
            local = str(folder / f"docs{documents}")
            t = time.perf_counter()
            built = build(args.corpus, documents, local, args.rows_per_shard)
            took = fmt_s(time.perf_counter() - t)
            print(f"   built {documents} documents in {took} ({load()})", flush=True)
            for where in args.stores:
                storage, options = local, None
                if where == "s3":  # the same store's files, on the S3 server
                    storage, options = f"s3://bench/docs{documents}", s3
                    copy_to_s3(local, storage, s3)
                out = measured(storage, options, built, args)
                results.append({"store": where, "documents": documents, **out})
                print(f"   {json.dumps(results[-1])} ({load()})", flush=True)
    table(results)
    print(f"   {load()}")


def measured(storage: str, options: dict | None, built: dict, args: Any) -> dict:
    """`stream_epoch` in a fresh process (this one's memory holds the builds' leftovers)."""
    job = {"storage": storage, "options": options, "built": built}
    job |= {"batch_size": args.batch_size, "shuffle_buffer": args.shuffle_buffer}
    done = subprocess.run(
        [sys.executable, __file__, "--measure", json.dumps(job)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(job: dict[str, Any]) -> None:
    """The child's side of `measured`: one sampled epoch, its figures as a JSON line."""
    args = argparse.Namespace(batch_size=job["batch_size"], shuffle_buffer=job["shuffle_buffer"])
    with ray_up(4):
        out = stream_epoch(job["storage"], job["options"], job["built"], args)
    print(json.dumps(out))


def copy_to_s3(local: str, storage: str, options: dict[str, Any]) -> None:
    """The store's files onto the S3 server, from another process (its buffers are not ours)."""
    copy = (
        "import json, sys, s3fs; "
        "s3fs.S3FileSystem(**json.loads(sys.argv[1])).put(sys.argv[2], sys.argv[3], recursive=True)"
    )
    target = storage.removeprefix("s3://")
    subprocess.run([sys.executable, "-c", copy, json.dumps(options), local, target], check=True)


def table(results: list[dict[str, Any]]) -> None:
    print(
        "\n| store | documents | train tokens | cache (train) | shards | this process: before "
        "| peak | Ray workers (sum) | largest worker | object store | first batch | epoch read |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['store']} | {r['documents']} | {r['tokens']:,} | {r['bytes'] / 2**20:,.1f} MiB "
            f"| {r['shards']} | {r['driver_before']:,.0f} MiB | {r['driver']:,.0f} MiB "
            f"| {r['ray_workers']:,.0f} MiB "
            f"| {r['largest_worker']:,.0f} MiB | {r['objects']:,.1f} MiB | {fmt_s(r['first_s'])} "
            f"| {fmt_s(r['epoch_s'])} |"
        )


if __name__ == "__main__":
    main()
