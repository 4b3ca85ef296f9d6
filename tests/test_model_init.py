"""Every paper model starts as the authors' network does (alinlab/cs-kd `models/`), layer by layer.

The expected statistics are computed here from each layer's shape and the rule the authors' code
applies, not taken from cskd:
- 32-px networks (`CIFAR_ResNet18`, `CIFAR_ResNet10`, `CIFAR_DenseNet121`) override no initialiser:
  PyTorch's default, kaiming_uniform(a=sqrt(5)) for conv and linear weights = uniform on
  ±1/sqrt(fan_in), std 1/sqrt(3 fan_in); linear bias uniform on ±1/sqrt(fan_in).
- their 224-px ResNets (`models/resnet.py` `ResNet`): kaiming_normal(mode="fan_out", relu) convolutions,
  std sqrt(2 / fan_out); the linear layer keeps PyTorch's default.
- their 224-px DenseNet (`models/densenet.py`): kaiming_normal (fan_in) convolutions, std
  sqrt(2 / fan_in); linear bias 0.
- BatchNorm: weight 1, bias 0 everywhere.
"""

import math

import pytest
import torch
from torch import nn

from cskd.models import build_model

DEFAULT, RESNET, DENSENET = "pytorch default", "kaiming_normal fan_out", "kaiming_normal fan_in"
RULES = {"preact_resnet18": DEFAULT, "resnet10_cifar": DEFAULT, "densenet121_cifar": DEFAULT,
         "resnet10": RESNET, "resnet18": RESNET, "resnet50": RESNET, "resnet101": RESNET,
         "resnext101_32x4d": RESNET, "densenet121": DENSENET, "densenet121_cifar_tv": DENSENET}
BIG = ("resnet50", "resnet101", "resnext101_32x4d")


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def expected_std(rule: str, layer: nn.Module) -> float:
    fan_in, fan_out = _fans(layer.weight)
    if isinstance(layer, nn.Linear) or rule == DEFAULT:
        return 1 / math.sqrt(3 * fan_in)
    return math.sqrt(2 / (fan_out if rule == RESNET else fan_in))


def check_init(name: str, rule: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=100)
    layers = 0
    for path, m in model.named_modules():
        if name == "densenet121_cifar_tv" and path == "features.conv0":
            continue  # its replaced 3x3 stem kept PyTorch's default (cskd's densenet121_cifar before the fix)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            layers += 1
            n = m.weight.numel()
            want = expected_std(rule, m)
            # the sample std of n draws lies within 5/sqrt(n) (relative) of the true one (>= 7 sigma)
            assert abs(m.weight.std().item() / want - 1) < 5 / math.sqrt(n), (path, m.weight.std().item(), want)
            assert abs(m.weight.mean().item()) < 6 * want / math.sqrt(n), path
            if isinstance(m, nn.Linear):
                bound = 1 / math.sqrt(m.in_features)
                b = m.bias.detach().abs()
                if rule == DENSENET:
                    assert b.max().item() == 0, path
                else:  # uniform on ±bound: 100 draws reach past bound/2 (P of failing 2^-100)
                    assert bound / 2 < b.max().item() <= bound, (path, b.max().item(), bound)
        elif isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0), path
    assert layers > 5


@pytest.mark.parametrize("name", [n for n in RULES if n not in BIG])
def test_paper_models_start_as_the_authors_networks(name):
    check_init(name, RULES[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG)
def test_large_paper_models_start_as_the_authors_networks(name):
    check_init(name, RULES[name])


def test_the_default_rule_is_pytorchs_own_and_the_rules_tell_apart():
    """The std formula of the default rule against layers built by plain torch.nn, and the 32-px DenseNet
    measured against torchvision's init, which it once had (conv std 0.177 vs 0.073 at the stem)."""
    torch.manual_seed(0)
    for layer in (nn.Conv2d(256, 128, 3), nn.Linear(1024, 512)):
        assert abs(layer.weight.std().item() / expected_std(DEFAULT, layer) - 1) < 0.02
    tv = build_model("densenet121_cifar_tv", num_classes=100)
    ours = build_model("densenet121_cifar", num_classes=100)
    conv_tv, conv = tv.features.denseblock1.denselayer1.conv2, ours.features.denseblock1.denselayer1.conv2
    assert conv_tv.weight.std() > 2 * conv.weight.std()  # sqrt(2/fan_in) vs 1/sqrt(3 fan_in): a factor sqrt(6)
    assert tv.head.bias.abs().max() == 0 < ours.head.bias.abs().max()
