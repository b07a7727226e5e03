"""Language-model distillation (issue 18): an epoch from the teacher's token cache against the
same epoch with the teacher run online, and the peak memory of a streamed distill step.

**Epoch** (default). Set-up through kdorch (``kdorch run --executor local``, one process): the
standard library's Parquet corpus, a slice of ``--documents`` documents, a 2,048-id BPE, rows
of 128 tokens, the recipe's teacher (`pipelines/lm_kd.yaml`: llama 4 x 128, trained 1 epoch)
and its top-32 cache (`lm_inference`). Then, alternating, ``--repeats`` times each, a `distill`
step of the recipe's student (llama 2 x 64, one epoch, batch 16, one torch thread as a step
has) recomputed (``cache=recompute``):

- cache: forward KL on the top-32 cache (``targets: topk``), read with the sequences;
- online: forward KL with the teacher run in the step on every batch (``teachers:``; its logits
  are dense targets: the cache's top-k exists only once the cache is made).

Figure: the epoch's ``seconds`` (train + eval) from each step's history, median over repeats,
and their ratio; the cache's one-off cost (the lm_inference step) and after how many epochs it
is repaid.

**Memory** (``--memory``). The distill step's peak resident memory (``ru_maxrss`` of a fresh
``kdorch run`` process in which only that step runs; the steps before it are cached) on the
recipe's slice and on the whole standard library (734 documents; the recipe takes 80), streamed
(``worker_cache_mb: 0``: a sequence part and a cache shard at a time) and held. A tiny random
teacher (`lm_model`, llama 1 x 16) makes the top-32 caches quickly: memory depends on the
cache's size, not on the teacher's quality. Student llama 1 x 16, one epoch.

Run: ``python benchmarks/lm_cache_epoch.py`` (~10-20 min on 2 busy cores),
``python benchmarks/lm_cache_epoch.py --memory``, ``--smoke`` for a quick pass of either.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import ROOT, fmt_s, header, load, median, scratch

STUDENT = {"arch": "causal_lm", "layers": 2, "width": 64, "heads": 4, "max_positions": 128}
TEACHER = {"arch": "causal_lm", "layers": 4, "width": 128, "heads": 4, "max_positions": 128}
TINY = {"arch": "causal_lm", "layers": 1, "width": 16, "heads": 2, "max_positions": 128}
SPLITS = {"train": 0.9, "val": 0.05, "test": 0.05}  # the recipe's
SMALL_SPLITS = {"train": 0.75, "val": 0.125, "test": 0.125}  # --smoke: a document each at least
FAST = {"batch_size": 16, "optimizer": {"name": "adamw", "lr": 0.003}}


def data_steps(corpus: Path, documents: int, teacher: dict[str, Any] | None) -> list[dict]:
    """corpus -> tokenizer -> tokens -> teacher (trained, or a random tiny one) -> cache."""
    steps: list[dict[str, Any]] = [
        {
            "id": "corpus",
            "component": "corpus",
            "config": {
                "uri": str(corpus),
                "max_documents": documents,
                "seed": 0,
                "splits": SPLITS if documents >= 40 else SMALL_SPLITS,
            },
        },
        {"id": "tokenizer", "component": "tokenizer", "inputs": {"corpus": "corpus.corpus"}},
        {
            "id": "tokens",
            "component": "pack_tokens",
            "inputs": {"corpus": "corpus.corpus", "tokenizer": "tokenizer.tokenizer"},
            "config": {"seq_len": 128},
        },
    ]
    steps[1]["config"] = {"vocab_size": 2048}
    if teacher is None:
        steps.append(
            {
                "id": "teacher",
                "component": "lm_model",
                "inputs": {"tokenizer": "tokenizer.tokenizer"},
                "config": {"model": TINY},
            }
        )
    else:
        steps.append(
            {
                "id": "teacher",
                "component": "train",
                "inputs": {"data": "tokens.sequences"},
                "config": {"model": teacher, "epochs": 1, **FAST},
            }
        )
    steps.append(
        {
            "id": "cache",
            "component": "lm_inference",
            "inputs": {"teacher": "teacher.model", "sequences": "tokens.sequences"},
            "config": {"k": 32, "batch_size": 16},
        }
    )
    return steps


def student_step(how: str, student: dict[str, Any], **config: Any) -> dict[str, Any]:
    inputs = {"data": "tokens.sequences"}
    inputs |= {"logits": "cache.cache"} if how == "cache" else {"teachers": "teacher.model"}
    targets = "topk" if how == "cache" else "dense"
    return {
        "id": "student",
        "component": "distill",
        "inputs": inputs,
        "config": {
            "student": student,
            "epochs": 1,
            **FAST,
            "losses": [{"type": "forward_kl", "targets": targets}],
            **config,
        },
    }


def kdorch_run(
    folder: Path, steps: list[dict], *extra: str, limit_s: float = 0
) -> tuple[dict[str, Any] | None, float]:
    """`kdorch run` of ``steps`` in a fresh process: its run record and its peak RSS (MiB);
    with ``limit_s``, stopped after that many seconds (no record: the peak so far)."""
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"name": "lm_bench", "steps": steps}, sort_keys=False))
    command = [sys.executable, "-m", "orchestrator", "run", str(path), "--executor", "local"]
    command += ["--storage", str(folder / "store"), "--json", *extra]
    # A wrapper process waits for kdorch alone, so its children's peak is kdorch's.
    probe = (
        "import resource, subprocess, sys; limit = float(sys.argv[1]) or None\n"
        "try:\n code = subprocess.run(sys.argv[2:], timeout=limit).returncode\n"
        "except subprocess.TimeoutExpired:\n code = 124\n"
        "print('RSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(limit_s), *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode == 124:
        return None, peak_of(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"kdorch run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), peak_of(done.stderr)


def peak_of(stderr: str) -> float:
    rss = [line for line in stderr.splitlines() if line.startswith("RSS ")]
    return int(rss[-1].split()[1]) / 1024 if rss else float("nan")


def step_of(record: dict[str, Any], step: str) -> dict[str, Any]:
    return next(s for s in record["steps"] if s["step_id"] == step)


def epoch_figures(args: argparse.Namespace, folder: Path) -> None:
    corpus = args.corpus
    steps = data_steps(corpus, args.documents, TEACHER)
    record, _ = kdorch_run(folder, steps)
    cache = step_of(record, "cache")
    sequences = step_of(record, "tokens")["outputs"]["sequences"]
    tokens = sequences["splits"]["train"]["tokens"]
    print(
        f"   train split: {tokens:,} tokens in {sequences['splits']['train']['sequences']:,} rows"
    )
    cache_s = float(cache.get("seconds") or 0.0)
    times: dict[str, list[float]] = {"cache": [], "online": []}
    for _ in range(args.repeats):
        for how in ("cache", "online"):
            run_steps = [*steps, student_step(how, STUDENT)]
            record, _ = kdorch_run(folder, run_steps, "--set", "steps.student.cache=recompute")
            history = step_of(record, "student")["outputs"]["history"]
            times[how].append(float(history[0]["seconds"]))
            print(f"   {how}: epoch {fmt_s(times[how][-1])} ({load()})", flush=True)
    cached, online = median(times["cache"]), median(times["online"])
    print(f"\nepoch (train + eval), median of {args.repeats}:")
    print(f"  from the cache      {fmt_s(cached)}")
    print(f"  teacher online      {fmt_s(online)}  ({online / cached:.2f}x the cache's)")
    print(f"  the cache, once     {fmt_s(cache_s)} (lm_inference, every split)")
    if online > cached:
        print(f"  repaid after        {cache_s / (online - cached):.1f} epochs")
    print(f"   {load()}")


def memory_figures(args: argparse.Namespace, folder: Path) -> None:
    rows = []
    for documents in (args.documents, args.all_documents):
        where = folder / f"docs{documents}"
        where.mkdir(exist_ok=True)
        steps = data_steps(args.corpus, documents, None)
        record, _ = kdorch_run(where, steps)
        assert record is not None
        cache = step_of(record, "cache")["outputs"]["cache"]
        train = cache["splits"]["train"]
        for held in (False, True):
            step = student_step("cache", TINY, worker_cache_mb=4096 if held else 0)
            again = ("--set", "steps.student.cache=recompute")
            done, peak = kdorch_run(where, [*steps, step], *again, limit_s=args.limit_s)
            epoch = (
                fmt_s(step_of(done, "student")["outputs"]["history"][0]["seconds"])
                if done is not None
                else f"stopped at {args.limit_s:.0f} s"
            )
            how = "held" if held else "streamed"
            rows.append((documents, train["tokens"], cache["bytes"], how, peak, epoch))
            print(f"   {documents} documents, {how}: peak {peak:,.0f} MiB ({load()})", flush=True)
    print("\n| documents | train tokens | cache (all splits) | data | peak RSS | epoch |")
    print("| ---: | ---: | ---: | --- | ---: | --- |")
    for documents, tokens, size, how, peak, epoch in rows:
        print(
            f"| {documents} | {tokens:,} | {size / 2**20:,.1f} MiB | {how} | {peak:,.0f} MiB "
            f"| {epoch} |"
        )
    print(f"   {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "stdlib.parquet")
    parser.add_argument("--documents", type=int, default=80, help="the recipe's slice")
    parser.add_argument("--all-documents", type=int, default=734)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="peak memory, streamed vs held")
    parser.add_argument(
        "--limit-s",
        type=float,
        default=0,
        help="--memory: stop each distill step after this many seconds (the peak so far)",
    )
    parser.add_argument("--smoke", action="store_true", help="a small slice, one repeat")
    parser.add_argument("--keep", help="keep the store in this folder")
    args = parser.parse_args()
    if not args.corpus.exists():
        raise SystemExit(
            f"{args.corpus} is missing: python -m components.text.bundled stdlib {args.corpus}"
        )
    if args.smoke:
        args.documents, args.all_documents, args.repeats = 8, 16, 1
    header(
        "lm_cache_epoch: "
        + (
            "peak memory of a streamed distill step"
            if args.memory
            else "an epoch from the cache vs the teacher online"
        )
    )
    with scratch("kdb-lm-", args.keep) as folder:
        (memory_figures if args.memory else epoch_figures)(args, folder)


if __name__ == "__main__":
    main()
