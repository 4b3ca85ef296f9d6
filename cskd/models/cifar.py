"""32x32 models of the paper (§3.1), all with a 3x3 stride-1 stem.

- `preact_resnet18`, `resnet10_cifar`: the authors' `CIFAR_ResNet18` / `CIFAR_ResNet10` (alinlab/cs-kd
  `models/resnet.py`, the ResNet of the mixup-cifar10 code base), which differ from the textbook
  pre-activation ResNet in three places: BN-ReLU right after the stem, an identity shortcut that carries
  the block's pre-activated input relu(bn1(x)) instead of x, and no BN-ReLU before the pooling.
- `preact_resnet18_he`: the textbook pre-activation ResNet-18 (He et al., ECCV 2016).
- `densenet121_cifar`: DenseNet-BC-121 with a bare 3x3 stem, the authors' `CIFAR_DenseNet121`, initialised
  as theirs is: PyTorch's default init of every layer.
- `densenet121_cifar_tv`: the same network with torchvision's DenseNet init (kaiming-normal convolutions,
  zero linear bias), what `densenet121_cifar` was before.

Initialisation: the authors' 32-px networks override no initialiser, so every layer starts with PyTorch's
default (conv and linear weights kaiming_uniform(a=sqrt(5)): uniform on ±1/sqrt(fan_in), std
1/sqrt(3 fan_in); linear bias uniform on ±1/sqrt(fan_in); BatchNorm weight 1, bias 0).
"""

from __future__ import annotations

import torch.nn.functional as F
import torchvision
from torch import nn


class PreActBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU, then conv3x3(stride) - BN - ReLU - conv3x3, plus a shortcut.

    The shortcut is a bare 1x1 convolution (stride s, no bias, no BN) of the pre-activated input
    relu(bn1(x)) when the stride or the width changes, in both designs. Otherwise it is the identity of
    relu(bn1(x)) when `shortcut_of_preactivation` (the authors' block), or of x itself (He et al.).
    """

    def __init__(self, cin: int, cout: int, stride: int, shortcut_of_preactivation: bool = True):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)
        self.shortcut_of_preactivation = shortcut_of_preactivation

    def forward(self, x):
        # In-place ReLU on BatchNorm's fresh output: BN's backward needs its input, ReLU's its output, so
        # nothing autograd saved is overwritten. `pre` is then only read (by conv1 and the shortcut).
        pre = F.relu(self.bn1(x), inplace=True)
        if self.shortcut is not None:
            shortcut = self.shortcut(pre)
        else:
            shortcut = pre if self.shortcut_of_preactivation else x
        out = self.conv2(F.relu(self.bn2(self.conv1(pre)), inplace=True))
        # Out of place: `shortcut` may be `pre`, which ReLU's backward still needs.
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet for 32x32 input: 3x3 stride-1 stem, four stages of `PreActBlock`s with widths
    w, 2w, 4w, 8w (strides 1, 2, 2, 2), global average pooling, linear head with bias.

    `authors=True` is the authors' `CIFAR_ResNet`: stem conv - BN - ReLU, identity shortcuts of the
    pre-activated input, and the last block's raw output pooled (no final BN-ReLU). `authors=False` is
    He et al.'s design: a bare stem conv (the first block's BN-ReLU activates it), identity shortcuts of
    the block input, and a final BN-ReLU before pooling.

    The authors pool with avg_pool2d(out, 4), which at 32x32 input (a 4x4 last map) is the global
    average pooling used here; this one also accepts other input sizes.
    """

    def __init__(self, blocks: tuple[int, ...], num_classes: int, in_channels: int = 3, width: int = 64,
                 *, authors: bool = True):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width) if authors else None
        stages, cin = [], width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            layers = []
            for j in range(n):
                layers.append(PreActBlock(cin, cout, 2 if (i > 0 and j == 0) else 1, authors))
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.stage_channels = [width * 2**i for i in range(len(blocks) - 1)]
        self.bn = None if authors else nn.BatchNorm2d(cin)
        self.feature_dim = cin
        self.head = nn.Linear(cin, num_classes)

    def forward_stages(self, x):
        """(maps of the intermediate stages, pooled features of the last stage)."""
        x = self.stem(x)
        if self.stem_bn is not None:
            x = F.relu(self.stem_bn(x), inplace=True)  # fresh BN output; the first block only reads it
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        if self.bn is not None:
            x = F.relu(self.bn(x), inplace=True)
        return maps[:-1], F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward_features(self, x):
        return self.forward_stages(x)[1]

    def forward(self, x):
        return self.head(self.forward_features(x))


