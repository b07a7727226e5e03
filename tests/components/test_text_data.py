"""The text path on real text (files of the Python standard library): a corpus split by
document, a byte-level BPE trained on its train split or loaded from a file, and packed token
sequences; their keys follow the source's content (local and S3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from components.text.artifacts import (
    PartWriter,
    read_corpus,
    read_sequences,
    read_tokenizer,
    split_files,
)
from components.text.bpe import PROBE, train_bpe
from components.text.documents import split_counts
from components.text.packing import Packer, segment_ids, target_mask
from orchestrator import ArtifactStore, plan, run
from schemas.kd.text import TextCorpus, TextTokenizer, TokenizerConfig, TokenSequences
from tests.support.text import documents, text_pipeline, write_jsonl, write_parquet, write_txt

SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}


def outputs(store: Path, **configs: dict) -> dict[str, dict]:
    """Run corpus (-> tokenizer -> pack_tokens) locally; each step's outputs."""
    record = run(text_pipeline(**configs).spec, storage=str(store), executor="local")
    for step in record.steps:
        assert step.error is None, step.error
    return {s.step_id: s.outputs for s in record.steps}


def corpus_of(store: Path, **config: object) -> TextCorpus:
    return TextCorpus.model_validate(outputs(store, corpus=config)["corpus"]["corpus"])


def split_ids(store: Path, corpus: TextCorpus) -> dict[str, list[int]]:
    return {
        s: read_corpus(ArtifactStore(str(store)), corpus, s).column("doc_id").to_pylist()
        for s in corpus.splits
    }


def test_documents_are_split_by_document_seeded_and_disjoint(tmp_path: Path) -> None:
    docs = documents(40)
    folder = write_txt(tmp_path / "txt", docs)
    a = corpus_of(tmp_path / "a", uri=str(folder), splits=SPLITS, seed=3)
    b = corpus_of(tmp_path / "b", uri=str(folder), splits=SPLITS, seed=3)
    assert a.data_version == b.data_version  # same source, fractions and seed: same bytes
    assert {s: x.documents for s, x in a.splits.items()} == {"train": 24, "val": 8, "test": 8}
    ids = split_ids(tmp_path / "a", a)
    every = sorted(i for part in ids.values() for i in part)
    assert every == list(range(40))  # each document in exactly one split
    for split, part in ids.items():
        assert part == sorted(part)  # doc_id order within a split
        texts = read_corpus(ArtifactStore(str(tmp_path / "a")), a, split).column("text")
        assert texts.to_pylist() == [docs[i][1] for i in part]  # text exactly as read
    assert a.splits["train"].characters == sum(len(docs[i][1]) for i in ids["train"])
    other = split_ids(tmp_path / "c", corpus_of(tmp_path / "c", uri=str(folder), splits=SPLITS))
    assert other["test"] != ids["test"]  # another seed, other documents


def test_jsonl_and_parquet_give_the_same_split(tmp_path: Path) -> None:
    docs = documents(30)
    jsonl = write_jsonl(tmp_path / "d" / "docs.jsonl", docs, field="body")
    parquet = write_parquet(tmp_path / "docs.parquet", docs)
    a = corpus_of(tmp_path / "a", uri=str(jsonl.parent), text_field="body", splits=SPLITS)
    b = corpus_of(tmp_path / "b", uri=str(parquet), splits=SPLITS)
    assert split_ids(tmp_path / "a", a) == split_ids(tmp_path / "b", b)
    assert a.splits == b.splits
    few = corpus_of(tmp_path / "c", uri=str(parquet), splits=SPLITS, max_documents=10)
    assert few.documents == 30 and sum(s.documents for s in few.splits.values()) == 10


def test_split_counts_round_by_largest_remainder() -> None:
    assert split_counts(21, {"train": 0.9, "val": 0.05, "test": 0.05}, "c") == {
        "train": 19,
        "val": 1,
        "test": 1,
    }
    assert split_counts(7, {"a": 0.5, "b": 0.5}, "c") == {"a": 4, "b": 3}
    with pytest.raises(ValueError, match=r"has 10 documents, too few .* split 'test' would"):
        split_counts(10, {"train": 0.9, "val": 0.05, "test": 0.05}, "c")


def test_tokenizer_learns_from_the_train_split_only_and_round_trips(tmp_path: Path) -> None:
    docs = documents(30, under="email/")
    folder = write_txt(tmp_path / "txt", docs)
    tokenizer = {"vocab_size": 600, "min_frequency": 2}
    out = outputs(
        tmp_path / "s", corpus={"uri": str(folder), "splits": SPLITS}, tokenizer=tokenizer
    )
    store = ArtifactStore(str(tmp_path / "s"))
    corpus = TextCorpus.model_validate(out["corpus"]["corpus"])
    ref = TextTokenizer.model_validate(out["tokenizer"]["tokenizer"])
    assert (ref.origin, ref.vocab_size, ref.eos_id, ref.pad_id) == ("trained", 600, 0, 1)
    assert ref.byte_level and ref.trained_on == corpus.data_version
    loaded = read_tokenizer(store, ref)
    train = read_corpus(store, corpus, "train").column("text").to_pylist()
    direct = train_bpe([train], TokenizerConfig(vocab_size=600), len(train))
    assert loaded.to_str() == direct.to_str()  # the train split, and nothing else
    again = outputs(
        tmp_path / "t", corpus={"uri": str(folder), "splits": SPLITS}, tokenizer=tokenizer
    )
    assert again["tokenizer"]["tokenizer"]["data_version"] == ref.data_version  # deterministic
    for text in [*read_corpus(store, corpus, "test").column("text").to_pylist(), PROBE]:
        ids = loaded.encode(text, add_special_tokens=False).ids
        assert loaded.decode(ids, skip_special_tokens=False) == text


