"""The token cache's encodings (issue 19): bytes per token against fidelity, on the lm_kd
recipe's real teacher and its test tokens, and what a student trained from each gets.

**Set-up** through kdorch (``kdorch run --executor local``, one process): the lm_kd recipe's
own steps ``corpus``, ``tokenizer``, ``tokens`` and ``teacher`` (`pipelines/lm_kd.yaml`: 80
standard-library documents, a 2,048-id BPE, rows of 128 tokens, the llama 4 x 128 teacher
trained 2 epochs), then one `lm_inference` step per encoding x k over the test split.

**Fidelity** (per encoding x k): the cache is read back as a trainer reads it
(`components.lm.cache.cached_batches`: Parquet, verified, `decode`), and on every counted test
token compared with the teacher's full softmax p (run here, float64):

- KL(p || p^), where p^ is the decoded top-k under the loss's rule ``symmetric_uniform``
  (`components.losses.tokens.topk_bins`: the kept ids renormalised to 1 - rest, the rest spread
  evenly over the V - k others; rest clamped to [1e-8, 1 - 1e-6]), mean nats per token;
- top-k mass kept: the teacher's true mass on the decoded ids; top-1: the decoded top id is
  the teacher's;
- bytes/token: the shard files' bytes (the manifest's sizes, as written on disk) over the
  split's tokens;
- encode tokens/s: `components.lm.cache.encode` on the teacher's logits (the top-k selection
  included, one thread); decode tokens/s: `decode` of the shards' tables (one thread); both per
  CPU-second of this process (`time.process_time`), which a busy machine disturbs far less
  than wall-clock time.

**Students** (``--students``): a `distill` step per (encoding, k, seed) on caches of every
split, the recipe's student (llama 2 x 64) with the recipe's losses (forward KL, rule
symmetric_uniform, plus half a next-token CE), ``--epochs`` epochs (default 1: the recipe
trains 2; sized to fit 2 busy cores); test perplexity from
`components.lm.evaluation.score_language_models`. The runs alternate between encodings seed by
seed, so the epoch seconds of the same student from each cache come from the same run: their
ratio is the training throughput of an encoding against fp16 (``--streamed`` reads the cache
every epoch, decoding included; held data decode once).

Run: ``python benchmarks/lm_cache_encodings.py`` (fidelity, ~3 min on 2 busy cores),
``--students`` (adds ~25 min), ``--smoke`` for a quick pass.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import ROOT, header, load, scratch
from lm_cache_epoch import kdorch_run, step_of

#: (label, lm_inference config without k): the encodings measured.
ENCODINGS: list[tuple[str, dict[str, Any]]] = [
    ("fp16", {"encoding": "topk"}),
    ("fp16 packed ids", {"encoding": "topk_packed"}),
    ("quant 8 bits", {"encoding": "topk_quant", "bits": 8}),
    ("quant 4 bits", {"encoding": "topk_quant", "bits": 4}),
    ("delta 1/32", {"encoding": "topk_delta", "step": 1 / 32}),
    ("delta 1/8", {"encoding": "topk_delta", "step": 1 / 8}),
]
KS = (32, 64, 128)
#: Rows besides encoding x KS: the k that fits 64 bytes/token.
EXTRA = [("fp16", 40), ("delta 1/8", 40), ("quant 4 bits", 40)]


def grid(ks: tuple[int, ...]) -> list[tuple[str, dict[str, Any], int]]:
    """(label, config, k) of every row of the table, in order."""
    configs = dict(ENCODINGS)
    rows = [(label, config, k) for label, config in ENCODINGS for k in ks]
    extra = [(label, configs[label], k) for label, k in EXTRA if k not in ks]
    return sorted(rows + extra, key=lambda r: (list(configs).index(r[0]), r[2]))


REST_FLOOR, REST_CEILING = 1e-8, 1 - 1e-6  # the rule's clamps (components.losses.tokens)


def recipe_steps(corpus: Path, smoke: bool, teacher: Path | None = None) -> list[dict[str, Any]]:
    """The lm_kd recipe's steps up to its teacher, as the recipe writes them (smoke: its
    smoke profile's sizes); ``teacher``: the recipe's teacher already trained, as a
    save_pretrained folder, loaded by `lm_model` instead of trained again."""
    recipe = yaml.safe_load((ROOT / "pipelines" / "lm_kd.yaml").read_text())
    steps = [s for s in recipe["steps"] if s["id"] in ("corpus", "tokenizer", "tokens", "teacher")]
    steps[0]["config"]["uri"] = str(corpus)
    if smoke:
        for path, value in recipe["profiles"]["smoke"].items():
            _, step, _, *keys = path.split(".")
            for s in steps:
                if s["id"] == step:
                    target = s["config"]
                    for key in keys[:-1]:
                        target = target.setdefault(key, {})
                    target[keys[-1]] = value
    if teacher is not None:
        steps[3] = {
            "id": "teacher",
            "component": "lm_model",
            "inputs": {"tokenizer": "tokenizer.tokenizer"},
            "config": {"model": {"arch": "causal_lm", "path": str(teacher)}},
        }
    return steps


def cache_id(label: str, k: int) -> str:
    return "cache_" + label.replace(" ", "_").replace("/", "_") + f"_k{k}"


def cache_steps(ks: tuple[int, ...], splits: list[str] | None) -> list[dict[str, Any]]:
    """One lm_inference step per encoding x k (``splits``: None for all)."""
    steps = []
    for label, config, k in grid(ks):
        steps.append(
            {
                "id": cache_id(label, k),
                "component": "lm_inference",
                "inputs": {"teacher": "teacher.model", "sequences": "tokens.sequences"},
                "resources": {"num_cpus": 1},
                "config": {
                    **config,
                    "k": k,
                    "batch_size": 16,
                    **({"splits": splits} if splits else {}),
                },
            }
        )
    return steps


def symmetric_uniform_logp(
    ids: torch.Tensor, values: torch.Tensor, rest: torch.Tensor, vocab: int
) -> torch.Tensor:
    """log p^ (N, V) float64 of a decoded top-k under the rule symmetric_uniform at T = 1."""
    k = ids.shape[-1]
    v = values.double()
    if k == vocab:
        return v - torch.logsumexp(v, -1, keepdim=True)
    r = rest.double().clamp(REST_FLOOR, REST_CEILING)[:, None]
    kept = v - torch.logsumexp(v, -1, keepdim=True) + torch.log1p(-r)
    out = (torch.log(r) - math.log(vocab - k)).expand(-1, vocab).clone()
    return out.scatter_(-1, ids.long(), kept)


def fidelity(store: Any, sequences: Any, cache: Any, teacher: torch.nn.Module) -> dict[str, float]:
    """KL, top-k mass kept, top-1 agreement and decode tokens/s of one cache's test split."""
    from components.lm.cache import cached_batches, decode, read_shard, shard_names

    kl = mass = agree = tokens = 0.0
    with torch.inference_mode():
        for batch in cached_batches(store, sequences, cache, "test", 16):
            logp = torch.log_softmax(teacher(batch.inputs).double(), -1)[batch.mask]
            t = batch.teacher
            assert t.topk_ids is not None and t.topk_logprobs is not None
            assert t.rest_mass is not None
            ids, values = t.topk_ids[batch.mask], t.topk_logprobs[batch.mask]
            approx = symmetric_uniform_logp(ids, values, t.rest_mass[batch.mask], logp.shape[-1])
            p = logp.exp()
            kl += float((p * (logp - approx)).sum())
            mass += float(p.gather(-1, ids).sum())
            top = ids.gather(-1, values.argmax(-1, keepdim=True))[:, 0]
            agree += float((top == logp.argmax(-1)).sum())
            tokens += int(batch.mask.sum())
    tables = [read_shard(store, cache, n) for n in shard_names(store, cache, "test")]
    positions = sum(t.num_rows for t in tables) * cache.seq_len
    started = time.process_time()  # CPU seconds: the machine is shared, its load varies
    repeats = 3
    for _ in range(repeats):
        for table in tables:
            decode(table, cache)
    decode_s = (time.process_time() - started) / repeats
    return {
        "kl": kl / tokens,
        "mass": mass / tokens,
        "top1": agree / tokens,
        "decode": positions / decode_s,
    }


