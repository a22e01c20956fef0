"""Shrink-and-perturb: its effect on the weights by hand, frozen weights kept, no loss term."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from er_family_support import start
from torch import nn

from retentive import Learner
from retentive.components import ShrinkAndPerturb, shrink_perturb_


def test_shrink_without_noise_is_exact():
    layer = nn.Linear(3, 2)
    before = [p.detach().clone() for p in layer.parameters()]
    shrink_perturb_(layer.parameters(), 0.9, 0.0)
    for p, p0 in zip(layer.parameters(), before):
        assert torch.equal(p, p0 * 0.9)


def test_noise_is_sigma_times_a_standard_normal_draw():
    layer = nn.Linear(3, 2)
    before = [p.detach().clone() for p in layer.parameters()]
    torch.manual_seed(5)
    shrink_perturb_(layer.parameters(), 0.5, 0.01)
    torch.manual_seed(5)
    for p, p0 in zip(layer.parameters(), before):
        expected = 0.5 * p0 + 0.01 * torch.randn(p0.shape)
        assert torch.allclose(p, expected, atol=1e-7)


def test_noise_statistics():
    weight = nn.Parameter(torch.zeros(200, 200))
    torch.manual_seed(0)
    shrink_perturb_([weight], 0.95, 0.001)
    values = weight.detach()
    assert float(values.mean()) == pytest.approx(0.0, abs=2e-5)
    assert float(values.std()) == pytest.approx(0.001, rel=0.02)


def test_component_acts_at_update_start_on_trainable_weights_only():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    trained = model[1].weight.detach().clone()
    sp = ShrinkAndPerturb(shrink_factor=0.5, sigma=0.0)
    learner = Learner(model, nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), components=[sp])
    assert sp.weight == 0.0 and sp.loss(None) is None  # type: ignore[arg-type]
    start(learner)
    assert torch.equal(model[0].weight, frozen)
    assert torch.equal(model[1].weight, 0.5 * trained)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="shrink_factor must be > 0, got 0"):
        ShrinkAndPerturb(0.0, 0.1)
    with pytest.raises(ValueError, match="sigma must be >= 0, got -1"):
        ShrinkAndPerturb(0.9, -1)
