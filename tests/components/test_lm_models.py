"""Causal LMs from transformers behind the model interface: built from a few knobs (llama and
gpt2), loaded from save_pretrained folders as data (local and on a real S3 server), saved and
rebuilt as kdorch checkpoints, shipped by pickle."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import torch

from components.artifacts.checkpoints import load_model
from components.lm.models import CausalLM, build_causal_lm, language_model
from components.lm.specs import LMError, spec_identity
from components.models.profile import count_parameters
from components.models.zoo import build_model
from orchestrator import ArtifactStore, run
from orchestrator.storage.verified import CorruptArtifact, forget_verified
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.lm import CausalLMSpec
from schemas.kd.text import TextTokenizer
from tests.support.lm import TINY, corpus_file, hf_model, lm_steps, saved_folder
from tests.support.text import text_pipeline

IDS = torch.tensor([[5, 17, 42, 7, 99, 3, 250, 11], [0, 1, 2, 3, 4, 5, 6, 7]])


def spec(**knobs: object) -> CausalLMSpec:
    return CausalLMSpec.model_validate({**TINY, "vocab_size": 300, "max_positions": 64, **knobs})


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_built_models_give_logits_hidden_states_and_are_seeded(family: str) -> None:
    knobs = {"family": family} if family == "llama" else {"family": family, "kv_heads": None}
    model = build_model(spec(**knobs), seed=3)
    assert isinstance(model, CausalLM) and model.label() == f"causal_lm {family} 2x64"
    out = model.forward_features(IDS)
    assert out.logits.shape == (2, 8, 300) and out.features.shape == (2, 8, 64)
    assert torch.equal(model(IDS), out.logits)
    again = build_model(spec(**knobs), seed=3)
    assert torch.equal(again(IDS), out.logits)  # the seed alone decides the weights
    assert not torch.equal(build_model(spec(**knobs), seed=4)(IDS), out.logits)
    kept = model.intermediate(IDS, ["layer0", "layer1", "penultimate", "logits"])
    assert kept["layer0"].shape == (2, 8, 64) and torch.equal(kept["logits"], out.logits)
    untied = build_model(spec(**knobs, tied_embeddings=False), seed=3)
    assert count_parameters(untied) - count_parameters(model) == 300 * 64  # tied: counted once


def test_a_model_refuses_what_its_embedding_would_fail_on() -> None:
    model = build_model(spec(family="gpt2", kv_heads=None), seed=0)
    with pytest.raises(ValueError, match=r"reads at most 64 positions, got sequences of 65"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids from 0 to 300, outside its vocabulary"):
        model(torch.tensor([[0, 300]]))
    with pytest.raises(ValueError, match=r"reads token ids of shape \(B, T\), integers"):
        model(torch.zeros(2, 8))


def test_a_model_pickles_and_copies_after_running() -> None:
    # transformers installs forward hooks that are local functions: pickle refuses them.
    model = build_model(spec(), seed=1).eval()
    expected = model(IDS)  # the hooks are installed by now
    shipped = pickle.loads(pickle.dumps(model))
    assert isinstance(shipped, CausalLM) and not shipped.training
    assert torch.equal(shipped(IDS), expected)
    assert torch.equal(copy.deepcopy(model)(IDS), expected)


def test_a_spec_needs_its_vocabulary_from_the_tokenizer() -> None:
    with pytest.raises(LMError, match=r"vocab_size must be set before building"):
        build_causal_lm(spec(vocab_size=None))
    tokenizer = TextTokenizer(
        path="t", data_version="ab" * 32, origin="trained", vocab_size=280, eos_token="<e>",
        eos_id=0, pad_token="<p>", pad_id=1, byte_level=True,
    )  # fmt: skip
    with pytest.raises(LMError, match=r"has a vocabulary of 300 ids but the tokenizer .* has 280"):
        language_model(spec(), tokenizer, seed=0)
    model = language_model(spec(vocab_size=None), tokenizer, seed=0)
    assert model.vocab_size == 280 and model.spec.tokenizer is not None
    assert model.spec.tokenizer.version == "ab" * 32
    assert model.net.config.eos_token_id == 0 and model.net.config.pad_token_id == 1


def imported(tmp_path: Path, folder: str, **options: object) -> tuple[ModelCheckpoint, dict]:
    """corpus -> tokenizer (300 ids) -> lm_model loading ``folder``, run locally."""
    steps = lm_steps(corpus_file(tmp_path), model={"path": folder, **options})[:4]
    store = tmp_path / "store"
    pipeline = text_pipeline(steps[0]["config"], steps[1]["config"])
    pipeline.add("teacher", "lm_model", config=steps[3]["config"], inputs=steps[3]["inputs"])
    record = run(pipeline.spec, storage=str(store), executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    checkpoint = ModelCheckpoint.model_validate(record.step("teacher").outputs["model"])
    document = json.loads((store / checkpoint.path / "model.json").read_text())
    return checkpoint, document


@pytest.mark.parametrize(
    ("family", "options"),
    [
        ("llama", {}),
        ("llama", {"max_shard_size": "100KB"}),  # sharded safetensors with an index
        ("gpt2", {"pickle": True}),  # pytorch_model.bin (older folders), read weights_only
    ],
)
def test_a_save_pretrained_folder_becomes_a_checkpoint_that_rebuilds_anywhere(
    tmp_path: Path, family: str, options: dict
) -> None:
    source = hf_model(family=family, seed=7)
    folder = saved_folder(tmp_path / "folder", source, **options)
    checkpoint, document = imported(tmp_path, str(folder))
    assert document["imported"]["path"] == str(folder)
    assert checkpoint.model.arch == "causal_lm" and checkpoint.model.path is None
    assert checkpoint.model.config is not None  # the folder's config, as data
    for name in list(folder.iterdir()):  # the checkpoint no longer needs the folder
        name.unlink()
    model, _ = load_model(ArtifactStore(str(tmp_path / "store")), checkpoint)
    ids = IDS.clamp(max=299)
    with torch.no_grad():
        assert torch.allclose(model(ids), source(input_ids=ids).logits, atol=1e-5)
    assert checkpoint.num_parameters == count_parameters(source)


def test_a_folder_on_s3_loads_and_its_content_is_its_identity(
    tmp_path: Path, s3_server: dict
) -> None:
    import s3fs

    source = hf_model(seed=2)
    folder = saved_folder(tmp_path / "folder", source)
    fs = s3fs.S3FileSystem(**s3_server["storage_options"])
    uri = f"s3://{s3_server['bucket']}/models/tiny"
    for file in folder.iterdir():
        fs.put_file(str(file), f"{uri}/{file.name}")
    options = {"endpoint_url": s3_server["endpoint"], "key": "testing", "secret": "testing"}
    checkpoint, _ = imported(tmp_path, uri, storage_options=options)
    model, _ = load_model(ArtifactStore(str(tmp_path / "store")), checkpoint)
    with torch.no_grad():
        assert torch.allclose(model(IDS), source(input_ids=IDS).logits, atol=1e-5)
    s3_spec = CausalLMSpec(path=uri, storage_options=options)
    before = spec_identity(s3_spec)
    fs.pipe_file(f"{uri}/config.json", (folder / "config.json").read_bytes() + b"\n")
    assert spec_identity(s3_spec)["folder"] != before["folder"]  # rewritten: a new key


def test_a_checkpoint_flipped_on_disk_is_refused(tmp_path: Path) -> None:
    checkpoint, _ = imported(tmp_path, str(saved_folder(tmp_path / "f", hf_model())))
    weights = tmp_path / "store" / checkpoint.path / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    forget_verified()  # this process sealed it: as a fresh reader would
    with pytest.raises(CorruptArtifact, match=r"weights\.pt"):
        load_model(ArtifactStore(str(tmp_path / "store")), checkpoint)


def test_a_model_whose_logits_are_transformed_after_its_head_is_refused(tmp_path: Path) -> None:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
        final_logit_softcapping=30.0,
    )  # fmt: skip
    folder = saved_folder(tmp_path / "capped", Gemma2ForCausalLM(config))
    with pytest.raises(LMError, match="its logits are not its output layer applied to its last"):
        build_causal_lm(CausalLMSpec(path=str(folder)), pretrained=True)
