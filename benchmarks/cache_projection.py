"""A token cache for 1B and 10B tokens, on paper, from measured per-token costs (issue 19):
storage, the teacher's inference time and the read bandwidth a training run needs, for each
encoding at k = 32/64/128 on N workers, and which stage is the bottleneck.

Inputs, each printed with where it came from:

- **bytes/token** per encoding x k: measured from the Parquet files on disk by
  ``benchmarks/lm_cache_encodings.py`` (``--json`` there writes them; ``--measured`` here reads
  that file; without it, the figures of the run recorded in `MEASURED` are used and say so);
- **teacher tokens/s per device**: measured here on this machine's CPU (the lm_kd recipe's
  teacher shape, llama 4 x 128 over 2,048 ids, rows of 128, batch 16, fresh weights: speed does
  not depend on them), one thread; and for a GPU an explicitly labelled ASSUMPTION (a 1B-
  parameter teacher on one H100: 2 x 1e9 FLOPs per token at 40% of 989 TFLOP/s dense bf16);
- **decode tokens/s per core**: measured here, one thread: a shard of each encoding (written
  with the shard writer's Parquet settings, from the recipe teacher's logits on random ids)
  parsed and decoded (`components.lm.cache.decode`), as a loader does per epoch;
- **student tokens/s per core**: measured here, one thread: the recipe's student (llama 2 x 64)
  forward and backward on batches of 16 x 128 with a top-k loss's sparse targets;
- **object-store bandwidth per worker**: an ASSUMPTION (100 MB/s per worker from S3).

Per stage, for T tokens on N workers: storage = T x bytes/token; inference = T / (teacher
tokens/s x N); a training epoch is bounded by the slowest of reading (T x bytes/token / (N x
bandwidth)), decoding (T / (N x decode tokens/s)) and the student (T / (N x student tokens/s)),
and the read bandwidth it needs is N x student tokens/s x bytes/token; the same with the student
on a GPU (an ASSUMPTION: a third of the teacher's size, as fast as the teacher's inference).

Run: ``python benchmarks/cache_projection.py [--measured FILE] [--workers 1 8 64]`` (~1 min).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import header, load

#: bytes/token (on disk) of the lm_kd teacher's test split, from a run of
#: ``python benchmarks/lm_cache_encodings.py --teacher-folder ...`` (benchmarks/README.md,
#: "Token cache encodings"); used only without ``--measured``.
MEASURED: dict[str, Any] = {
    "source": "python benchmarks/lm_cache_encodings.py --teacher-folder ... (2026-12-06 17:12 "
    "UTC; the lm_kd teacher's 13,646 test tokens, files on disk; benchmarks/README.md)",
    "rows": [
        {"encoding": "fp16", "k": 32, "bytes": 98.7},
        {"encoding": "fp16", "k": 64, "bytes": 198.0},
        {"encoding": "fp16", "k": 128, "bytes": 396.4},
        {"encoding": "quant 8 bits", "k": 32, "bytes": 78.9},
        {"encoding": "quant 8 bits", "k": 64, "bytes": 148.2},
        {"encoding": "quant 8 bits", "k": 128, "bytes": 269.6},
        {"encoding": "delta 1/8", "k": 32, "bytes": 51.5},
        {"encoding": "delta 1/8", "k": 40, "bytes": 63.4},
        {"encoding": "delta 1/8", "k": 64, "bytes": 99.2},
        {"encoding": "delta 1/8", "k": 128, "bytes": 195.5},
    ],
}
ENCODINGS: dict[str, dict[str, Any]] = {
    "fp16": {"encoding": "topk"},
    "quant 8 bits": {"encoding": "topk_quant", "bits": 8},
    "delta 1/8": {"encoding": "topk_delta", "step": 1 / 8},
}
KS = (32, 40, 64, 128)
GPU_TOKENS_S = 0.4 * 989e12 / (2 * 1e9)  # ASSUMPTION: 1B params, 40% of an H100's bf16 peak
BANDWIDTH = 100e6  # ASSUMPTION: bytes/s one worker reads from S3
#: ASSUMPTION: a student a third of the GPU teacher's size trains at the teacher's inference
#: rate (training costs ~3x the FLOPs of inference per token).
GPU_STUDENT_TOKENS_S = GPU_TOKENS_S
TEACHER = {"arch": "causal_lm", "layers": 4, "width": 128, "heads": 4, "max_positions": 128}
STUDENT = {"arch": "causal_lm", "layers": 2, "width": 64, "heads": 4, "max_positions": 128}


def model(knobs: dict[str, Any]) -> torch.nn.Module:
    from components.lm.models import build_causal_lm
    from schemas.kd.lm import CausalLMSpec

    return build_causal_lm(CausalLMSpec(**knobs, vocab_size=2048))


def per_second(action: Any, count: int, seconds: float = 2.0) -> float:
    """count / the median CPU time of ``action`` (one thread: per core; CPU time, since the
    machine is shared and its load varies) over ~``seconds`` of CPU."""
    action()  # warm up
    times: list[float] = []
    while sum(times) < seconds or len(times) < 3:
        started = time.process_time()
        action()
        times.append(time.process_time() - started)
    return count / float(np.median(times))


def teacher_speed() -> tuple[float, torch.Tensor]:
    """The recipe teacher's tokens/s (one thread) and its logits of one batch."""
    teacher = model(TEACHER).eval()
    ids = torch.randint(0, 2048, (16, 128), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        speed = per_second(lambda: teacher(ids), ids.numel())
        logits = teacher(ids).float()
    return speed, logits


def student_speed() -> float:
    """The recipe student's training tokens/s (one thread) on top-k targets."""
    from components.losses.tokens import token_rows

    student = model(STUDENT).train()
    optimiser = torch.optim.AdamW(student.parameters(), lr=1e-3)
    ids = torch.randint(0, 2048, (16, 129), generator=torch.Generator().manual_seed(0))
    top = torch.randn(16, 128, 64).sort(-1, descending=True).values.log_softmax(-1)
    idx = torch.randint(0, 2048, (16, 128, 64))

    def step() -> None:
        z = student(ids[:, :-1])
        rows = token_rows(torch.ones(16, 128, dtype=torch.bool), z=z, i=idx, v=top)
        z, i, v = rows["z"], rows["i"], rows["v"]
        assert z is not None and i is not None and v is not None
        logp = z.log_softmax(-1).gather(-1, i)
        loss = -(v.exp() * logp).sum(-1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return per_second(step, ids[:, :-1].numel())


def decode_speed(logits: torch.Tensor, name: str, k: int) -> float:
    """Positions/s of parsing and decoding a shard of ``name`` at ``k`` (one thread)."""
    from components.artifacts.logits import _shard_options
    from components.lm.cache import decode, encode
    from components.lm.encodings import Params

    config = ENCODINGS[name]
    codec = Params(config["encoding"], k, 2048, "float16", config.get("bits"), config.get("step"))
    table = pa.table(encode(logits, np.full(len(logits), logits.shape[1] + 1), codec, "float16"))
    sink = io.BytesIO()
    pq.write_table(table, sink, **_shard_options(table))
    data = sink.getvalue()
    record = record_of(codec, logits.shape[1])
    return per_second(
        lambda: decode(pq.read_table(io.BytesIO(data)), record), logits.shape[:2].numel()
    )


def record_of(codec: Any, seq_len: int) -> Any:
    from schemas.kd.token_cache import TokenCache, TokenCacheSplit

    split = TokenCacheSplit(sequences=1, tokens=1, shards=1, bytes=1)
    return TokenCache(
        path="projection",
        encoding=codec.encoding,
        top_k=codec.k,
        dtype="float16",
        id_bits=codec.id_bits,
        value_bits=codec.bits,
        value_step=codec.step,
        vocab_size=2048,
        seq_len=seq_len,
        splits={"test": split},
        tokens=1,
        bytes=1,
        bytes_per_token=1.0,
        teacher_version="-",
        sequences_version="-",
        tokenizer_version="-",
    )


def measured_bytes(path: Path | None) -> tuple[dict[tuple[str, int], float], str]:
    data = json.loads(path.read_text()) if path else MEASURED
    table = {(r["encoding"], int(r["k"])): float(r["bytes"]) for r in data["rows"]}
    return table, (str(path) if path else data["source"])


def human(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.1f} {prefix}{unit}"
    return f"{value:.1f} {unit}"


def duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def bottleneck(inputs: dict[str, Any], key: tuple[str, int], student: float) -> str:
    """The slowest stage of a training epoch per worker: reading, decoding or the student."""
    rates = {
        "reading": BANDWIDTH / inputs["bytes"][key],
        "decoding": inputs["decode"][key],
        "the student": student,
    }
    return min(rates, key=lambda stage: rates[stage])


def project(inputs: dict[str, Any], workers: list[int]) -> None:
    print(
        "\n| tokens | encoding | k | storage | workers | inference (CPU / GPU*) | epoch, CPU "
        "student: read / decode / train | read bandwidth needed (CPU / GPU* student) | "
        "bottleneck (CPU / GPU* student) |"
    )
    print("| ---: | --- | ---: | ---: | ---: | --- | --- | --- | --- |")
    for tokens in (1e9, 1e10):
        for (name, k), per_token in inputs["bytes"].items():
            for n in workers:
                read = tokens * per_token / (n * BANDWIDTH)
                dec = tokens / (n * inputs["decode"][(name, k)])
                train = tokens / (n * inputs["student"])
                need = n * inputs["student"] * per_token
                need_gpu = n * GPU_STUDENT_TOKENS_S * per_token
                slowest = bottleneck(inputs, (name, k), inputs["student"])
                slowest_gpu = bottleneck(inputs, (name, k), GPU_STUDENT_TOKENS_S)
                print(
                    f"| {tokens:.0e} | {name} | {k} | {human(tokens * per_token, 'B')} | {n} | "
                    f"{duration(tokens / (n * inputs['teacher']))} / "
                    f"{duration(tokens / (n * GPU_TOKENS_S))} | {duration(read)} / "
                    f"{duration(dec)} / {duration(train)} | {human(need, 'B/s')} / "
                    f"{human(need_gpu, 'B/s')} | {slowest} / {slowest_gpu} |"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measured", type=Path, help="lm_cache_encodings.py --json output")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 64])
    args = parser.parse_args()
    torch.set_num_threads(1)
    header("cache_projection: a token cache for 1B and 10B tokens, from measured costs")
    sizes, source = measured_bytes(args.measured)
    sizes = {key: value for key, value in sizes.items() if key[0] in ENCODINGS and key[1] in KS}
    teacher, logits = teacher_speed()
    decode = {(name, k): decode_speed(logits, name, k) for name, k in sizes}
    inputs = {"bytes": sizes, "teacher": teacher, "decode": decode, "student": student_speed()}
    print("\ninputs:")
    for (name, k), value in sizes.items():
        print(
            f"  {name} k={k}: {value:.1f} bytes/token (measured on disk: {source}); decode "
            f"{decode[(name, k)]:,.0f} tokens/s per core (measured here, one thread)"
        )
    print(
        f"  teacher (lm_kd's llama 4 x 128): {teacher:,.0f} tokens/s per CPU core (measured here)"
    )
    print(
        f"  teacher on a GPU: {GPU_TOKENS_S:,.0f} tokens/s "
        "(* ASSUMPTION: 1B params, 40% of an H100's bf16 peak)"
    )
    print(
        f"  student (llama 2 x 64) training: {inputs['student']:,.0f} tokens/s per core "
        "(measured here)"
    )
    print(f"  object-store reads: {BANDWIDTH / 1e6:.0f} MB/s per worker (ASSUMPTION)")
    print(
        f"  student on a GPU: {GPU_STUDENT_TOKENS_S:,.0f} tokens/s (* ASSUMPTION: a third of "
        "the teacher's size, training at ~3x the FLOPs of inference)"
    )
    print(f"   {load()}")
    project(inputs, args.workers)
    print(f"\n   {load()}")


if __name__ == "__main__":
    main()