def encode_speed(logits: torch.Tensor, length: np.ndarray, cache: Any) -> float:
    """Positions/s of `encode` (top-k selection included) on the teacher's logits."""
    from components.lm.cache import encode, params

    codec = params(cache)
    started = time.process_time()
    encode(logits, length, codec, cache.dtype)
    return logits.shape[0] * logits.shape[1] / (time.process_time() - started)


def disk_bytes(store: Any, cache: Any, split: str) -> int:
    """The split's shard files' bytes as they lie in the store (their manifest sizes)."""
    prefix = f"{split}/"
    return sum(e.size for e in store.manifest(cache).files if e.path.startswith(prefix))


def fidelity_table(folder: Path, base: list[dict], ks: tuple[int, ...]) -> dict[str, Any]:
    from components.artifacts.checkpoints import load_model
    from components.lm.evaluation import batches
    from orchestrator import ArtifactStore
    from schemas.kd.artifacts import ModelCheckpoint
    from schemas.kd.text import TokenSequences
    from schemas.kd.token_cache import TokenCache

    record, _ = kdorch_run(folder, [*base, *cache_steps(ks, ["test"])])
    assert record is not None
    store = ArtifactStore(str(folder / "store"))
    sequences = TokenSequences.model_validate(step_of(record, "tokens")["outputs"]["sequences"])
    checkpoint = ModelCheckpoint.model_validate(step_of(record, "teacher")["outputs"]["model"])
    teacher, _ = load_model(store, checkpoint)
    teacher.eval()
    first = next(batches(store, sequences, "test", 64))
    with torch.inference_mode():
        logits = teacher(first.inputs).float()
    length = np.full(logits.shape[0], logits.shape[1] + 1)  # full rows: speed only
    rows: dict[tuple[str, int], dict[str, float]] = {}
    test_tokens = sequences.splits["test"].tokens - 1
    print(f"   test split: {test_tokens:,} tokens; vocabulary {sequences.vocab_size:,}")
    for label, _, k in grid(ks):
        cache = TokenCache.model_validate(step_of(record, cache_id(label, k))["outputs"]["cache"])
        row = fidelity(store, sequences, cache, teacher)
        row["bytes"] = disk_bytes(store, cache, "test") / cache.splits["test"].tokens
        row["encode"] = median_of(lambda c=cache: encode_speed(logits, length, c))
        rows[(label, k)] = row
        print(f"   {label} k={k}: {row['bytes']:.1f} B/token, KL {row['kl']:.4f} ({load()})")
    return {"rows": rows, "tokens": test_tokens}


