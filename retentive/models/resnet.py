"""ResNet-18 as the DER paper and Mammoth train it on 32x32 images (Seq-CIFAR-10).

The CIFAR variant of He et al.'s network: a 3x3 stem convolution with stride 1 and no max-pool
(an ImageNet stem would shrink a 32x32 image to 8x8 before the first block), four stages of two
BasicBlocks with widths ``nf, 2nf, 4nf, 8nf`` (the last three halve the resolution), global
average pooling and one linear classifier. ``nf=64`` with 10 classes has 11,173,962 parameters,
as Mammoth's ``resnet18``; a smaller ``nf`` gives the reduced variants CPU protocols use.

Its feature vector is the pooled ``8 * nf`` vector the classifier reads: the default rule of
:func:`~retentive.models.protocol.feature_layer` (the input of the last ``nn.Linear``) finds it,
so iCaRL, update-end selection and shift detection need no layer name. ``feature_layers`` names
the four stages' outputs, the feature maps that feature distillation (POD) reads.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a residual connection (a 1x1 conv-BN where the shape changes)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with a CIFAR stem; ``forward`` returns ``(batch, num_classes)`` logits.

    Args:
        num_classes: outputs of the classifier.
        nf: the width of the first stage (64 in the paper; the stages are ``nf, 2nf, 4nf, 8nf``).
        in_channels: image channels (3 for CIFAR).
        blocks: BasicBlocks per stage ([2, 2, 2, 2] is ResNet-18).
    """

    def __init__(
        self, num_classes: int = 10, nf: int = 64, in_channels: int = 3, blocks: tuple[int, ...] = (2, 2, 2, 2)
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("nf", nf), ("in_channels", in_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ResNet18 needs {name} to be an int >= 1, got {value!r}")
        if len(blocks) != 4 or any(not isinstance(b, int) or b < 1 for b in blocks):
            raise ValueError(f"ResNet18 needs four stages of at least one block each, got blocks={blocks!r}")
        self.nf = nf
        self.conv1 = _conv3x3(in_channels, nf)
        self.bn1 = nn.BatchNorm2d(nf)
        width = nf
        stages = []
        for i, count in enumerate(blocks):
            channels, stride = nf * 2**i, 1 if i == 0 else 2
            layers = []
            for j in range(count):
                layers.append(BasicBlock(width, channels, stride if j == 0 else 1))
                width = channels
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.classifier = nn.Linear(width, num_classes)
        self.feature_layers: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")

    def features(self, x: Tensor) -> Tensor:
        """The ``(batch, 8 * nf)`` pooled feature vector (what the classifier reads)."""
        if x.dim() != 4:
            raise ValueError(f"ResNet18 takes a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
