"""A small CNN sized for the embedded 8x8 digits data set (≈100k parameters), and the same
network without BatchNorm (whose results do not depend on how a batch is split over processes:
the multi-process tests compare it with one process, weight for weight)."""

from torch import nn


def _conv_bn(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    # Without BatchNorm the convolution keeps its bias (nothing after it shifts the activations).
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=not norm),
                         nn.BatchNorm2d(cout) if norm else nn.Identity(), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """8x8 -> conv(w) -> conv(2w) -> maxpool 4x4 -> conv(4w) -> global average pool -> linear."""

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32, norm: bool = True):
        super().__init__()
        self.stages = nn.ModuleList([
            _conv_bn(in_channels, width, norm),
            nn.Sequential(_conv_bn(width, 2 * width, norm), nn.MaxPool2d(2)),
            _conv_bn(2 * width, 4 * width, norm),
        ])
        self.stage_channels = [width, 2 * width]  # intermediate stages (BYOT branches attach here)
        self.feature_dim = 4 * width
        self.head = nn.Linear(self.feature_dim, num_classes)

    def forward_stages(self, x):
        """(maps of the intermediate stages, pooled features of the last stage)."""
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps[:-1], x.mean((2, 3))

    def forward_features(self, x):
        return self.forward_stages(x)[1]

    def forward(self, x):
        return self.head(self.forward_features(x))


def small_cnn(*, num_classes: int, in_channels: int = 1, width: int = 0) -> SmallCNN:
    return SmallCNN(num_classes, in_channels, width or 32)


def small_cnn_nobn(*, num_classes: int, in_channels: int = 1, width: int = 0) -> SmallCNN:
    return SmallCNN(num_classes, in_channels, width or 32, norm=False)
