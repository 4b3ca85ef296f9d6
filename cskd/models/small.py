"""A small CNN sized for the embedded 8x8 digits data set (≈100k parameters)."""

from torch import nn


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """8x8 -> conv(w) -> conv(2w) -> maxpool 4x4 -> conv(4w) -> global average pool -> linear."""

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(in_channels, width),
            _conv_bn(width, 2 * width),
            nn.MaxPool2d(2),
            _conv_bn(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.feature_dim = 4 * width
        self.head = nn.Linear(self.feature_dim, num_classes)

    def forward_features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.forward_features(x))


def small_cnn(*, num_classes: int, in_channels: int = 1, width: int = 0) -> SmallCNN:
    return SmallCNN(num_classes, in_channels, width or 32)
