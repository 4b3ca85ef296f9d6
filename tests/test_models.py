import pytest
import torch

from cskd.errors import UserError
from cskd.models import MODELS, build_model

FEATURE_DIMS = {"small": 128, "preact_resnet18": 512, "densenet121_cifar": 1024, "resnet10": 512,
                "resnet18": 512, "resnet50": 2048, "resnet101": 2048, "resnext101_32x4d": 2048, "densenet121": 1024}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_and_features_shapes(name):
    _, size = MODELS[name]
    in_channels = 1 if name == "small" else 3
    # 224-px models are checked at 64 px: same layers, 12x less compute.
    size = min(size, 64)
    model = build_model(name, num_classes=7, in_channels=in_channels).eval()
    x = torch.randn(2, in_channels, size, size)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (2, FEATURE_DIMS[name])
    assert logits.shape == (2, 7)
    assert torch.allclose(model.head(feats), logits, atol=1e-5)


def test_unknown_model_lists_known_names():
    with pytest.raises(UserError, match="unknown model 'resnet7'.*preact_resnet18"):
        build_model("resnet7", num_classes=10)


def test_preact_resnet18_has_the_paper_stem_and_final_bn():
    m = build_model("preact_resnet18", num_classes=100)
    assert m.stem.kernel_size == (3, 3) and m.stem.stride == (1, 1)
    assert isinstance(m.bn, torch.nn.BatchNorm2d)
    n_params = sum(p.numel() for p in m.parameters())
    assert 11.0e6 < n_params < 11.3e6  # PreAct ResNet-18 for CIFAR-100: about 11.2M parameters


def test_cifar_densenet_stem_is_a_bare_3x3_convolution():
    """Paper §3.1: the 32x32 stem is modified as in PreAct ResNet-18 (3x3 conv, stride 1), so the first
    dense block sees the convolution's output directly: no BN, ReLU or pooling in between."""
    model = build_model("densenet121_cifar", num_classes=10, in_channels=3, width=8)
    stem = [name for name, m in model.features.named_children() if not isinstance(m, torch.nn.Identity)]
    assert stem[:2] == ["conv0", "denseblock1"]
    conv = model.features.conv0
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (1, 1))
    x = torch.randn(2, 3, 32, 32)
    assert model.features.denseblock1.denselayer1.norm1.num_features == conv.out_channels
    assert model(x).shape == (2, 10)


@pytest.mark.parametrize("name", ["preact_resnet18", "densenet121_cifar"])
def test_in_place_relu_gives_the_gradients_of_out_of_place_relu(name, monkeypatch):
    import torch.nn.functional as F

    def grads():
        torch.manual_seed(0)
        model = build_model(name, num_classes=5, in_channels=3, width=4).train()
        x = torch.randn(4, 3, 32, 32)
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    in_place = grads()
    # cifar.F is torch.nn.functional itself: every relu runs out of place until the test ends
    calls = []

    def out_of_place_relu(x, inplace=False):
        calls.append(inplace)
        return F.threshold(x, 0.0, 0.0)

    monkeypatch.setattr(torch.nn.functional, "relu", out_of_place_relu)
    out_of_place = grads()
    assert any(calls)  # the model's in-place ReLUs really went through the replacement
    assert len(in_place) == len(out_of_place)
    for a, b in zip(in_place, out_of_place):
        torch.testing.assert_close(a, b)