def test_packed_rows_hold_every_document_and_mark_its_start(tmp_path: Path) -> None:
    docs = documents(24)
    docs[3] = (docs[3][0], "x = '<|endoftext|>'  # a special token's spelling is text\n")
    folder = write_txt(tmp_path / "txt", docs)
    out = outputs(
        tmp_path / "s",
        corpus={"uri": str(folder), "splits": {"train": 0.5, "test": 0.5}},
        tokenizer={"vocab_size": 400},
        pack={"seq_len": 16, "batch_documents": 5},
    )
    store = ArtifactStore(str(tmp_path / "s"))
    corpus = TextCorpus.model_validate(out["corpus"]["corpus"])
    seqs = TokenSequences.model_validate(out["tokens"]["sequences"])
    tokenizer = read_tokenizer(store, TextTokenizer.model_validate(out["tokenizer"]["tokenizer"]))
    for split in ("train", "test"):
        table = read_sequences(store, seqs, split)
        rows = table.column("tokens").combine_chunks().flatten().to_numpy().reshape(-1, 17)
        length = table.column("length").to_numpy()
        assert table.column("row_id").to_pylist() == list(range(len(rows)))
        assert (length[:-1] == 17).all() and (rows[-1, length[-1] :] == seqs.pad_id).all()
        assert (rows[1:, 0] == rows[:-1, -1]).all()  # a row's last id is the next row's first
        stream = np.concatenate([rows[0], *(r[1:] for r in rows[1:])])[: 16 * len(rows) + 1]
        stream = stream[: 16 * (len(rows) - 1) + length[-1]]
        texts = read_corpus(store, corpus, split).column("text").to_pylist()
        tokenizer.encode_special_tokens = True  # '<|endoftext|>' in a text is text
        ids = [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
        assert stream.tolist() == [i for doc in ids for i in [*doc, seqs.eos_id]]
        assert (stream == seqs.eos_id).sum() == len(texts)  # an end id only at an end
        pieces = np.split(stream, np.flatnonzero(stream == seqs.eos_id) + 1)[:-1]
        decoded = [tokenizer.decode(p[:-1].tolist(), skip_special_tokens=False) for p in pieces]
        assert decoded == texts  # text -> ids -> text, through the packed rows
        starts = np.concatenate([[0], np.flatnonzero(stream == seqs.eos_id)[:-1] + 1])
        marked = [
            16 * r + int(p)
            for r, row in enumerate(table.column("doc_starts").to_pylist())
            for p in row
        ]
        assert sorted(set(marked)) == starts.tolist()
        info = seqs.splits[split]
        assert info.tokens == len(stream) and info.documents == len(texts)
        assert info.sequences == len(rows) and info.padding == 17 - length[-1]
    assert 0 < seqs.bytes_per_token() < 4
    assert len(split_files(store, seqs, "train")) == 1


def test_packer_rows_boundaries_and_masks() -> None:
    packer = Packer(seq_len=4, eos_id=0, pad_id=1)
    first = packer.add([[5, 6, 7], [8]])  # stream 5 6 7 0 8 0: one full row
    second = packer.add([[9, 10, 11, 12, 13]])  # ... 9 10 11 12 13 0
    last = packer.finish()
    assert first is not None and second is not None and last is not None
    table = pa.concat_tables([first, second, last])
    assert table.column("tokens").to_pylist() == [
        [5, 6, 7, 0, 8],
        [8, 0, 9, 10, 11],
        [11, 12, 13, 0, 1],
    ]
    assert table.column("doc_starts").to_pylist() == [[0, 4], [0, 2], []]
    assert table.column("length").to_pylist() == [5, 5, 4]
    assert (packer.tokens, packer.documents, packer.padding, packer.rows) == (12, 3, 1, 3)
    length = table.column("length").to_numpy()
    assert segment_ids(table.column("doc_starts"), length, 5).tolist() == [
        [1, 1, 1, 1, 2],
        [1, 1, 2, 2, 2],
        [0, 0, 0, 0, -1],
    ]
    assert target_mask(table.column("doc_starts"), length, 5).tolist() == [
        [True, True, True, False],  # 0 -> 8 crosses into the next document
        [True, False, True, True],
        [True, True, True, False],  # the last target is padding
    ]
    assert target_mask(table.column("doc_starts"), length, 5, across_documents=True)[0, 3]
    whole = Packer(seq_len=4, eos_id=0, pad_id=1)
    rows = [whole.add([[5, 6, 7], [8], [9, 10, 11, 12, 13]]), whole.finish()]
    assert pa.concat_tables([r for r in rows if r is not None]).equals(table)  # batch-free


def test_part_files_are_bounded_and_deterministic(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "s"))
    table = pa.table({"doc_id": list(range(10)), "text": [f"text {i}" * 50 for i in range(10)]})
    writers = [PartWriter(store, f"out{k}", part_bytes=1000) for k in range(2)]
    for writer in writers:
        for i in range(10):
            writer.add(table.slice(i, 1), 350)
        writer.flush()
    assert writers[0].parts == 4 and writers[0].rows == 10  # 3 rows of 350 bytes fill a part
    names = [f"part-{i:05d}.parquet" for i in range(4)]
    assert sorted(p.name for p in (tmp_path / "s" / "out0").iterdir()) == names
    for name in names:
        assert (tmp_path / "s/out0" / name).read_bytes() == (
            tmp_path / "s/out1" / name
        ).read_bytes()