def preact_resnet18(*, num_classes: int, in_channels: int = 3, width: int = 0) -> PreActResNet:
    """The authors' 32-px "PreAct ResNet-18" (`CIFAR_ResNet18`): blocks 2/2/2/2; 11,217,444 parameters at
    100 classes and width 64."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels, width or 64, authors=True)


def preact_resnet18_he(*, num_classes: int, in_channels: int = 3, width: int = 0) -> PreActResNet:
    """Textbook pre-activation ResNet-18 (He et al., ECCV 2016): identity shortcuts carry the block input x,
    bare stem conv, final BN-ReLU before pooling; 11,218,340 parameters at 100 classes and width 64 (896
    more than the authors': a 512-channel final BN instead of a 64-channel stem BN)."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels, width or 64, authors=False)


def resnet10_cifar(*, num_classes: int, in_channels: int = 3, width: int = 0) -> PreActResNet:
    """The authors' 32-px ResNet-10 (`CIFAR_ResNet10`, the Table 4 student on CIFAR-100 and TinyImageNet):
    `preact_resnet18` with one block per stage."""
    return PreActResNet((1, 1, 1, 1), num_classes, in_channels, width or 64, authors=True)


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


def densenet121_cifar_tv(*, num_classes: int, in_channels: int = 3, width: int = 0) -> TorchvisionDenseNet:
    """DenseNet-BC-121 (blocks 6/12/24/16, growth 32) with the paper's 32x32 stem, "modified in the
    same way as in PreAct ResNet-18": a bare 3x3 conv, stride 1, straight into the first dense block
    (whose layers start with BN-ReLU) — torchvision's BN-ReLU-max-pool after the stem is removed.

    This is the authors' `CIFAR_DenseNet121` (alinlab/cs-kd `models/densenet3.py`): same layers and
    7,048,548 parameters at 100 classes; their dense layers concatenate [new, old] channels where
    torchvision concatenates [old, new], a fixed permutation of the next layers' input channels.

    Initialised as torchvision initialises its DenseNet (kaiming-normal convolutions, zero linear bias; the
    replaced 3x3 stem keeps PyTorch's default), NOT as the authors' network: `densenet121_cifar` is that.
    This is bit for bit what cskd's `densenet121_cifar` was before it got the authors' init."""
    growth = width or 32
    net = torchvision.models.DenseNet(growth, (6, 12, 24, 16), 2 * growth, num_classes=num_classes)
    net.features.conv0 = nn.Conv2d(in_channels, 2 * growth, 3, 1, 1, bias=False)
    net.features.norm0 = nn.Identity()
    net.features.relu0 = nn.Identity()
    net.features.pool0 = nn.Identity()
    return TorchvisionDenseNet(net)


def densenet121_cifar(*, num_classes: int, in_channels: int = 3, width: int = 0) -> TorchvisionDenseNet:
    """The authors' 32-px DenseNet-121 (`CIFAR_DenseNet121`): `densenet121_cifar_tv`'s layers, initialised as
    theirs (PyTorch's default init of every convolution and the linear head, see the module docstring)."""
    model = densenet121_cifar_tv(num_classes=num_classes, in_channels=in_channels, width=width)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):  # BatchNorm: torchvision's 1 / 0 is PyTorch's default too
            m.reset_parameters()
    return model
