"""Model sources (torchvision, timm, the user's own module) behind the zoo's `KDModel`
interface: logits, penultimate features, feature map, intermediates by module name, pickling,
functional_call, MACs from torch's FLOP counter, DisWOT and a Meta-DMoE meta step."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch
import torchvision
from pydantic import TypeAdapter, ValidationError
from torch import nn

from components.metadmoe.masking import expert_mask
from components.metadmoe.meta import feature_parameters, meta_step
from components.metadmoe.transformer import Aggregator
from components.models.checkpoint import decode_checkpoint, encode_checkpoint
from components.models.external import SourceModel
from components.models.identity import package_version
from components.models.profile import count_parameters, estimate_flops
from components.models.sources import SourceError
from components.models.zoo import build_model
from components.search.diswot import DiswotScorer
from schemas.kd.models import ModelSpec, PythonSpec, TimmSpec, TorchvisionSpec
from tests.support.torch_threads import one_torch_thread  # noqa: F401 (a fixture)

K = 10
SPEC: TypeAdapter[ModelSpec] = TypeAdapter(ModelSpec)
OWN = "tests.support.own_models.nets"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def source(arch: str, name: str, shape: tuple[int, ...] = (3, 32, 32), **fields: object):  # type: ignore[no-untyped-def]
    data = {"arch": arch, "num_classes": K, "input_shape": list(shape), **fields}
    data["factory" if arch == "python" else "name"] = name
    return build_model(data, seed=0)


CASES = [
    ("torchvision", "resnet18", "fc", "layer4", 512),
    ("torchvision", "mobilenet_v3_small", "classifier.3", "features", 1024),
    ("timm", "test_resnet", "fc", "layer4", 96),
    ("timm", "test_vit", "head", None, 64),
    ("python", f"{OWN}:small_cnn", "fc", "features", 16),
]


@pytest.mark.parametrize(("arch", "name", "classifier", "fmap", "width"), CASES, ids=str)
def test_every_source_has_the_zoo_interface(
    arch: str, name: str, classifier: str, fmap: str | None, width: int
) -> None:
    shape = (1, 28, 28) if arch == "python" else (3, 32, 32)
    model = source(arch, name, shape)
    assert isinstance(model, SourceModel) and model.feature_dim == width
    assert model.layout.classifier == classifier and model.layout.map == fmap
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == K
    names = [n for n, _ in model.named_parameters()]
    assert names[-2:] == ["classifier.weight", "classifier.bias"]
    assert all(n.startswith(("net.", "classifier.")) for n in names)
    model.eval()
    x = torch.randn(3, *shape)
    out = model.forward_features(x)
    assert out.logits.shape == (3, K) and out.features.shape == (3, width)
    assert torch.allclose(model(x), out.logits) and torch.allclose(model.embed(x), out.features)
    assert torch.allclose(model(x, features_only=True), out.features)
    assert torch.allclose(model.classifier(out.features), out.logits, atol=1e-6)
    if fmap is None:  # a ViT has no map before pooling: its features stand in (as an MLP's)
        assert torch.equal(out.feature_map, out.features)
    else:
        assert out.feature_map.dim() == 4
    # flat rows are reshaped to input_shape
    assert torch.allclose(model(x.flatten(1)), out.logits)
    # pickled (Ray ships models), deep-copied: the same function
    for twin in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert torch.equal(twin.eval()(x), model(x))


def test_the_cut_keeps_the_original_networks_logits() -> None:
    net = torchvision.models.resnet18(num_classes=K).eval()
    model = TorchvisionSpec(name="resnet18", num_classes=K, input_shape=(3, 32, 32))
    wrapped = build_model(model)
    wrapped.load_state_dict(
        {
            ("classifier." + k[3:] if k.startswith("fc.") else "net." + k): v
            for k, v in net.state_dict().items()
        }
    )
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(wrapped.eval()(x), net(x), atol=1e-5)


def test_intermediates_by_module_name() -> None:
    model = source("torchvision", "resnet18").eval()
    assert model.feature_names()[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert (
        model.feature_names()[-2:] == ["penultimate", "logits"]
        and "fc" not in model.feature_names()
    )
    x = torch.randn(2, 3, 32, 32)
    got = model.intermediate(x, ["layer2", "layer4.1.bn2", "penultimate", "logits"])
    assert got["layer2"].shape == (2, 128, 4, 4) and got["layer4.1.bn2"].shape == (2, 512, 1, 1)
    assert torch.allclose(got["logits"], model(x)) and torch.allclose(
        got["penultimate"], model.embed(x)
    )
    # layer4.1.bn2's output is changed in place by the residual add afterwards: the copy is not
    assert not torch.equal(got["layer4.1.bn2"], model.intermediate(x, ["layer4.1"])["layer4.1"])
    with pytest.raises(
        KeyError,
        match=r"'layer5' in torchvision resnet18; .*\(68 in all\), penultimate, logits",
    ) as info:
        model.intermediate(x, ["layer5"])
    assert "did you mean 'layer4'?" in str(info.value)


def test_named_features_and_their_errors() -> None:
    model = source("torchvision", "resnet18", features={"penultimate": "avgpool", "map": "layer3"})
    assert model.layout.penultimate == "avgpool" and model.layout.map == "layer3"
    out = model.eval().forward_features(torch.randn(2, 3, 32, 32))
    assert out.feature_map.shape == (2, 256, 2, 2) and out.features.shape == (2, 512)
    with pytest.raises(
        SourceError,
        match=r"features.map: the network has no module 'layer5'; did you mean 'layer4'",
    ) as info:
        source("torchvision", "resnet18", features={"map": "layer5"})
    assert info.value.field == "features.map"
    # the residual add changes layer4.1.bn2's output in place: refused, not silently wrong
    changed = source("torchvision", "resnet18", features={"map": "layer4.1.bn2"})
    with pytest.raises(ValueError, match=r"the output of 'layer4.1.bn2' is changed in place later"):
        changed.forward_features(torch.randn(2, 3, 32, 32))
    with pytest.raises(
        SourceError, match=r"'layer3' gives 1024 values per row, but the classifier reads 512"
    ):
        source("torchvision", "resnet18", features={"penultimate": "layer3"})


def test_one_channel_images_are_repeated_for_an_rgb_network() -> None:
    model = source("torchvision", "resnet18", (1, 28, 28)).eval()
    assert model.layout.repeat_channels == 3
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(model(x), model.classifier(model.net(x.repeat(1, 3, 1, 1))))
    with pytest.raises(
        SourceError,
        match=r"takes 3-channel images \(its first convolution 'conv1'\), the data has 2",
    ):
        source("torchvision", "resnet18", (2, 28, 28))


def test_head_replacement_and_output_width() -> None:
    model = source("torchvision", "mobilenet_v3_small", head={"replace": "classifier.3"})
    assert model.classifier.out_features == K and model.classifier.in_features == 1024
    with pytest.raises(
        SourceError,
        match=r"'classifier' is a Sequential, not an nn.Linear; name the Linear inside it: "
        r"classifier.0, classifier.3",
    ):
        source("torchvision", "mobilenet_v3_small", head={"replace": "classifier"})
    # a factory that does not take num_classes gives 10 logits; the data has 5 classes
    with pytest.raises(
        SourceError,
        match=r"gives 10 logits but the data has 5 classes: replace its classifier with "
        r"head: \{replace: fc\}",
    ):
        build_model(
            {
                "arch": "python",
                "factory": f"{OWN}:fixed_cnn",
                "num_classes": 5,
                "input_shape": [1, 8, 8],
            }
        )
    fixed = build_model(
        {
            "arch": "python",
            "factory": f"{OWN}:fixed_cnn",
            "num_classes": 5,
            "input_shape": [1, 8, 8],
            "head": {"replace": "fc"},
        }
    )
    assert fixed.classifier.out_features == 5


def test_a_classifier_that_is_not_last_is_refused() -> None:
    spec = {
        "arch": "python",
        "factory": f"{OWN}:scaled_logits",
        "num_classes": K,
        "input_shape": [1, 8, 8],
    }
    with pytest.raises(
        SourceError, match=r"does not come straight from an nn.Linear.*its Linear modules: fc"
    ):
        build_model(spec)
    with pytest.raises(SourceError, match="'fc' is not the last operation of forward"):
        build_model({**spec, "head": {"replace": "fc"}})


def test_specs_validate_their_own_fields() -> None:
    with pytest.raises(
        ValidationError, match=r"factory\n.*'package.module:function', got 'nets.small'"
    ):
        PythonSpec(factory="nets.small")
    with pytest.raises(ValidationError, match=r"kwargs\n.*pretrained would download weights"):
        TimmSpec(name="resnet18", kwargs={"pretrained": True})
    with pytest.raises(ValidationError, match=r"kwargs\n.*weights would download"):
        TorchvisionSpec(name="resnet18", kwargs={"weights": "DEFAULT"})
    with pytest.raises(ValidationError, match=r"weights\n.*state-dict file ending in"):
        TorchvisionSpec(name="resnet18", weights="model.onnx")
    with pytest.raises(
        ValidationError, match=r"weights_key names an entry of the weights file: set `weights` too"
    ):
        TorchvisionSpec(name="resnet18", weights_key="state_dict")
    spec = SPEC.validate_python({"arch": "timm", "name": "test_vit", "head": {"replace": "head"}})
    assert (
        isinstance(spec, TimmSpec)
        and SPEC.validate_python(SPEC.dump_python(spec, mode="json")) == spec
    )
    for cls in (TorchvisionSpec, TimmSpec, PythonSpec):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"


def test_unknown_builders_say_did_you_mean() -> None:
    with pytest.raises(
        SourceError,
        match=r"torchvision has no classification model 'resnet81'.*did you mean 'resnet18'",
    ):
        source("torchvision", "resnet81")
    with pytest.raises(
        SourceError, match=r"timm \S+ has no model 'test_resnett'; did you mean 'test_resnet'"
    ):
        source("timm", "test_resnett")
    with pytest.raises(SourceError, match=r"nets has no 'smal_cnn'; did you mean 'small_cnn'"):
        source("python", f"{OWN}:smal_cnn")
    with pytest.raises(
        SourceError, match=r"does not import: ImportError: cannot import name 'Conv2dd'"
    ):
        source("python", "tests.support.own_models.broken:small")
    with pytest.raises(SourceError, match=r"returned a dict, not a torch.nn.Module"):
        source("python", f"{OWN}:not_a_module")


def test_checkpoints_rebuild_sources_exactly() -> None:
    model = source("torchvision", "mobilenet_v3_small", head={"replace": "classifier.3"})
    model.train()
    model(torch.randn(4, 3, 32, 32))  # BatchNorm statistics move: buffers travel too
    files = encode_checkpoint(model)
    recorded = json.loads(files["model.json"])["source"]
    assert recorded == {"package": {"torchvision": package_version("torchvision")}}
    loaded, extra = decode_checkpoint(files, "ckpt")
    assert extra == {}
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), model.eval()(x))
    own = source("python", f"{OWN}:small_cnn", (1, 8, 8))
    record = json.loads(encode_checkpoint(own)["model.json"])["source"]
    assert record["factory"] == f"{OWN}:small_cnn"
    assert sorted(record["code"]) == [
        "tests/__init__.py",
        "tests/support/__init__.py",
        "tests/support/own_models/__init__.py",
        "tests/support/own_models/blocks.py",
        "tests/support/own_models/nets.py",
    ]


def test_macs_come_from_torchs_flop_counter() -> None:
    resnet = source("torchvision", "resnet18", (3, 224, 224))
    # torchvision's table: 1.81 GFLOPS (multiply-adds) with 1000 classes; here 10
    assert estimate_flops(resnet, (3, 224, 224)) == 1_814_073_344 - 512 * (1000 - K)
    assert count_parameters(resnet) == 11_181_642
    vit = source("timm", "test_vit").eval()
    layers = 0  # what the conv and linear layers cost, counted by hand

    def count(module: nn.Module, inputs: object, out: torch.Tensor) -> None:
        nonlocal layers
        weight = module.weight  # type: ignore[union-attr]
        layers += out.numel() * (
            weight[0].numel() if isinstance(module, nn.Conv2d) else weight.shape[1]
        )

    x = torch.zeros(1, 3, 32, 32)
    tokens = vit.intermediate(x, ["blocks.0"])["blocks.0"].shape[1]
    hooks = [
        m.register_forward_hook(count)
        for m in vit.modules()
        if isinstance(m, nn.Linear | nn.Conv2d)
    ]
    vit(x)
    for hook in hooks:
        hook.remove()
    blocks, width = len(vit.net.blocks), vit.feature_dim  # type: ignore[arg-type]
    attention = blocks * 2 * tokens * tokens * width  # q k^T and (attention) v, every head
    assert estimate_flops(vit, (3, 32, 32)) == layers + attention


def test_diswot_scores_an_external_model() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32, generator=g), torch.arange(16) % K
    teacher = source("timm", "test_resnet")
    scorer = DiswotScorer(teacher, x, y, teacher_weights="trained")
    same = scorer.score_model(teacher, batch_stats=False)
    assert same.score == 0.0
    other = scorer.score_model(source("torchvision", "mobilenet_v3_small"), batch_stats=False)
    assert other.score < 0 and other.semantic > 0 and other.relation > 0
    fresh = DiswotScorer(TimmSpec(name="test_resnet", num_classes=K, input_shape=(3, 32, 32)), x, y)
    assert (
        fresh.score_spec(TimmSpec(name="test_vit", num_classes=K, input_shape=(3, 32, 32))).score
        < 0
    )


def test_a_meta_dmoe_step_adapts_an_external_student() -> None:
    student = source("python", f"{OWN}:small_cnn", (1, 8, 8))
    student.train()
    assert not any(n.startswith("classifier.") for n in feature_parameters(student))
    agg = Aggregator(8, student.feature_dim, num_heads=2)
    g = torch.Generator().manual_seed(1)
    out = meta_step(
        student,
        agg,
        support_expert_feats=torch.randn(6, 3, 8, generator=g),
        support_mask=expert_mask(torch.full((6,), 1), [[0], [1], [2]]),
        x_support=torch.randn(6, 1, 8, 8, generator=g),
        x_query=torch.randn(5, 1, 8, 8, generator=g),
        y_query=torch.randint(0, K, (5,), generator=g),
        inner_lr=0.5,
    )
    out.loss.backward()
    assert student.classifier.weight.grad is not None
    assert all(p.grad is not None for p in agg.parameters())
    conv = student.net.features[0][0]  # type: ignore[index]
    assert conv.weight.grad is not None and float(conv.weight.grad.abs().sum()) > 0
