"""224x224 models of the paper: torchvision's definitions with features and linear head split apart."""

from __future__ import annotations

import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from cskd.errors import UserError
from cskd.models.cifar import TorchvisionDenseNet


class TorchvisionResNet(nn.Module):
    """torchvision ResNet/ResNeXt: 7x7 stem, max-pool, four stages, global average pool, linear head."""

    def __init__(self, net: ResNet, in_channels: int):
        super().__init__()
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, 7, 2, 3, bias=False)
        self.feature_dim = net.fc.in_features
        self.head = net.fc
        net.fc = nn.Identity()
        self.body = net
        self.stage_channels = [_out_channels(net.layer1),
                               _out_channels(net.layer2), _out_channels(net.layer3)]

    def forward_stages(self, x):
        """(maps of layer1..layer3, pooled features of layer4)."""
        b = self.body
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        maps = []
        for layer in (b.layer1, b.layer2, b.layer3):
            x = layer(x)
            maps.append(x)
        return maps, b.avgpool(b.layer4(x)).flatten(1)

    def forward_features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.forward_features(x))


def _out_channels(layer: nn.Sequential) -> int:
    last = layer[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


def _resnet(block, layers, num_classes, in_channels, width, **kw) -> TorchvisionResNet:
    net = ResNet(block, layers, num_classes=num_classes, **kw)
    if width:
        raise UserError("224-px models use torchvision's widths; leave --width at 0")
    return TorchvisionResNet(net, in_channels)


def resnet10(*, num_classes: int, in_channels: int = 3, width: int = 0):
    """ResNet-10: basic blocks 1/1/1/1 (the paper's KD student, Table 4)."""
    return _resnet(BasicBlock, [1, 1, 1, 1], num_classes, in_channels, width)


def resnet18(*, num_classes: int, in_channels: int = 3, width: int = 0):
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, width)


def resnet50(*, num_classes: int, in_channels: int = 3, width: int = 0):
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, width)


def resnet101(*, num_classes: int, in_channels: int = 3, width: int = 0):
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, width)


def resnext101_32x4d(*, num_classes: int, in_channels: int = 3, width: int = 0):
    """ResNeXt-101 32x4d (Xie et al., CVPR 2017): 32 groups of width 4."""
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, width, groups=32, width_per_group=4)


def densenet121(*, num_classes: int, in_channels: int = 3, width: int = 0):
    """DenseNet-121, growth rate 32 (torchvision's definition)."""
    net = torchvision.models.densenet121(num_classes=num_classes)
    if in_channels != 3:
        net.features.conv0 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    if width:
        raise UserError("224-px models use torchvision's widths; leave --width at 0")
    return TorchvisionDenseNet(net)
