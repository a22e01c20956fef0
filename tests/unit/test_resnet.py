"""ResNet-18 with the CIFAR stem: its shapes, its parameter count against a hand count, its layout,
and its feature vector by the one feature rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from retentive.models import FeatureTap, ResNet18, feature_layer
from retentive.models.protocol import has_hidden_layer


def hand_count(nf: int, num_classes: int, in_channels: int = 3) -> int:
    """ResNet-18's parameters counted by hand: conv kernels, two per batch norm, the head."""

    def block(cin: int, cout: int) -> int:
        shortcut = cin * cout + 2 * cout if cin != cout else 0  # a 1x1 conv and its batch norm
        return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout + shortcut

    total = 9 * in_channels * nf + 2 * nf  # the 3x3 stem and its batch norm
    width = nf
    for stage in range(4):
        channels = nf * 2**stage
        total += block(width, channels) + block(channels, channels)
        width = channels
    return total + width * num_classes + num_classes


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_paper_size_has_mammoths_parameter_count():
    assert hand_count(64, 10) == 11_173_962  # Mammoth's resnet18(10): 11.17M
    assert parameters(ResNet18()) == 11_173_962


@pytest.mark.parametrize(("nf", "classes"), [(4, 10), (20, 10), (8, 100)])
def test_reduced_widths_match_the_hand_count(nf, classes):
    assert parameters(ResNet18(num_classes=classes, nf=nf)) == hand_count(nf, classes)


def test_cifar_stem_no_max_pool_and_the_stage_widths_and_strides():
    model = ResNet18(nf=8)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.in_channels == 3
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) for m in model.modules())
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    assert [len(s) for s in stages] == [2, 2, 2, 2]
    assert [s[0].conv1.stride for s in stages] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert [s[-1].conv2.out_channels for s in stages] == [8, 16, 32, 64]
    x = torch.rand(2, 3, 32, 32)
    maps = [x := torch.relu(model.bn1(model.conv1(x)))]
    for stage in stages:
        maps.append(x := stage(x))
    assert [tuple(m.shape[1:]) for m in maps] == [(8, 32, 32), (8, 32, 32), (16, 16, 16), (32, 8, 8), (64, 4, 4)]


def test_logits_shape_and_clear_errors():
    model = ResNet18(num_classes=7, nf=4).eval()
    assert model(torch.rand(5, 3, 32, 32)).shape == (5, 7)
    assert ResNet18(nf=4, in_channels=1).eval()(torch.rand(2, 1, 28, 28)).shape == (2, 10)  # any size pools to 1x1
    with pytest.raises(ValueError, match=r"batch of images \(N, C, H, W\), got shape \(3, 32, 32\)"):
        model(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="nf to be an int >= 1, got 0"):
        ResNet18(nf=0)
    with pytest.raises(ValueError, match="four stages"):
        ResNet18(blocks=(2, 2, 2))


def test_the_feature_vector_is_the_pooled_input_of_the_classifier():
    torch.manual_seed(0)
    model = ResNet18(nf=4).eval()
    x = torch.rand(6, 3, 32, 32)
    assert feature_layer(model) is None and has_hidden_layer(model)  # the default rule applies
    with FeatureTap(model) as tap, torch.no_grad():
        logits = model(x)
        features = tap.features(rows=6)
        assert tap.head == "classifier"
    assert features.shape == (6, 32)  # 8 * nf
    assert torch.equal(features, model.features(x))
    assert torch.allclose(model.classifier(features), logits)
    assert model.feature_layers == ("layer1", "layer2", "layer3", "layer4")  # the maps POD distils
