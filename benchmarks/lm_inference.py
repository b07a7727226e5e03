"""Teacher LM inference through `lm_inference` vs a plain transformers loop (issue 18, goal 5).

Set-up through kdorch, in this process (``executor="local"``): the Python standard library as a
corpus (docs/language_models.md), a BPE tokenizer, sequences packed at seq_len 256, and a small
llama teacher built from a config (`lm_model`: ``--layers`` x ``--width``, fresh seeded weights:
the speed of a forward pass does not depend on what the weights learnt). Then, alternating
``--repeats`` times over the ``--split`` split:

- the `lm_inference` step again (``cache=recompute``): verified reads of the sequence parts,
  the teacher loaded from its checkpoint, batches of ``--batch`` rows, top-k ids, fp16
  log-probabilities and the rest mass per token, written as deterministic shards through the
  artifact layer (manifest, content hash); its own seconds from the run record;
- a plain loop: the same network as a transformers ``LlamaForCausalLM`` (weights read with
  ``torch.load``), the part files read with pyarrow, ``net(input_ids).logits``,
  ``log_softmax`` + ``topk``, the same columns written to one Parquet file with the same
  settings; timed from the weights' load to the file written.

Both use one torch thread (the step's one CPU). Reported: tokens/s of each (tokens: positions
with a real next token, the cache's count), their ratio (goal >= 0.8), and the cache's bytes
per token.

Run: ``python benchmarks/lm_inference.py`` (about 3-6 minutes on 2 busy cores);
``--smoke`` (120 documents, vocabulary 1,024, one repeat: about a minute).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import header, load, median, scratch


def pipeline(corpus: Path, args: argparse.Namespace) -> Any:
    from orchestrator import Pipeline

    p = Pipeline("bench_lm_inference")
    config: dict[str, Any] = {
        "uri": str(corpus),
        "splits": {"train": 0.9, "val": 0.05, "test": 0.05},
    }
    if args.smoke:
        config["max_documents"] = 120
    c = p.add("corpus", "corpus", config=config)
    vocab = 1024 if args.smoke else args.vocab
    tok = p.add("tokenizer", "tokenizer", inputs={"corpus": c.corpus}, config={"vocab_size": vocab})
    seq = p.add(
        "tokens",
        "pack_tokens",
        inputs={"corpus": c.corpus, "tokenizer": tok.tokenizer},
        config={"seq_len": 256},
    )
    model = {
        "arch": "causal_lm",
        "family": "llama",
        "layers": args.layers,
        "width": args.width,
        "heads": max(1, args.width // 32),
        "max_positions": 256,
    }
    teacher = p.add(
        "teacher", "lm_model", inputs={"tokenizer": tok.tokenizer}, config={"model": model}
    )
    p.add(
        "cache",
        "lm_inference",
        inputs={"teacher": teacher.model, "sequences": seq.sequences},
        config={"k": args.k, "batch_size": args.batch, "splits": [args.split]},
    )
    return p.spec


def plain_inference(
    store: str,
    sequences: dict[str, Any],
    teacher: dict[str, Any],
    split: str,
    k: int,
    batch: int,
    out: Path,
) -> int:
    """The teacher's top-k over one split of the sequences, as a plain transformers loop;
    returns the tokens covered."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from components.artifacts.logits import SHARD_OPTIONS, fixed_list
    from components.lm.models import network
    from components.models.checkpoint import WEIGHTS_FILE
    from schemas.kd.lm import CausalLMSpec

    torch.set_num_threads(1)  # as the step: one actor, one CPU
    spec = CausalLMSpec.model_validate(teacher["model"])
    net = network(spec, spec.config)  # the transformers LlamaForCausalLM itself
    state = torch.load(Path(store, teacher["path"], WEIGHTS_FILE), weights_only=True)
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    net.eval()
    files = sorted(Path(store, sequences["path"], split).glob("*.parquet"))
    table = pa.concat_tables(pq.read_table(f) for f in files)
    outputs, tokens = [], 0
    for part in table.to_batches(max_chunksize=batch):
        ids = np.asarray(part.column("tokens").flatten()).reshape(part.num_rows, -1)
        length = part.column("length").to_numpy()
        with torch.inference_mode():
            logits = net(input_ids=torch.from_numpy(ids[:, :-1].astype(np.int64))).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            values, top = logp.topk(k, dim=-1)
            rest = (1 - values.exp().sum(-1)).clamp(0, 1)
            pad = torch.arange(ids.shape[1] - 1)[None, :] >= torch.from_numpy(length - 1)[:, None]
            values[pad], top[pad], rest[pad] = 0, 0, 0
        rows, width = part.num_rows, ids.shape[1] - 1
        outputs.append(
            pa.table(
                {
                    "row_id": part.column("row_id"),
                    "topk_ids": fixed_list(top.reshape(rows, -1).int().numpy(), pa.int32()),
                    "topk_logprobs": fixed_list(
                        values.reshape(rows, -1).numpy().astype(np.float16), pa.float16()
                    ),
                    "rest_mass": fixed_list(rest.reshape(rows, width).numpy(), pa.float32()),
                }
            )
        )
        tokens += int((~pad).sum())
    out.mkdir(parents=True, exist_ok=True)
    options = {**SHARD_OPTIONS, "use_byte_stream_split": ["topk_logprobs", "rest_mass"]}
    pq.write_table(pa.concat_tables(outputs), out / "plain.parquet", **options)
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--split", default="val")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.repeats = 1
    header("lm_inference: teacher LM tokens/s through the step vs a plain transformers loop")
    from components.text.bundled import write_stdlib
    from orchestrator import run

    with scratch("lm-inference") as folder:
        corpus = write_stdlib(folder / "stdlib.parquet")
        store = str(folder / "store")
        spec = pipeline(corpus, args)
        started = time.perf_counter()
        record = run(spec, storage=store, executor="local", raise_on_failure=True)
        print(
            "   set-up (corpus, tokenizer, packing, teacher, first cache): "
            f"{time.perf_counter() - started:.1f} s"
        )
        sequences = record.step("tokens").outputs["sequences"]
        teacher = record.step("teacher").outputs["model"]
        cache = record.step("cache").outputs["cache"]
        print(
            f"   teacher: {teacher['num_parameters']:,} parameters; "
            f"{cache['tokens']:,} tokens of split {args.split}"
        )
        plain_inference(
            store, sequences, teacher, args.split, args.k, args.batch, folder / "plain"
        )  # warm-up
        step_s, plain_s = [], []
        for _ in range(args.repeats):
            again = run(
                spec,
                storage=store,
                executor="local",
                overrides=["steps.cache.cache=recompute"],
                raise_on_failure=True,
            )
            step_s.append(float(again.step("cache").seconds))
            began = time.perf_counter()
            tokens = plain_inference(
                store, sequences, teacher, args.split, args.k, args.batch, folder / "plain"
            )
            plain_s.append(time.perf_counter() - began)
            print(f"   step {step_s[-1]:.2f} s, plain {plain_s[-1]:.2f} s ({load()})", flush=True)
        assert tokens == cache["tokens"], (tokens, cache["tokens"])
        plain_bytes = (folder / "plain" / "plain.parquet").stat().st_size
        step_rate, plain_rate = tokens / median(step_s), tokens / median(plain_s)
        print(f"\nmedians of {args.repeats}; {load()}")
        print(f"   lm_inference step: {step_rate:,.0f} tokens/s ({median(step_s):.2f} s)")
        print(f"   plain loop:        {plain_rate:,.0f} tokens/s ({median(plain_s):.2f} s)")
        print(f"   ratio step/plain:  {step_rate / plain_rate:.2f} (goal >= 0.8)")
        paired = [p / s for s, p in zip(step_s, plain_s, strict=True)]  # same load, side by side
        print(f"   paired ratios:     {', '.join(f'{r:.2f}' for r in paired)}")
        print(
            f"   bytes/token: cache {cache['bytes_per_token']:.2f}, "
            f"plain file {plain_bytes / tokens:.2f}"
        )


if __name__ == "__main__":
    main()
