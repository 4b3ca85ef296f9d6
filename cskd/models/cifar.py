"""32x32 models of the paper (§3.1): PreAct ResNet-18 and DenseNet-BC-121, both with a 3x3 stride-1 stem."""

from __future__ import annotations

import torch.nn.functional as F
import torchvision
from torch import nn


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al., ECCV 2016): BN-ReLU-conv-BN-ReLU-conv + shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        # In-place ReLU on BatchNorm's fresh output: BN's backward needs its input, ReLU's its output,
        # so nothing autograd saved is overwritten, and each step allocates less.
        out = F.relu(self.bn1(x), inplace=True)
        # The projection shortcut takes the pre-activated input, as in the pre-activation paper.
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out), inplace=True))
        return out + shortcut


class PreActResNet(nn.Module):
    """PreAct ResNet for 32x32 input: 3x3 stem, four stages, final BN-ReLU, global average pool."""

    def __init__(self, blocks: tuple[int, ...], num_classes: int, in_channels: int = 3, width: int = 64):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        stages, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            layers = []
            for j in range(n):
                layers.append(PreActBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.stage_channels = [width * 2**i for i in range(len(blocks) - 1)]
        # The final BN-ReLU is part of the pre-activation design (the authors' code omits it).
        self.bn = nn.BatchNorm2d(cin)
        self.feature_dim = cin
        self.head = nn.Linear(cin, num_classes)

    def forward_stages(self, x):
        """(maps of the intermediate stages, pooled features of the last stage)."""
        x = self.stem(x)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        out = F.relu(self.bn(x), inplace=True)
        return maps[:-1], F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward_features(self, x):
        return self.forward_stages(x)[1]

    def forward(self, x):
        return self.head(self.forward_features(x))


def preact_resnet18(*, num_classes: int, in_channels: int = 3, width: int = 0) -> PreActResNet:
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels, width or 64)


class TorchvisionDenseNet(nn.Module):
    """torchvision's DenseNet (bottleneck + compression 0.5 = DenseNet-BC) with features and head split."""

    def __init__(self, net: torchvision.models.DenseNet):
        super().__init__()
        self.features = net.features
        self.feature_dim = net.classifier.in_features
        self.head = net.classifier

    def forward_features(self, x):
        out = F.relu(self.features(x), inplace=True)  # features ends in BN: a fresh tensor
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x):
        return self.head(self.forward_features(x))


def densenet121_cifar(*, num_classes: int, in_channels: int = 3, width: int = 0) -> TorchvisionDenseNet:
    """DenseNet-BC-121 (blocks 6/12/24/16, growth 32) with the paper's 32x32 stem, "modified in the
    same way as in PreAct ResNet-18": a bare 3x3 conv, stride 1, straight into the first dense block
    (whose layers start with BN-ReLU), as in the CIFAR DenseNet the paper points to — torchvision's
    BN-ReLU-max-pool after the stem is removed."""
    growth = width or 32
    net = torchvision.models.DenseNet(growth, (6, 12, 24, 16), 2 * growth, num_classes=num_classes)
    net.features.conv0 = nn.Conv2d(in_channels, 2 * growth, 3, 1, 1, bias=False)
    net.features.norm0 = nn.Identity()
    net.features.relu0 = nn.Identity()
    net.features.pool0 = nn.Identity()
    return TorchvisionDenseNet(net)
