"""Model zoo. Every model maps images to logits and exposes its pooled penultimate features:

    feats = model.forward_features(x)   # (B, D), after global pooling
    logits = model.head(feats)          # (B, C); model(x) == model.head(model.forward_features(x))

Models with stages (BYOT attaches its branches there) also have `forward_stages(x)` -> (maps of the
intermediate stages, pooled features of the last stage) and `stage_channels` (channels of those maps).

`build_model(name, ...)` is the only constructor the rest of the package uses; `MODELS[name]` is a
`ModelSpec(constructor, input_size, source)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from cskd.errors import choose
from cskd.models.cifar import (
    densenet121_cifar,
    densenet121_cifar_tv,
    preact_resnet18,
    preact_resnet18_he,
    resnet10_cifar,
)
from cskd.models.imagenet import densenet121, resnet10, resnet18, resnet50, resnet101, resnext101_32x4d
from cskd.models.small import small_cnn, small_cnn_nobn


class ModelSpec(NamedTuple):
    constructor: Callable[..., nn.Module]
    input_size: int  # side in pixels of the square images the model is designed for
    source: str  # one line: what the model is and where its definition comes from


MODELS: dict[str, ModelSpec] = {
    "small": ModelSpec(small_cnn, 8, "small CNN for the embedded 8x8 digits data set (cskd's own)"),
    "small_nobn": ModelSpec(small_cnn_nobn, 8,
                            "the small CNN without BatchNorm: results independent of the process count (tests)"),
    "preact_resnet18": ModelSpec(
        preact_resnet18, 32,
        "authors' CIFAR_ResNet18 (alinlab/cs-kd models/resnet.py; mixup-cifar10 ResNet-18), the paper's 32-px "
        "PreAct ResNet-18"),
    "preact_resnet18_he": ModelSpec(
        preact_resnet18_he, 32,
        "textbook pre-activation ResNet-18 (He et al., ECCV 2016): identity shortcut of x, final BN-ReLU"),
    "resnet10_cifar": ModelSpec(
        resnet10_cifar, 32, "authors' CIFAR_ResNet10 (alinlab/cs-kd models/resnet.py), the Table 4 32-px student"),
    "densenet121_cifar": ModelSpec(
        densenet121_cifar, 32,
        "DenseNet-BC-121, growth 32, bare 3x3 stem = authors' CIFAR_DenseNet121 (alinlab/cs-kd models/densenet3.py), "
        "PyTorch's default init as theirs"),
    "densenet121_cifar_tv": ModelSpec(
        densenet121_cifar_tv, 32,
        "densenet121_cifar with torchvision's DenseNet init (kaiming-normal convs, zero linear bias), not authors'"),
    "resnet10": ModelSpec(
        resnet10, 224, "ResNet-10: torchvision ResNet, basic blocks 1/1/1/1 (Table 4 224-px student)"),
    "resnet18": ModelSpec(resnet18, 224, "torchvision resnet18"),
    "resnet50": ModelSpec(resnet50, 224, "torchvision resnet50"),
    "resnet101": ModelSpec(resnet101, 224, "torchvision resnet101"),
    "resnext101_32x4d": ModelSpec(
        resnext101_32x4d, 224, "ResNeXt-101 32x4d (Xie et al., CVPR 2017) on torchvision's ResNet"),
    "densenet121": ModelSpec(densenet121, 224, "torchvision densenet121 (growth 32)"),
}


def build_model(name: str, *, num_classes: int, in_channels: int = 3, width: int = 0) -> nn.Module:
    """Build model `name` with a `num_classes`-way linear head; `width` 0 keeps its default width."""
    spec = choose("model", name, MODELS)
    return spec.constructor(num_classes=num_classes, in_channels=in_channels, width=width)


def input_size(name: str) -> int:
    """Side in pixels of the square images model `name` is designed for (8, 32 or 224)."""
    return choose("model", name, MODELS).input_size


def count_parameters(name: str, *, num_classes: int, in_channels: int = 3, width: int = 0) -> int:
    """Number of parameters of model `name`; built on the meta device, so no memory and no initialisation."""
    with torch.device("meta"):
        model = build_model(name, num_classes=num_classes, in_channels=in_channels, width=width)
    return sum(p.numel() for p in model.parameters())


def describe_models(num_classes: int = 1000, in_channels: int = 3) -> list[dict]:
    """One dict per model, in registry order: name, input_size (px), params (at `num_classes` classes,
    `in_channels` input channels, default width) and source (one line)."""
    return [dict(name=name, input_size=spec.input_size,
                 params=count_parameters(name, num_classes=num_classes, in_channels=in_channels),
                 source=spec.source)
            for name, spec in MODELS.items()]
