"""The `seqkd` step's work: sequence-level KD's data (Kim & Rush, 2016). The teacher continues
prompts cut from a split of the sequences, and its text replaces that split: a student trained
on it with plain next-token cross-entropy (`train`) learns the teacher's mode rather than the
corpus's.

- **Prompts**: `components.lm.generation.cut_prompts` (seeded windows within one document).
- **Generation**: `components.lm.generation.continue_prompts`, ``batch_size`` prompts at a
  time, each batch's draws seeded by (seed, batch index).
- **Packing**: each sample (its prompt, then what the teacher wrote) is a document, packed by
  `pack_tokens`' rules (`components.text.packing.Packer`: the end id after each, rows of
  ``seq_len + 1``, starts in ``doc_starts``, the last row padded) and written part by part as
  it comes: memory holds one batch and one output part. The prompts stay in the text, not
  masked (they are real text the teacher was given, and `train` counts every target). The ids
  are packed as the teacher chose them, not decoded and re-encoded: a cut continuation may end
  inside a multi-byte character, and a re-encoding could tokenise otherwise than the teacher
  wrote. ``samples.md`` holds the first samples decoded, for people.
- **The other splits** (``copy_splits``, default all but the prompts') are copied file by
  file, verified: a student validates on real text.

What keys the artifact: the teacher's and the sequences' data versions and the config (prompts,
lengths, sampling, seed, batch size: a sampled batch depends on its shape).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from components.lm.generation import batch_generator, continue_prompts, cut_prompts
from components.lm.lm_checks import check_split, length_problems, lm_fit_problems, model_name
from components.lm.specs import positions_of
from orchestrator import StepContext
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.components.seqkd import SeqKDConfig
from schemas.kd.lm import CausalLMSpec
from schemas.kd.lm_report import GeneratedSequences
from schemas.kd.text import TextTokenizer, TokenSequences, TokenSplit

SAMPLES_FILE = "samples.md"
#: Samples decoded into ``samples.md``.
SHOWN = 5


def _checked(
    cfg: SeqKDConfig, teacher: ModelCheckpoint, sequences: TokenSequences, tokenizer: TextTokenizer
) -> None:
    check_split(sequences, cfg.split)
    for split in cfg.copy_splits or []:
        if split not in sequences.splits:
            raise ValueError(f"copy_splits: the sequences have no split '{split}'")
    spec = teacher.model
    what = model_name(spec, "the teacher")
    problems = lm_fit_problems(spec, sequences, tokenizer, what)
    if not problems and isinstance(spec, CausalLMSpec):
        positions = positions_of(spec, spec.config)
        at = ("prompt_tokens", "max_new_tokens")
        lengths = length_problems(positions, cfg.prompt_tokens, cfg.max_new_tokens, what, at)
        problems += [f"{field}: {message}" for message, field in lengths]
    if problems:
        raise ValueError("; ".join(problems))


def write_generated(
    ctx: StepContext,
    cfg: SeqKDConfig,
    teacher: ModelCheckpoint,
    sequences: TokenSequences,
    tokenizer: TextTokenizer,
) -> GeneratedSequences:
    """The teacher's samples as the step's ``sequences`` output (see the module docstring);
    nothing is written when an input does not fit.

    Raises:
        ValueError: a split the sequences lack or an empty one, a teacher of another
            tokenizer, prompts or continuations longer than the teacher reads, too few places
            for the prompts.
    """
    from components.artifacts.checkpoints import load_model
    from components.text.artifacts import removed_on_error

    _checked(cfg, teacher, sequences, tokenizer)
    count, length = cfg.prompts, cfg.prompt_tokens
    prompts = cut_prompts(
        ctx.store, sequences, cfg.split, count=count, length=length, seed=cfg.seed
    )
    model, _ = load_model(ctx.store, teacher)
    torch.set_num_threads(max(1, int(ctx.resources.num_cpus or 1)))
    copies = (
        cfg.copy_splits
        if cfg.copy_splits is not None
        else [s for s in sequences.splits if s != cfg.split]
    )
    with removed_on_error(ctx.store, ctx.output_path("sequences")) as path:
        split, stats = _generate(ctx, cfg, model.eval().net, prompts, sequences, tokenizer, path)
        for name in copies:
            from components.text.artifacts import split_files

            for file in split_files(ctx.store, sequences, name):
                ctx.store.write_bytes(f"{path}/{file}", ctx.store.read_file(sequences, file))
    splits = {cfg.split: split, **{s: sequences.splits[s] for s in copies}}
    kept = {"seq_len", "vocab_size", "eos_id", "pad_id", "tokenizer_version", "corpus_version"}
    asked = cfg.model_dump(include={"prompts", "prompt_tokens", "max_new_tokens", "seed"})
    made = {"generated_tokens": stats["generated"], "ended": stats["ended"]}
    where = {"path": path, "splits": splits}
    return GeneratedSequences(
        **sequences.model_dump(include=kept),
        **asked,
        **made,
        **where,
        teacher_version=teacher.data_version,
        source_version=sequences.data_version,
        prompt_split=cfg.split,
        sampling=cfg.sampler(),
    )


def _generate(
    ctx: StepContext,
    cfg: SeqKDConfig,
    net: Any,
    prompts: Any,
    sequences: TokenSequences,
    tokenizer: TextTokenizer,
    path: str,
) -> tuple[TokenSplit, dict[str, int]]:
    """Every batch generated, packed and written under ``path``/<split>; samples.md."""
    from components.text.artifacts import PartWriter, read_tokenizer
    from components.text.packing import Packer

    decoder = read_tokenizer(ctx.store, tokenizer)
    packer = Packer(sequences.seq_len, sequences.eos_id, sequences.pad_id)
    writer = PartWriter(ctx.store, f"{path}/{cfg.split}")
    row_bytes = 4 * (sequences.seq_len + 1)
    generated = ended = 0
    shown: list[str] = []
    started = time.perf_counter()
    sampling = cfg.sampler()
    for b, low in enumerate(range(0, len(prompts.ids), cfg.batch_size)):
        batch = torch.from_numpy(prompts.ids[low : low + cfg.batch_size])
        new, stops = continue_prompts(
            net,
            batch,
            cfg.max_new_tokens,
            sampling,
            generator=batch_generator(cfg.seed, b) if sampling.method == "sample" else None,
            stop_id=sequences.eos_id,
        )
        samples = [[*p, *n] for p, n in zip(batch.tolist(), new, strict=True)]
        generated += sum(len(n) for n in new)
        ended += sum(stops)
        for i in range(min(SHOWN - len(shown), len(samples))):
            shown.append(_sample_text(decoder, prompts, low + i, samples[i], cfg.prompt_tokens))
        table = packer.add(samples)
        if table is not None:
            writer.add(table, table.num_rows * row_bytes)
        if b % 10 == 0:
            ctx.log(
                "%d/%d prompts continued",
                min(low + cfg.batch_size, len(prompts.ids)),
                len(prompts.ids),
            )
    last = packer.finish()
    if last is not None:
        writer.add(last, row_bytes)
    writer.flush()
    seconds = time.perf_counter() - started
    ctx.log(
        "%d prompts: %s new tokens in %.1f s (%.0f tokens/s), %d ended before %d tokens",
        len(prompts.ids),
        f"{generated:,}",
        seconds,
        generated / max(seconds, 1e-9),
        ended,
        cfg.max_new_tokens,
    )
    header = f"# Samples of the teacher ({sampling.method}, seed {cfg.seed})\n\n"
    ctx.store.write_bytes(f"{path}/{SAMPLES_FILE}", (header + "\n".join(shown)).encode())
    split = TokenSplit(
        sequences=packer.rows,
        tokens=packer.tokens,
        documents=packer.documents,
        padding=packer.padding,
        id_bytes=writer.column_bytes.get("tokens", 0),
    )
    return split, {"generated": generated, "ended": ended}


def _sample_text(decoder: Any, prompts: Any, i: int, ids: list[int], cut: int) -> str:
    fence = "````"
    return (
        f"## Sample {i + 1} (prompt from {prompts.where(i)})\n\nprompt:\n\n{fence}\n"
        f"{decoder.decode(ids[:cut])}\n{fence}\n\nteacher:\n\n{fence}\n"
        f"{decoder.decode(ids[cut:])}\n{fence}\n"
    )
