"""Bad text input, refused with the file (and line, column or field) named, no traceback, and
nothing written: before anything runs (exit 2) where a listing, a footer or the config tells;
by the step that reads the text (exit 1, the step failed) where only the text tells.

Each case notes what happened before the check existed (the text path is new: "before" is what
the libraries underneath would have done without it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.support.cli import kdorch
from tests.support.text import documents, write_jsonl, write_parquet, write_txt

TRAIN_TOKENIZER = {
    "id": "tokenizer",
    "component": "tokenizer",
    "inputs": {"corpus": "corpus.corpus"},
}


def pipeline(tmp_path: Path, corpus: dict, *more: dict) -> Path:
    steps = [{"id": "corpus", "component": "corpus", "config": corpus}, *more]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "steps": steps}, sort_keys=False))
    return path


def refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], path: Path, code: int = 2) -> str:
    """`kdorch validate` (when ``code`` is 2) and `kdorch run` fail with ``code``, no traceback,
    no data in the store; the run's stderr, on one line."""
    store = tmp_path / "store"
    if code == 2:
        assert kdorch("validate", str(path)) == 2
        capsys.readouterr()
    result = kdorch("run", str(path), "--executor", "local", "--storage", str(store))
    err = capsys.readouterr().err
    assert result == code and "Traceback" not in err, err
    written = [p for p in store.glob("objects/**/*") if p.is_file()]
    assert not written, f"a refused pipeline wrote {written}"
    return " ".join(err.split())


def test_an_empty_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: a corpus of no documents, then a tokenizer trained on nothing.
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "a.txt").write_text("")
    (folder / "b.txt").write_text("")
    err = refused(tmp_path, capsys, pipeline(tmp_path, {"uri": str(folder)}))
    assert "steps[0] (corpus).config.uri" in err
    assert f"corpus {folder} is empty: its files hold no documents" in err
    table = pa.table({"text": pa.array([], pa.string())})
    pq.write_table(table, tmp_path / "none.parquet")
    err = refused(tmp_path, capsys, pipeline(tmp_path, {"uri": str(tmp_path / "none.parquet")}))
    assert "none.parquet is empty: its files hold no documents" in err


def test_too_few_documents_for_the_splits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: a test split of no documents, found when evaluation had nothing to score.
    folder = write_txt(tmp_path / "txt", documents(12))
    err = refused(tmp_path, capsys, pipeline(tmp_path, {"uri": str(folder)}))
    assert "steps[0] (corpus).config.splits" in err
    assert (
        f"corpus {folder} has 12 documents, too few for splits {{train: 0.9, val: 0.05, test: "
        "0.05}: split 'test' would get none. Add documents, or use fewer splits or larger "
        "fractions" in err
    )


