"""KD students vs scratch on a reduced `pipelines/lm_kd.yaml` (issue 18): does distilling from
the teacher's top-k token cache beat next-token training from scratch, beyond the seed spread?

The recipe's chain at a size this shared 2-core machine finishes in minutes: 16 documents of
the standard library (splits 0.75 / 0.125 / 0.125), a 512-id BPE, rows of 64 tokens, a llama
teacher 2 x 64 trained 3 epochs, its top-16 cache; students llama 1 x 32 (about 4x fewer
parameters), 2 epochs, AdamW 3e-3 with 5% warm-up, seeds 0, 1, 2: scratch (`train`), and
forward KL and TAID (`distill`) under three loss settings, chosen in this order on the *val*
split (nothing here reads test):

1. ``zero``: the top-k loss alone, the teacher renormalised over its top 16;
2. ``symmetric``: the top-k loss alone, the teacher's rest mass kept (`missing:
   symmetric_uniform`);
3. ``symmetric+ce``: 2. plus half a next-token cross-entropy (what the recipe uses).

Printed: each model's val loss (nats per counted token), perplexity and next-token accuracy;
per setting, KD minus scratch val loss paired by seed, its mean and standard deviation over
the 3 seeds. One store: the teacher, cache and scratch students run once.

Run: ``python benchmarks/lm_kd_reduced.py`` (~4 min under load 15 for the first setting, ~2
min each after; ``--keep DIR`` keeps the store).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import ROOT, header, load, scratch

TEACHER = {"arch": "causal_lm", "layers": 2, "width": 64, "heads": 4, "max_positions": 64}
STUDENT = {"arch": "causal_lm", "layers": 1, "width": 32, "heads": 2, "max_positions": 64}
OPTIMIZER = {"name": "adamw", "lr": 0.003, "weight_decay": 0.01, "warmup_fraction": 0.05}
COMMON = {"epochs": 2, "batch_size": 16, "optimizer": OPTIMIZER, "grad_clip": 1.0}
SETTINGS: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "zero": ({"missing": "zero"}, []),
    "symmetric": ({"missing": "symmetric_uniform"}, []),
    "symmetric+ce": ({"missing": "symmetric_uniform"}, [{"type": "ce", "weight": 0.5}]),
}
SEEDS = [0, 1, 2]


def steps(corpus: Path, setting: str) -> list[dict[str, Any]]:
    rule, extra = SETTINGS[setting]
    seeded = {**COMMON, "seed": "${seed}"}
    out: list[dict[str, Any]] = [
        {
            "id": "corpus",
            "component": "corpus",
            "config": {
                "uri": str(corpus),
                "max_documents": 16,
                "seed": 0,
                "splits": {"train": 0.75, "val": 0.125, "test": 0.125},
            },
        },
        {
            "id": "tokenizer",
            "component": "tokenizer",
            "inputs": {"corpus": "corpus.corpus"},
            "config": {"vocab_size": 512},
        },
        {
            "id": "tokens",
            "component": "pack_tokens",
            "inputs": {"corpus": "corpus.corpus", "tokenizer": "tokenizer.tokenizer"},
            "config": {"seq_len": 64},
        },
        {
            "id": "teacher",
            "component": "train",
            "inputs": {"data": "tokens.sequences"},
            "config": {"model": TEACHER, **COMMON, "epochs": 3},
        },
        {
            "id": "cache",
            "component": "lm_inference",
            "inputs": {"teacher": "teacher.model", "sequences": "tokens.sequences"},
            "config": {"k": 16, "batch_size": 16},
        },
        {
            "id": "scratch",
            "component": "train",
            "matrix": {"seed": SEEDS},
            "inputs": {"data": "tokens.sequences"},
            "config": {"model": STUDENT, **seeded},
        },
    ]
    for loss in ("forward_kl", "taid"):
        out.append(
            {
                "id": loss,
                "component": "distill",
                "matrix": {"seed": SEEDS},
                "inputs": {"data": "tokens.sequences", "logits": "cache.cache"},
                "config": {
                    "student": STUDENT,
                    **seeded,
                    "losses": [{"type": loss, "targets": "topk", **rule}, *extra],
                },
            }
        )
    return out


def run_setting(corpus: Path, folder: Path, setting: str) -> dict[str, dict[str, float]]:
    from orchestrator import run

    path = folder / f"{setting}.yaml"
    path.write_text(yaml.safe_dump({"name": "lm_kd_reduced", "steps": steps(corpus, setting)}))
    started = time.perf_counter()
    record = run(path, storage=str(folder / "store"), executor="local")
    if record.status.value != "succeeded":
        raise SystemExit([s.error for s in record.steps if s.error])
    print(f"\n{setting}: {time.perf_counter() - started:.0f} s ({load()})")
    return {
        s.step_id: s.outputs["metrics"]
        for s in record.steps
        if s.outputs and "val_loss" in (s.outputs.get("metrics") or {})
    }


def report(setting: str, metrics: dict[str, dict[str, float]]) -> None:
    for name, m in sorted(metrics.items()):
        print(
            f"  {name:14s} val loss {m['val_loss']:.4f}  perplexity {m['val_perplexity']:7.2f}  "
            f"top-1 {m['val_accuracy']:.4f}"
        )
    for loss in ("forward_kl", "taid"):
        diffs = [
            metrics[f"{loss}[{i}]"]["val_loss"] - metrics[f"scratch[{i}]"]["val_loss"]
            for i in range(len(SEEDS))
        ]
        print(
            f"  {setting} {loss} - scratch (nats/token, by seed): "
            f"{', '.join(f'{d:+.4f}' for d in diffs)}; mean {statistics.mean(diffs):+.4f}, "
            f"sd {statistics.stdev(diffs):.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "stdlib.parquet")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--keep", help="keep the store in this folder")
    args = parser.parse_args()
    if not args.corpus.exists():
        raise SystemExit(
            f"{args.corpus} is missing: python -m components.text.bundled stdlib {args.corpus}"
        )
    header("lm_kd_reduced: KD students vs scratch on a reduced lm_kd, paired by seed")
    with scratch("kdb-lmkd-", args.keep) as folder:
        for setting in args.settings:
            report(setting, run_setting(args.corpus, folder, setting))


if __name__ == "__main__":
    main()