def test_a_tokenizer_file_or_folder_loads_and_its_content_is_its_key(tmp_path: Path) -> None:
    docs = documents(20)
    folder = write_txt(tmp_path / "txt", docs)
    corpus = {"uri": str(folder), "splits": {"train": 0.5, "test": 0.5}}
    out = outputs(tmp_path / "s", corpus=corpus, tokenizer={"vocab_size": 400})
    trained = TextTokenizer.model_validate(out["tokenizer"]["tokenizer"])
    saved = tmp_path / "hf"
    saved.mkdir()
    (saved / "tokenizer.json").write_bytes(
        (tmp_path / "s" / trained.path / "tokenizer.json").read_bytes()
    )
    (saved / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    loaded_cfg = {"source": "file", "path": str(saved)}
    pack = {"seq_len": 32}
    store = str(tmp_path / "t")
    first = outputs(Path(store), corpus=corpus, tokenizer=loaded_cfg, pack=pack)
    loaded = TextTokenizer.model_validate(first["tokenizer"]["tokenizer"])
    assert (loaded.origin, loaded.eos_id, loaded.pad_id, loaded.vocab_size) == ("loaded", 0, 0, 400)
    p = text_pipeline(corpus=corpus, tokenizer=loaded_cfg, pack=pack)
    assert {s.action for s in plan(p.spec, storage=store)} == {"cached"}
    (saved / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|pad|>"}))
    planned = {s.step_id: s for s in plan(p.spec, storage=store)}
    assert planned["corpus"].action == "cached"
    assert planned["tokenizer"].reason.startswith("external data changed")
    only_file = {"source": "file", "path": str(saved / "tokenizer.json"), "eos_token": "<|pad|>"}
    again = outputs(tmp_path / "u", corpus=corpus, tokenizer=only_file)
    assert again["tokenizer"]["tokenizer"]["eos_id"] == 1


def test_a_changed_file_changes_the_corpus_key(tmp_path: Path) -> None:
    docs = documents(12)
    folder = write_txt(tmp_path / "txt", docs)
    p = text_pipeline(corpus={"uri": str(folder), "splits": {"train": 0.5, "test": 0.5}})
    store = str(tmp_path / "s")
    first = run(p.spec, storage=store, executor="local")
    (folder / "doc-0004.txt").write_text(docs[4][1])  # the same text, written again
    assert [s.action for s in plan(p.spec, storage=store)] == ["cached"]
    (folder / "doc-0004.txt").write_text(docs[4][1] + "\n# one more line\n")
    (planned,) = plan(p.spec, storage=store)
    assert planned.action == "run" and planned.reason.startswith("external data changed")
    second = run(p.spec, storage=store, executor="local")
    assert second.step("corpus").key != first.step("corpus").key


def test_a_corpus_on_s3(tmp_path: Path, s3_server: dict) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server["storage_options"])
    docs = documents(20)
    local = write_jsonl(tmp_path / "docs.jsonl", docs)
    fs.put(str(local), f"{s3_server['bucket']}/corpus/a.jsonl")
    fs.put(
        str(write_txt(tmp_path / "t", docs[:3]) / "doc-0000.txt"),
        f"{s3_server['bucket']}/corpus/b.txt",
    )
    config = {
        "uri": f"s3://{s3_server['bucket']}/corpus",
        "storage_options": {"endpoint_url": s3_server["endpoint"]},  # keys: AWS_* environment
        "splits": {"train": 0.5, "test": 0.5},
    }
    store = tmp_path / "s"
    corpus = corpus_of(store, **config)
    assert corpus.documents == 21 and corpus.source == config["uri"]
    texts = {
        t
        for s in corpus.splits
        for t in read_corpus(ArtifactStore(str(store)), corpus, s).column("text").to_pylist()
    }
    assert texts == {d[1] for d in docs}
    p = text_pipeline(corpus=config)
    assert [s.action for s in plan(p.spec, storage=str(store))] == ["cached"]
    fs.pipe(f"{s3_server['bucket']}/corpus/b.txt", b"print('other text')\n")
    assert [s.action for s in plan(p.spec, storage=str(store))] == ["run"]
