"""Causal language models from Hugging Face `transformers`, behind the `KDModel` interface.

A `CausalLM` is the transformers model (``net``: ``LlamaForCausalLM``, ``GPT2LMHeadModel``, or
what a loaded folder's ``model_type`` names) read as the zoo's models are: `body` is the base
model (embeddings and blocks, up to the final norm) and its output, the last hidden states
(B, T, D), are the penultimate features (hint losses read them); ``classifier`` is the output
layer, so ``model(ids)`` gives logits (B, T, V) and `forward_features` all three.
`count_parameters` counts a tied output layer once.

`build_causal_lm` builds any spec (from the knobs, seeded; from a ``path`` folder with its
weights; from a checkpoint's ``config``); `language_model` is what a training step calls:
the spec fitted to its tokenizer (`components.lm.specs.fit_to_tokenizer`), then built. A model
loaded from a folder keeps its config as data (``config``, ``path`` dropped), so its checkpoint
rebuilds anywhere without the folder. `components.models.zoo.build_model` hands ``causal_lm``
specs here, so `components.artifacts.checkpoints` saves and loads them as any model.

Pickling (Ray ships models between processes) sends the spec and the weights and rebuilds:
a transformers model holds forward hooks that are local functions, which pickle refuses.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch
from pydantic import TypeAdapter
from torch import nn

from components.lm.specs import LMError, describe, fit_to_tokenizer, hf_dict, positions_of
from components.models.zoo import Intermediates, KDModel
from orchestrator import StepContext
from schemas.engine.storage import StorageOptions
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.lm import CausalLMSpec
from schemas.kd.text import TextTokenizer

_SPEC: TypeAdapter[CausalLMSpec] = TypeAdapter(CausalLMSpec)


class CausalLM(KDModel):
    """A transformers causal LM (``net``) as a `KDModel`: ids (B, T) in, logits (B, T, V)."""

    spec: CausalLMSpec
    net: Any  # a transformers PreTrainedModel

    def __init__(self, spec: CausalLMSpec, net: Any) -> None:
        super().__init__()
        self.spec = spec
        self.net = net
        self.feature_dim = int(self.classifier.in_features)
        self.vocab_size = int(self.classifier.out_features)
        self.max_positions = positions_of(spec, spec.config)
        self.num_layers = int(net.config.num_hidden_layers)

    @property
    def classifier(self) -> nn.Linear:  # type: ignore[override]
        """The output layer, left where transformers keeps it (tied to the embedding or not)."""
        head = self.net.get_output_embeddings()
        assert isinstance(head, nn.Linear)
        return head

    def label(self) -> str:
        return describe(self.spec)

    def _layer_names(self) -> list[str]:
        return [f"layer{i}" for i in range(self.num_layers)]

    def check_ids(self, ids: torch.Tensor) -> None:
        """Refuse what the embedding would fail on deep inside: not (B, T) integer ids, more
        positions than the model has, ids outside its vocabulary."""
        if ids.dim() != 2 or ids.is_floating_point() or ids.is_complex():
            raise ValueError(
                f"{self.label()} reads token ids of shape (B, T), integers; got "
                f"{tuple(ids.shape)} {ids.dtype}"
            )
        if self.max_positions is not None and ids.shape[1] > self.max_positions:
            raise ValueError(
                f"{self.label()} reads at most {self.max_positions} positions, got sequences "
                f"of {ids.shape[1]}"
            )
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(
                f"{self.label()}: token ids from {int(ids.min())} to {int(ids.max())}, outside "
                f"its vocabulary of {self.vocab_size} (0 to {self.vocab_size - 1}): the "
                "sequences come from another tokenizer"
            )

    def body(
        self, x: torch.Tensor, keep: Collection[str] = ()
    ) -> tuple[torch.Tensor, torch.Tensor, Intermediates]:
        """(last hidden states, the same, {``layer{i}``: block i's output}) for ids (B, T).

        Positions attend causally within a row; a padded row's padding comes after its real
        ids, so it changes none of their outputs."""
        self.check_ids(x)
        layers = [n for n in keep if n.startswith("layer")]
        out = self.net.base_model(
            input_ids=x.long(), use_cache=False, output_hidden_states=bool(layers)
        )
        hidden = out.last_hidden_state
        kept = {n: out.hidden_states[int(n[5:]) + 1] for n in layers}
        return hidden, hidden, kept

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        return _rebuilt, (self.spec.model_dump(mode="json"), state, self.training)


def _rebuilt(spec: dict[str, Any], state: dict[str, torch.Tensor], training: bool) -> CausalLM:
    model = build_causal_lm(spec)
    model.load_state_dict(state)
    return model.train(training)


def _built_config(spec: CausalLMSpec) -> Any:
    """The transformers config of a model built from the knobs."""
    from transformers import GPT2Config, LlamaConfig

    assert spec.vocab_size is not None
    ids: dict[str, Any] = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if spec.tokenizer is not None:  # generation stops at the end-of-document id
        ids = {"bos_token_id": spec.tokenizer.eos_id, "eos_token_id": spec.tokenizer.eos_id}
        ids["pad_token_id"] = spec.tokenizer.pad_id
    intermediate = spec.intermediate or 4 * spec.width
    if spec.family == "gpt2":
        return GPT2Config(
            vocab_size=spec.vocab_size,
            n_embd=spec.width,
            n_layer=spec.layers,
            n_head=spec.heads,
            n_inner=intermediate,
            n_positions=spec.max_positions,
            resid_pdrop=spec.dropout,
            embd_pdrop=spec.dropout,
            attn_pdrop=spec.dropout,
            tie_word_embeddings=spec.tied_embeddings,
            **ids,
        )
    return LlamaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.width,
        intermediate_size=intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads or spec.heads,
        max_position_embeddings=spec.max_positions,
        attention_dropout=spec.dropout,
        tie_word_embeddings=spec.tied_embeddings,
        **ids,
    )


def config_from_dict(config: Mapping[str, Any], where: str) -> Any:
    """A transformers config from its JSON, for an architecture transformers has itself.

    Raises:
        LMError: a ``model_type`` that is not a causal LM of transformers ("did you mean").
    """
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from orchestrator.errors import did_you_mean

    kind = str(config.get("model_type"))
    if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        names = sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
        hint = did_you_mean(kind, names)
        raise LMError(
            f"{where}: model_type {kind!r} is not a causal language model of transformers "
            f"{_version()} ({len(names)} are, e.g. llama, gpt2, mistral, qwen2)"
            + (f"; {hint}" if hint else ""),
            "path",
        )
    values = {k: v for k, v in config.items() if k != "model_type"}
    return CONFIG_MAPPING[kind].from_dict(values)


def _version() -> str:
    from components.models.identity import package_version

    return package_version("transformers")


def network(spec: CausalLMSpec, config: dict[str, Any] | None) -> Any:
    """The transformers model, fp32, with fresh weights (from the global RNG)."""
    from transformers import AutoModelForCausalLM

    if config is None:
        built = _built_config(spec)
    else:
        where = f"{spec.path}/config.json" if spec.path else "config"
        built = config_from_dict(config, where)
        if spec.vocab_size is not None and built.vocab_size != spec.vocab_size:
            raise LMError(
                f"{where} has vocab_size {built.vocab_size}, the spec {spec.vocab_size}",
                "vocab_size",
            )
    return AutoModelForCausalLM.from_config(built, dtype=torch.float32)


def _check_cut(model: CausalLM) -> None:
    """The output layer applied to the last hidden states must be the network's logits (a
    model that scales or caps its logits afterwards cannot be read as `body` + classifier).
    Checked with the output layer's weights scaled up for the one pass, so that logits are
    large enough for a cap (tanh) or a scale to show; the weights are restored exactly."""
    ids = torch.arange(min(4, model.vocab_size))[None, :]
    head = model.classifier.weight
    saved, training = head.detach().clone(), model.training
    with torch.no_grad():
        try:
            model.eval()  # no dropout: the two passes must see the same network
            head.mul_(1000.0)
            whole = model.net(input_ids=ids, use_cache=False).logits
            cut = model(ids)
        finally:
            head.copy_(saved)
            model.train(training)
    if not torch.allclose(whole, cut, rtol=1e-3, atol=1e-3):
        raise LMError(
            f"{model.label()}: its logits are not its output layer applied to its last hidden "
            "states (it transforms them afterwards, e.g. final_logit_softcapping), so they "
            "cannot be read as features + classifier; kdorch reads models that do not",
            "path",
        )


def _prefixed(net: Any, state: dict[str, Any]) -> dict[str, Any]:
    """A state saved from the base model alone (keys without ``model.``/``transformer.``)
    with the prefix the causal LM's keys have."""
    prefix = getattr(net, "base_model_prefix", "")
    if prefix and state and not any(k.startswith(f"{prefix}.") for k in state):
        return {f"{prefix}.{k}": v for k, v in state.items()}
    return state


def fit_problem(net: Any, found: Mapping[str, tuple[int, ...]]) -> str | None:
    """What differs between ``net``'s weights and a folder's (names and shapes; a tied output
    layer may be absent: it is the embedding), or None."""
    from components.models.weights import mismatch, state_shapes

    found = _prefixed(net, dict(found))
    tied = set(getattr(net, "_tied_weights_keys", None) or ()) if _tied(net) else set()
    expected = {k: s for k, s in state_shapes(net).items() if k not in tied or k in found}
    return mismatch(expected, found)


def _load_folder_weights(net: Any, spec: CausalLMSpec) -> None:
    """The ``path`` folder's weights into ``net``, every key and shape matching."""
    from components.lm.folder import open_folder, read_state
    from components.models.weights import WeightsError

    folder = open_folder(spec)
    state = _prefixed(net, read_state(folder))
    problem = fit_problem(net, {k: tuple(v.shape) for k, v in state.items()})
    if problem:
        raise WeightsError(f"{folder.uri} does not fit its own config.json: {problem}")
    net.load_state_dict(state, strict=False)


def _tied(net: Any) -> bool:
    config = net.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return bool(getattr(text, "tie_word_embeddings", False))


def _build(spec: CausalLMSpec, pretrained: bool) -> CausalLM:
    config = hf_dict(spec)
    net = network(spec, config)
    if spec.path is not None:
        if pretrained:
            _load_folder_weights(net, spec)
        update = {"path": None, "config": config, "vocab_size": int(net.config.vocab_size)}
        spec = spec.model_copy(update={**update, "storage_options": StorageOptions()})
    model = CausalLM(spec, net)
    if config is not None:
        _check_cut(model)
    return model


def build_causal_lm(
    spec: CausalLMSpec | Mapping[str, Any], *, seed: int | None = None, pretrained: bool = False
) -> CausalLM:
    """The network ``spec`` describes (or its JSON), on the CPU, in training mode. With a
    ``seed`` the fresh weights depend on it alone (the global RNG is left untouched); a
    ``path`` folder's weights are loaded with ``pretrained`` (else the caller loads its own,
    a checkpoint's), and the model's spec then records the folder's config instead of its path.

    Raises:
        LMError: ``vocab_size`` unset (the tokenizer fills it: `language_model`), a config
            transformers cannot build, a folder whose model cannot be read as body + classifier.
        FolderError, WeightsError (``ValueError``\\ s): see `components.lm.folder`.
    """
    checked = _SPEC.validate_python(spec if isinstance(spec, Mapping) else spec.model_dump())
    if checked.source() == "built" and checked.vocab_size is None:
        raise LMError(
            f"{describe(checked)}: vocab_size must be set before building (the training "
            "components fill it from the tokenizer; in Python use components.lm.models."
            "language_model(spec, tokenizer))",
            "vocab_size",
        )
    if seed is None:
        return _build(checked, pretrained)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(checked, pretrained)


def language_model(
    spec: CausalLMSpec, tokenizer: TextTokenizer, *, seed: int, pretrained: bool = True
) -> CausalLM:
    """The model a training step starts from: ``spec`` fitted to ``tokenizer`` (its vocabulary
    and special ids; a mismatch is an `LMError`), built with ``seed``, a folder's weights
    loaded."""
    return build_causal_lm(fit_to_tokenizer(spec, tokenizer), seed=seed, pretrained=pretrained)


def save_language_model(
    ctx: StepContext, spec: CausalLMSpec, tokenizer: TextTokenizer, *, seed: int
) -> ModelCheckpoint:
    """``spec``'s model for ``tokenizer`` (`language_model`) as the step's ``model`` output,
    in eval mode; a folder's checkpoint records where it came from (``imported``)."""
    from components.artifacts.checkpoints import save_model
    from components.lm.specs import spec_identity

    model = language_model(spec, tokenizer, seed=seed).eval()
    extra = {"imported": {"path": spec.path, **spec_identity(spec)}} if spec.path else None
    checkpoint = save_model(ctx, "model", model, extra=extra)
    ctx.log(
        "%s: %s parameters, %d ids, %s positions",
        model.label(),
        f"{checkpoint.num_parameters:,}",
        model.vocab_size,
        model.max_positions,
    )
    return checkpoint