def test_a_text_column_that_is_not_a_string(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: pyarrow's "Expected bytes, got a 'int' object" in the middle of the read.
    table = pa.table({"text": list(range(30)), "body": [f"doc {i}" for i in range(30)]})
    pq.write_table(table, tmp_path / "t.parquet")
    err = refused(tmp_path, capsys, pipeline(tmp_path, {"uri": str(tmp_path / "t.parquet")}))
    assert "steps[0] (corpus).config.text_column" in err
    assert (
        f"{tmp_path}/t.parquet: column 'text' is int64, not a string: `text_column` must name a "
        "string column (string columns: body)" in err
    )
    config = {"uri": str(tmp_path / "t.parquet"), "text_column": "bdy"}
    err = refused(tmp_path, capsys, pipeline(tmp_path, config))
    assert f"{tmp_path}/t.parquet has no column 'bdy' (columns: text, body)" in err


def test_a_source_without_text_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.md").write_text("# not a corpus file\n")
    err = refused(tmp_path, capsys, pipeline(tmp_path, {"uri": str(tmp_path / "src")}))
    assert "is a folder without text files (.txt, .jsonl, .parquet or .pq)" in err
    err = refused(tmp_path, capsys, pipeline(tmp_path, {"uri": str(tmp_path / "nope")}))
    assert f"corpus source {tmp_path}/nope does not exist" in err


def test_a_jsonl_line_without_the_text_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: KeyError: 'text'.
    docs = documents(40)
    path = write_jsonl(tmp_path / "d" / "docs.jsonl", docs)
    lines = path.read_text().splitlines()
    lines[36] = json.dumps({"path": "x.py", "body": "print(1)"})
    path.write_text("\n".join(lines) + "\n")
    err = refused(tmp_path, capsys, pipeline(tmp_path, {"uri": str(path)}), code=1)
    assert "step 'corpus' (corpus" in err
    assert (
        f"{path} line 37 has no field 'text' (fields: path, body); name the text's field with "
        "`text_field`" in err
    )
    lines[36] = '{"text": "unterminated'
    path.write_text("\n".join(lines) + "\n")
    err = refused(tmp_path, capsys, pipeline(tmp_path, {"uri": str(path)}), code=1)
    assert f"{path} line 37 is not valid JSON" in err
    lines[36] = json.dumps({"text": 42})
    path.write_text("\n".join(lines) + "\n")
    err = refused(tmp_path, capsys, pipeline(tmp_path, {"uri": str(path)}), code=1)
    assert f"{path} line 37: field 'text' is not a string (int)" in err


def test_text_that_is_not_utf8_and_documents_all_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_txt(tmp_path / "txt", documents(30))
    (folder / "doc-0007.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    err = refused(tmp_path, capsys, pipeline(tmp_path, {"uri": str(folder)}), code=1)
    assert f"{folder}/doc-0007.txt is not UTF-8 text (byte 3: invalid continuation byte)" in err
    path = write_jsonl(tmp_path / "e.jsonl", [(f"{i}.py", "") for i in range(30)])
    err = refused(tmp_path, capsys, pipeline(tmp_path, {"uri": str(path)}), code=1)
    assert f"corpus {path} holds no text: its 30 documents are all empty" in err


def test_tokenizer_and_packing_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: tokenizers trains a 200-id "BPE" without all 256 bytes (texts then lose
    # characters); seq_len 1 gives rows with no target to predict from an attended context.
    parquet = write_parquet(tmp_path / "d.parquet", documents(40))
    corpus = {"uri": str(parquet)}
    small = {**TRAIN_TOKENIZER, "config": {"vocab_size": 200}}
    err = refused(tmp_path, capsys, pipeline(tmp_path, corpus, small))
    assert "steps[1] (tokenizer).config.vocab_size" in err
    assert (
        "vocab_size is too small for a byte-level BPE: it needs the 256 byte symbols and 2 "
        "special tokens (<|endoftext|>, <|pad|>), so at least 258 (got 200)" in err
    )
    pack = {
        "id": "tokens",
        "component": "pack_tokens",
        "inputs": {"corpus": "corpus.corpus", "tokenizer": "tokenizer.tokenizer"},
        "config": {"seq_len": 1},
    }
    err = refused(tmp_path, capsys, pipeline(tmp_path, corpus, TRAIN_TOKENIZER, pack))
    assert "steps[2] (tokens).config.seq_len" in err
    assert "seq_len must be at least 2: a row holds seq_len + 1 ids" in err
    assert "positions to attend over (got 1)" in err


def test_tokenizer_sources_and_splits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parquet = write_parquet(tmp_path / "d.parquet", documents(40))
    corpus = {"uri": str(parquet)}
    wrong_split = {**TRAIN_TOKENIZER, "config": {"train_split": "trian"}}
    err = refused(tmp_path, capsys, pipeline(tmp_path, corpus, wrong_split))
    assert "steps[1] (tokenizer).config.train_split" in err
    assert "the corpus of step 'corpus' has no split 'trian' (splits: train, val, test)" in err
    assert "did you mean 'train'?" in err
    unconnected = {"id": "tokenizer", "component": "tokenizer"}
    err = refused(tmp_path, capsys, pipeline(tmp_path, corpus, unconnected))
    assert "source 'train' learns from a corpus, and input `corpus` is not connected" in err
    missing = {"id": "tokenizer", "component": "tokenizer", "config": {"source": "file"}}
    missing["config"]["path"] = str(tmp_path / "nope.json")
    err = refused(tmp_path, capsys, pipeline(tmp_path, corpus, missing))
    assert "steps[1] (tokenizer).config.path" in err
    assert f"tokenizer {tmp_path}/nope.json does not exist" in err
    (tmp_path / "hf").mkdir()
    missing["config"]["path"] = str(tmp_path / "hf")
    err = refused(tmp_path, capsys, pipeline(tmp_path, corpus, missing))
    assert f"{tmp_path}/hf holds no tokenizer.json" in err
    (tmp_path / "hf" / "tokenizer.json").write_text('{"model": "nothing"}')
    err = refused(tmp_path, capsys, pipeline(tmp_path, corpus, missing))
    assert f"{tmp_path}/hf/tokenizer.json is not a tokenizer.json of Hugging Face tokenizers" in err


def test_validation_imports_neither_torch_nor_tokenizers(tmp_path: Path) -> None:
    parquet = write_parquet(tmp_path / "d.parquet", documents(40))
    path = pipeline(tmp_path, {"uri": str(parquet)}, TRAIN_TOKENIZER)
    code = (
        "import sys; from orchestrator import validate; "
        f"validate({str(path)!r}); print('torch' in sys.modules, 'tokenizers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False False", out.stderr
