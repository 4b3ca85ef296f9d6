import pytest
import torch
import torch.nn.functional as F
import torchvision

from cskd.errors import UserError
from cskd.models import MODELS, build_model, count_parameters, describe_models, input_size
from cskd.models.cifar import PreActBlock

FEATURE_DIMS = {"small": 128, "small_nobn": 128, "preact_resnet18": 512, "preact_resnet18_he": 512,
                "resnet10_cifar": 512, "densenet121_cifar": 1024, "densenet121_cifar_tv": 1024, "resnet10": 512,
                "resnet18": 512, "resnet50": 2048, "resnet101": 2048, "resnext101_32x4d": 2048, "densenet121": 1024}

# (model, classes) -> parameters. 32-px: the authors' networks (alinlab/cs-kd models/resnet.py, densenet3.py);
# 224-px: torchvision's (resnext101_32x4d: 44,177,704 is the figure timm and the ResNeXt paper's code give).
AUTHORS_PARAMS = {("preact_resnet18", 100): 11_217_444, ("preact_resnet18", 200): 11_268_744,
                  ("resnet10_cifar", 100): 4_946_724, ("resnet10_cifar", 200): 4_998_024,
                  ("densenet121_cifar", 100): 7_048_548, ("densenet121_cifar", 200): 7_151_048,
                  ("preact_resnet18_he", 100): 11_218_340, ("resnext101_32x4d", 1000): 44_177_704}
TORCHVISION = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50,
               "resnet101": torchvision.models.resnet101, "densenet121": torchvision.models.densenet121}


def test_feature_dims_cover_every_model():
    assert set(FEATURE_DIMS) == set(MODELS)


BIG = ("resnet101", "resnext101_32x4d")  # ~1 s each to build: with the slow tests


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in sorted(MODELS)])
def test_logits_and_features_shapes(name):
    size = MODELS[name].input_size
    in_channels = 1 if name.startswith("small") else 3
    # 224-px models are checked at 64 px: same layers, 12x less compute.
    size = min(size, 64)
    model = build_model(name, num_classes=7, in_channels=in_channels).eval()
    x = torch.randn(2, in_channels, size, size)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
        if hasattr(model, "forward_stages"):
            maps, last = model.forward_stages(x)
            assert [m.shape[1] for m in maps] == model.stage_channels
            torch.testing.assert_close(last, feats)
    assert model.feature_dim == FEATURE_DIMS[name]
    assert feats.shape == (2, FEATURE_DIMS[name])
    assert logits.shape == (2, 7)
    assert torch.allclose(model.head(feats), logits, atol=1e-5)


@pytest.mark.parametrize("key", sorted(AUTHORS_PARAMS))
def test_parameter_counts_match_the_authors_networks(key):
    name, classes = key
    assert count_parameters(name, num_classes=classes) == AUTHORS_PARAMS[key]


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_224px_parameter_counts_match_torchvision(name):
    with torch.device("meta"):
        reference = sum(p.numel() for p in TORCHVISION[name](num_classes=1000).parameters())
    assert count_parameters(name, num_classes=1000) == reference
    if name == "resnet18":
        assert reference == 11_689_512


def test_registry_describes_every_model():
    rows = describe_models(num_classes=100)
    assert [r["name"] for r in rows] == list(MODELS)
    for r in rows:
        assert r["input_size"] == input_size(r["name"]) == MODELS[r["name"]][1] in (8, 32, 224)
        assert r["params"] > 0
        assert r["source"] and "\n" not in r["source"]
    assert {r["name"]: r["params"] for r in rows}["preact_resnet18"] == 11_217_444
    with pytest.raises(UserError, match="unknown model 'resnet7'"):
        input_size("resnet7")


def test_unknown_model_lists_known_names():
    with pytest.raises(UserError, match="unknown model 'resnet7'.*preact_resnet18"):
        build_model("resnet7", num_classes=10)


def _randomise_batch_norms(model):
    """Non-trivial BN statistics and affine parameters, so that relu(bn(x)) differs clearly from x."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return model.eval()


@pytest.mark.parametrize("authors", [True, False])
def test_identity_shortcut_carries_the_preactivated_input_in_the_authors_block(authors):
    """Authors' block: out = conv2(relu(bn2(conv1(p)))) + p with p = relu(bn1(x)); He et al.'s: ... + x."""
    block = _randomise_batch_norms(PreActBlock(4, 4, 1, shortcut_of_preactivation=authors))
    assert block.shortcut is None
    seen = {}
    block.conv2.register_forward_hook(lambda mod, inp, out: seen.update(residual=out.clone()))
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        shortcut = block(x) - seen["residual"]
        pre = F.relu(block.bn1(x))
    expected, other = (pre, x) if authors else (x, pre)
    torch.testing.assert_close(shortcut, expected)
    assert not torch.allclose(shortcut, other, atol=1e-3)


def test_projection_shortcut_is_a_bare_1x1_convolution_of_the_preactivated_input():
    block = _randomise_batch_norms(PreActBlock(4, 8, 2))
    conv = block.shortcut
    assert isinstance(conv, torch.nn.Conv2d) and conv.bias is None
    assert (conv.kernel_size, conv.stride) == ((1, 1), (2, 2))
    seen = {}
    block.conv2.register_forward_hook(lambda mod, inp, out: seen.update(residual=out.clone()))
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x) - seen["residual"], conv(F.relu(block.bn1(x))))


def _authors_forward(m, x):
    """The forward of the authors' CIFAR_ResNet, written out on our model's layers: stem conv-BN-ReLU; each
    block p = relu(bn1(x)), out = conv2(relu(bn2(conv1(p)))) + shortcut(p); then avg_pool2d(out, 4) with no
    BN-ReLU before it, and the linear layer."""
    out = F.relu(m.stem_bn(m.stem(x)))
    for stage in m.stages:
        for b in stage:
            p = F.relu(b.bn1(out))
            out = b.conv2(F.relu(b.bn2(b.conv1(p)))) + (p if b.shortcut is None else b.shortcut(p))
    return m.head(F.avg_pool2d(out, 4).flatten(1))


@pytest.mark.parametrize("name", ["preact_resnet18", "resnet10_cifar"])
def test_authors_resnets_compute_the_authors_forward(name):
    model = _randomise_batch_norms(build_model(name, num_classes=10, width=4))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _authors_forward(model, x))
    assert model.bn is None  # no final BN before pooling
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    n_blocks = sum(len(s) for s in model.stages)
    assert n_bn == 1 + 2 * n_blocks  # stem BN + two per block, nothing else
    assert (model.stem.kernel_size, model.stem.stride, model.stem.padding) == ((3, 3), (1, 1), (1, 1))
    assert model.head.bias is not None


def test_he_preact_resnet18_has_a_bare_stem_and_a_final_bn():
    m = build_model("preact_resnet18_he", num_classes=100)
    assert m.stem_bn is None and isinstance(m.bn, torch.nn.BatchNorm2d)
    assert m.stem.kernel_size == (3, 3) and m.stem.stride == (1, 1)
    assert [len(s) for s in m.stages] == [2, 2, 2, 2]
    assert [len(s) for s in build_model("resnet10_cifar", num_classes=10, width=4).stages] == [1, 1, 1, 1]


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


@pytest.mark.parametrize("name", ["preact_resnet18", "preact_resnet18_he", "resnet10_cifar", "densenet121_cifar"])
def test_in_place_relu_gives_the_gradients_of_out_of_place_relu(name, monkeypatch):
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