def median_of(measure: Any, repeats: int = 3) -> float:
    return float(statistics.median(measure() for _ in range(repeats)))


def print_fidelity(table: dict[str, Any], ks: tuple[int, ...]) -> None:
    rows = table["rows"]
    print(
        f"\nfidelity on the lm_kd teacher's {table['tokens']:,} test tokens (speeds: one thread, "
        "per CPU-second of this process, median of 3 for encode):"
    )
    print(
        "| encoding | k | bytes/token | KL(p‖p̂) nats | top-k mass kept | top-1 agreement "
        "| encode tokens/CPU-s | decode tokens/CPU-s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, _, k in grid(ks):
        r = rows[(label, k)]
        print(
            f"| {label} | {k} | {r['bytes']:.1f} | {r['kl']:.4f} | {r['mass']:.4f} | "
            f"{r['top1']:.4f} | {r['encode']:,.0f} | {r['decode']:,.0f} |"
        )


# -- students ---------------------------------------------------------------------------------


def student_step(cache: str, seed: int, epochs: int, streamed: bool) -> dict[str, Any]:
    recipe = yaml.safe_load((ROOT / "pipelines" / "lm_kd.yaml").read_text())
    kd = next(s for s in recipe["steps"] if s["id"] == "student_forward_kl")
    config = {**kd["config"], "seed": seed, "epochs": epochs}
    config["worker_cache_mb"] = 0 if streamed else 4096
    return {
        "id": f"student_{cache}_s{seed}",
        "component": "distill",
        "inputs": {"data": "tokens.sequences", "logits": f"{cache}.cache"},
        "config": config,
    }


def students(
    folder: Path, base: list[dict], picks: list[tuple[str, int, int]], args: argparse.Namespace
) -> dict[tuple[str, int], list[tuple[float, float]]]:
    """(label, k) -> [(test perplexity, train seconds)] per seed; a student per pick and seed,
    each in its own kdorch run, alternating between the picks seed by seed."""
    from components.artifacts.checkpoints import load_model
    from components.lm.evaluation import score_language_models
    from orchestrator import ArtifactStore
    from schemas.kd.artifacts import ModelCheckpoint
    from schemas.kd.text import TokenSequences

    caches = [
        s
        for s in cache_steps(KS, None)
        if any(s["id"] == cache_id(name, k) for name, k, _ in picks)
    ]
    out: dict[tuple[str, int], list[tuple[float, float]]] = {}
    store = ArtifactStore(str(folder / "store"))
    for seed in range(max(n for _, _, n in picks)):
        for label, k, seeds in picks:
            if seed >= seeds:
                continue
            step = student_step(cache_id(label, k), seed, args.epochs, args.streamed)
            record, _ = kdorch_run(folder, [*base, *caches, step])
            assert record is not None
            done = step_of(record, step["id"])["outputs"]
            seconds = sum(float(h["seconds"]) for h in done["history"])
            sequences = TokenSequences.model_validate(
                step_of(record, "tokens")["outputs"]["sequences"]
            )
            model, _ = load_model(store, ModelCheckpoint.model_validate(done["model"]))
            scored = score_language_models(
                store, sequences, {"s": model.eval()}, split="test", batch_size=32
            )
            ppl = scored.results["s"]["perplexity"]
            out.setdefault((label, k), []).append((ppl, seconds))
            print(f"   {label} k={k} seed {seed}: test ppl {ppl:.2f}, {seconds:.1f} s ({load()})")
    return out


def print_students(results: dict[tuple[str, int], list[tuple[float, float]]], base: str) -> None:
    """Per (encoding, k): test perplexity per seed, mean and sd, and the epoch's seconds against
    fp16's at the same k (its throughput relative to fp16: > 1 is faster)."""
    print("\nstudents (test perplexity per seed; train seconds, all epochs):")
    print(
        "| encoding | k | seeds | test perplexity | mean ± sd | seconds (median) "
        "| throughput vs fp16, same k |"
    )
    print("| --- | ---: | ---: | --- | --- | ---: | ---: |")
    for (label, k), runs in results.items():
        ppl = [p for p, _ in runs]
        sd = statistics.stdev(ppl) if len(ppl) > 1 else math.nan
        secs = statistics.median(s for _, s in runs)
        same = results.get((base, k))
        ratio = statistics.median(s for _, s in same) / secs if same else math.nan
        print(
            f"| {label} | {k} | {len(runs)} | {', '.join(f'{p:.2f}' for p in ppl)} | "
            f"{statistics.mean(ppl):.2f} ± {sd:.2f} | {secs:.1f} | {ratio:.3f}x |"
        )


def latest_record(folder: Path, steps: list[str]) -> dict[str, Any]:
    """The newest run record of the store (``--keep``) with ``steps`` succeeded in it: the
    caches the students were trained from (``--students``), read as they are."""
    runs = sorted((folder / "store" / "runs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(runs):
        record = json.loads(path.read_text())
        done = {s["step_id"] for s in record["steps"] if s.get("outputs")}
        if set(steps) <= done:
            return record
    raise SystemExit(f"no run in {folder} has {steps}: run --students first (with --keep)")


def throughput(folder: Path, label: str, k: int, repeats: int) -> None:
    """CPU seconds of a streamed training epoch from ``label``'s cache and from fp16's at the
    same k, alternating, in this process: the real streamed loader (`SequenceStream`, one unit
    at a time, decoding every epoch) feeding the recipe's student (llama 2 x 64, one thread,
    forward KL on the top-k with the rule symmetric_uniform, AdamW). CPU time, not wall time:
    on a shared machine the epoch's wall time varied 7x between two runs of the same step."""
    from components.lm.models import build_causal_lm
    from components.lm.streams import SequenceStream
    from components.losses.base import KDBatch
    from components.losses.tokens import token_rows, topk_bins
    from orchestrator import ArtifactStore
    from schemas.kd.components.training import TrainingSettings
    from schemas.kd.lm import CausalLMSpec
    from schemas.kd.text import TokenSequences
    from schemas.kd.token_cache import TokenCache

    record = latest_record(folder, [cache_id(name, k) for name in ("fp16", label)])
    store = ArtifactStore(str(folder / "store"))
    sequences = TokenSequences.model_validate(step_of(record, "tokens")["outputs"]["sequences"])
    settings = TrainingSettings(seed=0, batch_size=16)
    spec = {"arch": "causal_lm", "layers": 2, "width": 64, "heads": 4, "max_positions": 128}
    seconds: dict[str, list[float]] = {name: [] for name in ("fp16", label)}
    for repeat in range(repeats):
        for name in ("fp16", label):
            cache = TokenCache.model_validate(
                step_of(record, cache_id(name, k))["outputs"]["cache"]
            )
            torch.manual_seed(repeat)
            student = build_causal_lm(CausalLMSpec(**spec, vocab_size=sequences.vocab_size))
            optimiser = torch.optim.AdamW(student.parameters(), lr=3e-3)
            rows = SequenceStream(store, sequences, cache, "train", via="local").for_worker(
                batch_size=16, shuffle=True, settings=settings, rank=0, world=1
            )
            started = time.process_time()
            for batch in rows.batches(repeat):
                z = student(batch["x"].long())
                fields = token_rows(
                    batch["mask"],
                    student_logits=z,
                    teacher_topk_indices=batch["teacher_topk_indices"].long(),
                    teacher_topk_values=batch["teacher_topk_values"].float(),
                    teacher_rest_mass=batch["teacher_rest_mass"].float(),
                )
                bins = topk_bins(KDBatch(**fields), 1.0, "symmetric_uniform")  # type: ignore[arg-type]
                loss = (bins.teacher.exp() * (bins.teacher - bins.student)).sum(-1).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            seconds[name].append(time.process_time() - started)
            print(f"   {name} k={k} epoch {repeat}: {seconds[name][-1]:.1f} CPU-s ({load()})")
    fp16, best = statistics.median(seconds["fp16"]), statistics.median(seconds[label])
    tokens = sequences.splits["train"].tokens
    print(f"\nthroughput, a streamed epoch of the train split ({tokens:,} tokens):")
    print(f"  fp16 k={k}: median {fp16:.1f} CPU-s; {label} k={k}: median {best:.1f} CPU-s")
    print(f"  {label} / fp16 throughput: {fp16 / best:.3f}x (goal >= 0.95)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "stdlib.parquet")
    parser.add_argument("--students", action="store_true", help="train students too")
    parser.add_argument("--students-only", action="store_true", help="students, no fidelity")
    parser.add_argument(
        "--throughput", type=int, metavar="REPEATS", help="CPU time of a streamed epoch only"
    )
    parser.add_argument("--best", default="delta 1/8", help="the encoding trained 3 seeds")
    parser.add_argument("--best-k", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--streamed", action="store_true", help="students read the cache each epoch"
    )
    parser.add_argument("--smoke", action="store_true", help="the recipe's smoke sizes")
    parser.add_argument("--json", type=Path, help="also write the fidelity rows here")
    parser.add_argument(
        "--teacher-folder",
        type=Path,
        help="the recipe's teacher, trained by `kdorch run pipelines/lm_kd.yaml`, saved with "
        "save_pretrained: loaded instead of trained again (the same tokens give the same ids)",
    )
    parser.add_argument("--keep", help="keep the store in this folder (and reuse it)")
    args = parser.parse_args()
    if not args.corpus.exists():
        raise SystemExit(
            f"{args.corpus} is missing: python -m components.text.bundled stdlib {args.corpus}"
        )
    torch.set_num_threads(1)
    header("lm_cache_encodings: bytes per token vs fidelity of the token cache's encodings")
    ks = (8, 16) if args.smoke else KS
    with scratch("kdb-lm-enc-", args.keep) as folder:
        base = recipe_steps(args.corpus, args.smoke, args.teacher_folder)
        if args.throughput:
            throughput(folder, args.best, args.best_k, args.throughput)
            return
        trained = "trained here (the recipe's teacher step)"
        print(f"   teacher: {args.teacher_folder or trained}")
        table = fidelity_table(folder, base, ks) if not args.students_only else None
        if table is not None:
            print_fidelity(table, ks)
        if table is not None and args.json:
            rows = [{"encoding": e, "k": k, **r} for (e, k), r in table["rows"].items()]
            source = f"python {' '.join(sys.argv)} ({time.strftime('%Y-%m-%d %H:%M UTC')})"
            args.json.write_text(json.dumps({"source": source, "rows": rows}, indent=1))
        if args.students or args.students_only:
            picks = [("fp16", 64, args.seeds), (args.best, args.best_k, args.seeds)]
            picks.append(("fp16", args.best_k, 2))  # the best's k in fp16: throughput
            results = students(folder, base, picks, args)
            print_students(results, "fp16")
    print(f"   {load()}")


if __name__ == "__main__":
    main()
