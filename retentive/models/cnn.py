"""A small convolutional net for 28x28 images, where feature maps keep their spatial layout.

POD's pooling types (spatial, channel, width, height, gap, pixel) differ only on feature maps of
shape (C, H, W); on an MLP's flat features most of them collapse to one another (see
:mod:`retentive.components.pod`). This net gives POD two such maps to distil.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """Two conv-ReLU-maxpool blocks and a linear head.

    For ``channels=(16, 32)`` on 1x28x28 inputs, ``block1`` outputs (16, 14, 14) and ``block2``
    (32, 7, 7); ``feature_layers`` names them for the components that distil hidden features, and
    ``feature_layer`` (``block2``, flattened: what the classifier reads) is the feature vector.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (16, 32), image_size: int = 28
    ) -> None:
        super().__init__()
        if len(channels) != 2:
            raise ValueError(f"SmallCNN has two conv blocks; got channels={tuple(channels)}")
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2x2 poolings), got {image_size}")
        c1, c2 = (int(c) for c in channels)
        self.block1 = nn.Sequential(nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(c2 * (image_size // 4) ** 2, num_classes)
        self.feature_layers: tuple[str, ...] = ("block1", "block2")
        self.feature_layer = "block2"

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.block2(self.block1(x)).flatten(1))
