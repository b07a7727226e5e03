"""The model zoo: shapes, intermediates, knobs, validation, determinism, checkpoints, costs."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from components.models.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    decode_checkpoint,
    encode_checkpoint,
)
from components.models.layers import plan_of
from components.models.profile import count_parameters, diswot_init_, estimate_flops
from components.models.zoo import KDModel, build_model
from orchestrator import ArtifactError
from schemas.kd.models import MLPSpec, MnistCNNSpec, ModelSpec, ResNetSpec

K = 10
SHAPES = [(1, 28, 28), (3, 32, 32), (64,)]
SMALL = {
    "mlp": MLPSpec(hidden=[32, 16]),
    "mnist_cnn": MnistCNNSpec(width=8),
    "resnet_cifar": ResNetSpec(depth=8, width=4),
}
LAYERS = {
    "mlp": ["hidden0", "hidden1"],
    "mnist_cnn": ["conv0", "conv1", "conv2", "conv3"],
    "resnet_cifar": ["stem", "stage0", "stage1", "stage2"],
}


def small(arch: str, shape: tuple[int, ...] = (1, 28, 28), **update: object) -> KDModel:
    spec = SMALL[arch].model_copy(update={"num_classes": K, "input_shape": shape, **update})
    return build_model(spec, seed=0)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("arch", list(SMALL))
def test_outputs_features_and_feature_map(arch: str, shape: tuple[int, ...]) -> None:
    model = small(arch, shape)
    x = torch.randn(5, *shape)
    out = model.forward_features(x)
    assert out.logits.shape == (5, K) and out.features.shape == (5, model.feature_dim)
    assert model.classifier.in_features == model.feature_dim
    assert model.classifier.out_features == K
    assert torch.allclose(model(x), out.logits)
    assert torch.allclose(model.embed(x), out.features)
    assert torch.allclose(model(x, features_only=True), out.features)
    if arch == "mlp":
        assert out.feature_map.shape == (5, model.feature_dim)
    else:  # the last map before global average pooling
        assert out.feature_map.dim() == 4 and out.feature_map.shape[1] == model.feature_dim
        assert torch.allclose(out.feature_map.mean((2, 3)), out.features, atol=1e-6)
    # flat rows work for every arch (the data layer stores rows flat)
    assert torch.allclose(model(x.flatten(1)), out.logits)


def test_flat_square_inputs_are_one_channel_images() -> None:
    cnn = small("mnist_cnn", (64,))
    assert cnn.forward_features(torch.randn(2, 64)).feature_map.shape == (2, 16, 4, 4)
    assert cnn(torch.randn(2, 1, 8, 8)).shape == (2, K)
    with pytest.raises(ValueError, match=r"expects a batch of shape \(B, 1, 8, 8\)"):
        cnn(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="mlp expects rows of 64 values"):
        small("mlp", (64,))(torch.randn(2, 65))


@pytest.mark.parametrize("arch", list(SMALL))
def test_intermediate_names_shapes_and_unknown_names(arch: str) -> None:
    model = small(arch, (3, 32, 32))
    assert model.feature_names() == [*LAYERS[arch], "penultimate", "logits"]
    x = torch.randn(4, 3, 32, 32)
    got = model.intermediate(x, model.feature_names())
    assert list(got) == model.feature_names()
    assert torch.allclose(got["logits"], model(x))
    assert torch.allclose(got["penultimate"], model.embed(x))
    assert torch.equal(got[LAYERS[arch][-1]], model.forward_features(x).feature_map)
    if arch == "resnet_cifar":  # stride 2 into stages 1 and 2; widths w, 2w, 4w
        assert [tuple(got[n].shape[1:]) for n in LAYERS[arch]] == [
            (4, 32, 32),
            (4, 32, 32),
            (8, 16, 16),
            (16, 8, 8),
        ]
    with pytest.raises(KeyError, match=r"valid names: .*penultimate, logits") as info:
        model.intermediate(x, ["penultimat"])
    assert "did you mean 'penultimate'?" in str(info.value)


def test_knobs_change_parameter_counts() -> None:
    shape = (3, 32, 32)
    resnet = {
        (d, w): count_parameters(small("resnet_cifar", shape, depth=d, width=w))
        for d, w in [(8, 4), (14, 4), (8, 8)]
    }
    assert resnet[(8, 4)] < resnet[(14, 4)] and resnet[(8, 4)] < resnet[(8, 8)]
    assert count_parameters(small("resnet_cifar", shape, kernel_size=5)) > resnet[(8, 4)]

    # MLP, by hand: weights + biases of 64->32->16->10
    assert count_parameters(small("mlp", (64,))) == (64 * 32 + 32) + (32 * 16 + 16) + (16 * K + K)

    # DomainBed CNN, by hand: channels w, 2w, 2w, ... of 3x3 convs, GroupNorm affine, classifier
    def cnn_params(c: int, w: int, depth: int) -> int:
        chans = [c, w] + [2 * w] * (depth - 1)
        convs = sum(i * o * 9 + o + 2 * o for i, o in itertools.pairwise(chans))
        return convs + chans[-1] * K + K

    for width, depth in [(8, 4), (16, 4), (8, 2), (8, 6)]:
        model = small("mnist_cnn", width=width, depth=depth)
        assert count_parameters(model) == cnn_params(1, width, depth)
        assert model.feature_dim == 2 * width
    default = build_model(MnistCNNSpec(num_classes=K, input_shape=(1, 28, 28)))
    assert [m.out_channels for m in default.modules() if isinstance(m, nn.Conv2d)] == [
        64,
        128,
        128,
        128,
    ]
    # GroupNorm groups must divide the channels: width 5 -> 5 and 10 channels
    assert small("mnist_cnn", width=5)(torch.randn(2, 1, 28, 28)).shape == (2, K)
    # ... and hold 2 channels or more: a channel normalised alone pools to a constant
    images = torch.randn(4, 1, 28, 28)
    for width in (1, 2, 4, 8):
        model = small("mnist_cnn", width=width, depth=2)
        groups = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
        assert all(g.num_channels // g.num_groups >= 2 for g in groups[1:])
        features, _, _ = model.body(images)
        assert features.std(dim=0).min() > 1e-3, f"width {width}: a constant feature"
    assert count_parameters(small("mnist_cnn", norm="none")) < count_parameters(
        small("mnist_cnn", norm="group")
    )


def test_invalid_specs_name_the_field() -> None:
    with pytest.raises(ValidationError, match=r"depth\n.*6n\+2.*got 21; nearest: 20 or 26"):
        ResNetSpec(depth=21)
    with pytest.raises(ValidationError, match=r"width\n.*greater than or equal to 1"):
        MnistCNNSpec(width=0)
    with pytest.raises(ValidationError, match="width"):
        ResNetSpec(width=0)
    with pytest.raises(ValidationError, match=r"kernel_size\n.*must be odd"):
        ResNetSpec(kernel_size=4)
    with pytest.raises(ValidationError, match=r"hidden\n.*at least one layer"):
        MLPSpec(hidden=[])
    with pytest.raises(ValidationError, match=r"input_shape\n.*10 is not a perfect square"):
        MnistCNNSpec(input_shape=(10,))
    with pytest.raises(ValidationError, match=r"input_shape\n.*each >= 1"):
        MLPSpec(input_shape=(0, 4))
    with pytest.raises(ValidationError, match="arch") as info:
        TypeAdapter(ModelSpec).validate_python({"arch": "vit"})
    assert "'mlp', 'mnist_cnn', 'resnet_cifar'" in str(info.value)
    with pytest.raises(ValidationError, match="extra_forbidden"):
        TypeAdapter(ModelSpec).validate_python({"arch": "mlp", "hiden": [3]})


def test_build_needs_dataset_fields_and_revalidates() -> None:
    with pytest.raises(ValueError, match="num_classes and input_shape must be set"):
        build_model(MLPSpec())
    with pytest.raises(ValueError, match="input_shape must be set"):
        build_model(ResNetSpec(num_classes=3))
    unchecked = MnistCNNSpec().model_copy(update={"num_classes": 3, "input_shape": (10,)})
    with pytest.raises(ValidationError, match="not a perfect square"):
        build_model(unchecked)
    from_json = build_model({"arch": "mlp", "hidden": [4], "num_classes": 3, "input_shape": [2]})
    assert isinstance(from_json.spec, MLPSpec) and from_json.spec.input_shape == (2,)


def test_every_field_is_described() -> None:
    for cls in (MLPSpec, MnistCNNSpec, ResNetSpec):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    spec = SMALL["resnet_cifar"].model_copy(update={"num_classes": K, "input_shape": (3, 8, 8)})
    state = torch.random.get_rng_state()
    a, b, c = build_model(spec, seed=3), build_model(spec, seed=3), build_model(spec, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    pairs = list(zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert all(torch.equal(p, q) for p, q in pairs)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_checkpoint_round_trip_is_exact_and_deterministic() -> None:
    model = small("resnet_cifar", (3, 8, 8))
    model.train()
    model(torch.randn(16, 3, 8, 8))  # moves BatchNorm running stats: buffers must travel too
    a = encode_checkpoint(model, extra={"metrics": {"acc": torch.tensor(0.5)}})
    b = encode_checkpoint(model)
    assert a["weights.pt"] == b["weights.pt"]
    document = json.loads(a["model.json"])
    assert document["spec"] == model.spec.model_dump(mode="json")

    loaded, extra = decode_checkpoint(a, "ckpt")
    assert extra == {"metrics": {"acc": 0.5}} and not loaded.training
    assert loaded.spec == model.spec
    x = torch.randn(3, 3, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x))

    with pytest.raises(ValueError, match="may not use the key 'spec'"):
        encode_checkpoint(model, extra={"spec": 1})


def test_checkpoint_errors_name_the_file() -> None:
    with pytest.raises(CheckpointNotFoundError, match=r"nowhere/model\.json not found"):
        decode_checkpoint({}, "nowhere")
    files = encode_checkpoint(small("mlp", (64,)))
    with pytest.raises(FileNotFoundError, match=r"m/weights\.pt not found.*incomplete"):
        decode_checkpoint({"model.json": files["model.json"]}, "m")

    # weights of one model under the spec of another
    other = encode_checkpoint(small("mlp", (64,), hidden=[8]))
    swapped = {"model.json": other["model.json"], "weights.pt": files["weights.pt"]}
    with pytest.raises(CheckpointError, match=r"y/weights\.pt does not match the mlp spec"):
        decode_checkpoint(swapped, "y")
    with pytest.raises(ValueError, match=r"y/weights\.pt cannot be read"):
        decode_checkpoint({**other, "weights.pt": b"not a torch file"}, "y")
    bad_spec = b'{"spec": {"arch": "resnet_cifar", "depth": 9}}'
    with pytest.raises(ArtifactError, match=r"y/model\.json: invalid model spec"):
        decode_checkpoint({**other, "model.json": bad_spec}, "y")


def test_flops_by_hand() -> None:
    mlp = small("mlp", (64,))
    assert estimate_flops(mlp, (64,)) == 64 * 32 + 32 * 16 + 16 * K
    cnn = small("mnist_cnn", depth=2)  # 1->8 at 28x28, then 8->16 with stride 2 (14x14)
    cnn.train()
    assert estimate_flops(cnn, (1, 28, 28)) == 28 * 28 * 8 * 9 + 14 * 14 * 16 * 8 * 9 + 16 * K
    assert cnn.training  # modes are restored
    default = build_model(MnistCNNSpec(num_classes=K, input_shape=(1, 28, 28)))
    assert estimate_flops(default, (1, 28, 28)) == (
        28 * 28 * 64 * 9 + 14 * 14 * 128 * 64 * 9 + 2 * 14 * 14 * 128 * 128 * 9 + 128 * K
    )


PLANNED = [
    MLPSpec(hidden=[3], dropout=0.1),
    MLPSpec(hidden=[3, 3, 3], activation="gelu"),
    MnistCNNSpec(width=3, depth=2, kernel_size=5, norm="batch"),
    MnistCNNSpec(width=3, depth=4, kernel_size=5, norm="batch"),
    MnistCNNSpec(width=2, depth=3, kernel_size=1, norm="none"),
    MnistCNNSpec(width=3, depth=2),  # GroupNorm of 3 and 6 channels: fewer groups than 8
    ResNetSpec(depth=8, width=2, kernel_size=5),
    ResNetSpec(depth=14, width=2, kernel_size=5),
]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 9, 7), (64,)], ids=str)
def test_layer_plans_count_what_the_built_model_measures(shape: tuple[int, ...]) -> None:
    for spec in PLANNED:
        spec = spec.model_copy(update={"num_classes": 7, "input_shape": shape})
        model = build_model(spec, seed=0)
        measured = (count_parameters(model), estimate_flops(model, shape))
        assert plan_of(spec).cost() == measured, spec
    with pytest.raises(ValueError, match="mlp: num_classes and input_shape must be set"):
        plan_of(MLPSpec())


def test_diswot_init_sets_the_stated_values() -> None:
    for model in (small("mnist_cnn"), small("resnet_cifar", (3, 8, 8), width=8)):
        diswot_init_(model)
        weights = torch.cat(
            [
                m.weight.detach().flatten()
                for m in model.modules()
                if isinstance(m, nn.Conv2d | nn.Linear)
            ]
        )
        assert abs(float(weights.mean())) < 0.05 and abs(float(weights.std()) - 1) < 0.05
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                assert torch.all(m.bias == 0)
            if isinstance(m, nn.GroupNorm | nn.BatchNorm2d):
                assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    a, b = small("mlp", (64,)), small("mlp", (64,), hidden=[32, 16])
    state = torch.random.get_rng_state()
    diswot_init_(a, seed=1)
    diswot_init_(b, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.layers[0][0].weight, b.layers[0][0].weight)


def test_second_order_inner_step_through_functional_call() -> None:
    """Meta-DMoE adapts the feature extractor with a differentiable step (``features_only``)."""
    model = small("mnist_cnn", (64,))
    params = dict(model.named_parameters())
    x, target = torch.randn(4, 64), torch.randn(4, model.feature_dim, requires_grad=True)
    call = torch.func.functional_call
    inner = (call(model, params, (x,), {"features_only": True}) - target).pow(2).mean()
    grads = torch.autograd.grad(inner, list(params.values()), create_graph=True, allow_unused=True)
    fast = {
        n: p if g is None else p - 0.1 * g for (n, p), g in zip(params.items(), grads, strict=True)
    }
    assert torch.allclose(call(model, params, (x,), {"features_only": True}), model.embed(x))
    outer = nn.functional.cross_entropy(call(model, fast, (x,)), torch.tensor([0, 1, 2, 3]))
    (target_grad,) = torch.autograd.grad(outer, [target])
    assert float(target_grad.abs().sum()) > 0  # the target gets gradient only via the step


def test_cnn_layout_follows_domainbed() -> None:
    model = small("mnist_cnn", width=16, depth=3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.stride[0], c.kernel_size) for c in convs] == [
        (16, 1, (3, 3)),
        (32, 2, (3, 3)),
        (32, 1, (3, 3)),
    ]
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert [n.num_groups for n in norms] == [8, 8, 8]
    assert [type(m) for m in model.convs[0]] == [nn.Conv2d, nn.ReLU, nn.GroupNorm]
    batch = small("mnist_cnn", norm="batch", kernel_size=5)
    assert isinstance(batch.convs[0][2], nn.BatchNorm2d)
    assert batch.convs[1][0].kernel_size == (5, 5) and batch.convs[1][0].padding == (2, 2)
