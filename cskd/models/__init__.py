"""Model zoo. Every model maps images to logits and exposes its pooled penultimate features:

    feats = model.forward_features(x)   # (B, D), after global pooling
    logits = model.head(feats)          # (B, C); model(x) == model.head(model.forward_features(x))

`build_model(name, ...)` is the only constructor the rest of the package uses.
"""

from __future__ import annotations

from torch import nn

from ..errors import choose
from .cifar import densenet121_cifar, preact_resnet18
from .imagenet import densenet121, resnet10, resnet18, resnet50, resnet101, resnext101_32x4d
from .small import small_cnn

# name -> (constructor, input size it is designed for)
MODELS = {
    "small": (small_cnn, 8),
    "preact_resnet18": (preact_resnet18, 32),
    "densenet121_cifar": (densenet121_cifar, 32),
    "resnet10": (resnet10, 224),
    "resnet18": (resnet18, 224),
    "resnet50": (resnet50, 224),
    "resnet101": (resnet101, 224),
    "resnext101_32x4d": (resnext101_32x4d, 224),
    "densenet121": (densenet121, 224),
}


def build_model(name: str, *, num_classes: int, in_channels: int = 3, width: int = 0) -> nn.Module:
    """Build model `name` with a `num_classes`-way linear head; `width` 0 keeps its default width."""
    constructor, _ = choose("model", name, MODELS)
    return constructor(num_classes=num_classes, in_channels=in_channels, width=width)
