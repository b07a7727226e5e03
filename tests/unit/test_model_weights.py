"""Pretrained weights from outside: read as data (never as code), loaded strictly, named when
they do not fit; local files and S3; content identity for cache keys."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torchvision

from components.models.identity import spec_identity
from components.models.weights import (
    UnsafeWeightsError,
    WeightsError,
    read_shapes,
    read_state,
)
from components.models.zoo import build_model
from schemas.kd.models import TorchvisionSpec
from tests.support.torch_threads import one_torch_thread  # noqa: F401 (a fixture)

K = 10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class WritesAFile:
    """Unpickling this calls ``open(path, "w")``: a file appears if the pickle is run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def spec(weights: Path | str, **fields: object) -> TorchvisionSpec:
    return TorchvisionSpec(
        name="resnet18", num_classes=K, input_shape=(3, 32, 32), weights=str(weights), **fields
    )


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A ResNet-18 saved by plain PyTorch, outside kdorch (.pt, .safetensors, a wrapped dict)."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(3)
    net = torchvision.models.resnet18(num_classes=K).eval()
    torch.save(net.state_dict(), root / "resnet18.pt")
    safetensors.torch.save_file(net.state_dict(), root / "resnet18.safetensors")
    torch.save({"epoch": 7, "model": {"state_dict": net.state_dict()}}, root / "wrapped.pth")
    torch.save(torchvision.models.resnet18().state_dict(), root / "imagenet.pt")
    return root, net


@pytest.mark.parametrize("name", ["resnet18.pt", "resnet18.safetensors", "wrapped.pth"])
def test_loaded_weights_give_the_original_networks_logits(resnet, name: str) -> None:  # type: ignore[no-untyped-def]
    root, net = resnet
    key = {"weights_key": "model.state_dict"} if name == "wrapped.pth" else {}
    model = build_model(spec(root / name, **key), seed=0, pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model(x), net(x), atol=1e-5)
    unloaded = build_model(spec(root / name, **key), seed=0).eval()  # a rebuild: no file read
    assert not torch.allclose(unloaded(x), net(x), atol=1e-3)


def test_a_pickle_that_would_run_code_is_refused_and_never_run(tmp_path: Path) -> None:
    witness = tmp_path / "pwned.txt"
    state = {"conv1.weight": torch.zeros(1), "evil": WritesAFile(witness)}
    torch.save(state, tmp_path / "evil.pt")  # the torch.save zip format
    (tmp_path / "evil.pth").write_bytes(pickle.dumps(state))  # a bare pickle
    for name in ("evil.pt", "evil.pth"):
        with pytest.raises(UnsafeWeightsError, match="would run code") as info:
            read_state(spec(tmp_path / name))
        assert "torch.save(model.state_dict(), path)" in str(info.value)
        with pytest.raises(UnsafeWeightsError):
            read_shapes(spec(tmp_path / name))  # the validate-time read refuses it too
    with pytest.raises(UnsafeWeightsError, match=r"\(it asks for io.open\)"):
        read_state(spec(tmp_path / "evil.pt"))
    assert not witness.exists()


def test_a_mismatch_names_missing_unexpected_keys_and_shapes(resnet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, net = resnet
    with pytest.raises(WeightsError) as info:
        build_model(spec(root / "imagenet.pt"), pretrained=True)
    assert str(info.value) == (
        f"{root / 'imagenet.pt'} does not fit torchvision resnet18: 2 shape differences: "
        "fc.weight (file [1000, 512], model [10, 512]), fc.bias (file [1000], model [10]) (if "
        "that is the classifier, sized for another class count, replace it after loading: "
        "head: {replace: fc})"
    )
    state = dict(net.state_dict())
    for name in [k for k in state if k.startswith("layer4.")]:
        state["module." + name] = state.pop(name)
    torch.save(state, tmp_path / "ddp.pt")
    with pytest.raises(WeightsError) as info:
        build_model(spec(tmp_path / "ddp.pt"), pretrained=True)
    message = str(info.value)
    assert "30 missing keys: layer4.0.bn1.bias, layer4.0.bn1.num_batches_tracked" in message
    assert "… (26 more); 30 unexpected keys: module.layer4.0.bn1.bias" in message
    assert "the file's keys start with 'module.' (saved from a DDP wrapper)" in message
    # the ImageNet head replaced after loading: a 10-class model that keeps the body
    model = build_model(spec(root / "imagenet.pt", head={"replace": "fc"}), pretrained=True)
    imagenet = torch.load(root / "imagenet.pt", weights_only=True)
    assert torch.equal(model.net.conv1.weight, imagenet["conv1.weight"])  # type: ignore[union-attr]
    assert model.classifier.out_features == K


def test_wrapped_checkpoints_need_weights_key(resnet) -> None:  # type: ignore[no-untyped-def]
    root, _ = resnet
    with pytest.raises(WeightsError, match=r"not a plain state dict: 2 entries are not tensors"):
        read_state(spec(root / "wrapped.pth"))
    with pytest.raises(WeightsError, match=r"set weights_key to the entry holding the weights"):
        read_state(spec(root / "wrapped.pth"))
    with pytest.raises(WeightsError, match=r"no entry 'model.weights'.*keys: state_dict"):
        read_state(spec(root / "wrapped.pth", weights_key="model.weights"))
    with pytest.raises(WeightsError, match="does not exist"):
        read_state(spec(root / "gone.pt"))
    (root / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WeightsError, match="is not a safetensors file"):
        read_state(spec(root / "junk.safetensors"))


def test_shapes_are_read_without_the_tensors(resnet) -> None:  # type: ignore[no-untyped-def]
    root, net = resnet
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert read_shapes(spec(root / "resnet18.pt")) == expected
    assert read_shapes(spec(root / "resnet18.safetensors")) == expected
    shapes = read_shapes(spec(root / "wrapped.pth", weights_key="model.state_dict"))
    assert shapes == expected


def test_weights_on_s3_and_their_identity(resnet, s3_server: dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import s3fs

    root, net = resnet
    fs = s3fs.S3FileSystem(**s3_server["storage_options"])
    uri = f"s3://{s3_server['bucket']}/models/resnet18.safetensors"
    fs.put(str(root / "resnet18.safetensors"), uri)
    options = {"endpoint_url": s3_server["endpoint"], "key": "testing", "secret": "testing"}
    remote = spec(uri, storage_options=options)
    model = build_model(remote, pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model(x), net(x), atol=1e-5)
    assert read_shapes(remote)["fc.weight"] == (K, 512)
    identity = spec_identity(remote)
    assert identity["package"] == {"torchvision": identity["package"]["torchvision"]}
    assert identity["weights"]["resnet18.safetensors"].startswith(f"size:{fs.size(uri)};etag:")
    local = spec_identity(spec(root / "resnet18.safetensors"))["weights"]
    assert local["resnet18.safetensors"].startswith("sha256:")
    # other bytes at the same place: another identity (so another cache key)
    other = tmp_path / "other.safetensors"
    safetensors.torch.save_file(torchvision.models.resnet18(num_classes=K).state_dict(), other)
    fs.put(str(other), uri)
    assert spec_identity(remote)["weights"] != identity["weights"]
