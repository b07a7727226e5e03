"""`seqkd`'s generation loop against transformers' own `generate` (issue 18, SeqKD).

The recipe's teacher shape (pipelines/lm_kd.yaml: a llama of 4 layers, width 128, 4 heads,
vocabulary 2,048, fresh seeded weights: the speed of a pass does not depend on what the
weights learnt) continues ``--batch`` prompts of ``--prompt`` random ids by ``--new`` tokens,
sampled as the recipe samples (temperature 0.8, top-k 50). Alternating ``--repeats`` times, on
one torch thread:

- ours: `components.lm.generation.continue_prompts` (its own loop over the key/value cache,
  draws from a seeded `torch.Generator`, stop at the end id);
- theirs: ``net.generate(do_sample=True, temperature=0.8, top_k=50, max_new_tokens=...)``.

Reported: new tokens per second of each (median over repeats) and their ratio. No end id is
drawn in practice from fresh weights, so both write ``--new`` tokens per prompt.

Run: ``python benchmarks/seqkd_generation.py`` (about a minute on 2 busy cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _bench import header, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    header("seqkd generation: our loop vs transformers generate")

    import torch

    from components.lm.generation import batch_generator, continue_prompts
    from components.lm.models import build_causal_lm
    from schemas.kd.lm_report import Sampling

    torch.set_num_threads(1)
    spec = {"arch": "causal_lm", "layers": 4, "width": 128, "heads": 4, "max_positions": 128}
    net = build_causal_lm({**spec, "vocab_size": 2048}, seed=0).eval().net
    prompts = torch.randint(
        2, 2048, (args.batch, args.prompt), generator=torch.Generator().manual_seed(0)
    )
    sampling = Sampling(method="sample", temperature=0.8, top_k=50)

    def ours() -> int:
        new, _ = continue_prompts(
            net, prompts, args.new, sampling, generator=batch_generator(0, 0), stop_id=0
        )
        return sum(len(n) for n in new)

    def theirs() -> int:
        with torch.inference_mode():
            out = net.generate(
                prompts,
                do_sample=True,
                temperature=0.8,
                top_k=50,
                max_new_tokens=args.new,
                eos_token_id=0,
                pad_token_id=1,
            )
        return int((out[:, args.prompt :] != 1).sum())

    rates: dict[str, list[float]] = {"ours": [], "transformers": []}
    for _ in range(args.repeats):
        for name, action in (("ours", ours), ("transformers", theirs)):
            started = time.perf_counter()
            tokens = action()
            rates[name].append(tokens / (time.perf_counter() - started))
    for name, values in rates.items():
        shown = ", ".join(f"{v:,.0f}" for v in values)
        print(f"   {name:<13} {median(values):>8,.0f} new tokens/s (repeats: {shown})")
    ratio = median(rates["ours"]) / median(rates["transformers"])
    print(f"   ratio ours / transformers: {ratio:.2f}")


if __name__ == "__main__":
    main()
