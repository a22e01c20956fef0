"""Metrics against hand-computed accuracy matrices."""

from __future__ import annotations

import pytest
import torch

from retentive.evaluation import (
    accuracy,
    average_accuracy,
    backward_transfer,
    forgetting,
    format_matrix,
    forward_transfer,
)

A = torch.tensor(
    [
        [0.90, 0.10, 0.05],
        [0.70, 0.95, 0.20],
        [0.80, 0.60, 0.85],
    ]
)


def test_average_accuracy():
    assert average_accuracy(A) == pytest.approx((0.80 + 0.60 + 0.85) / 3)


def test_forgetting_uses_max_over_earlier_rows():
    # chunk 0: max(0.90, 0.70) - 0.80 = 0.10; chunk 1: max(0.10, 0.95) - 0.60 = 0.35
    assert forgetting(A) == pytest.approx((0.10 + 0.35) / 2)


def test_backward_transfer():
    # (0.80 - 0.90 + 0.60 - 0.95) / 2
    assert backward_transfer(A) == pytest.approx(-0.225)


def test_forward_transfer_against_random_init():
    b = [0.1, 0.12, 0.08]
    # (A[0,1] - b1 + A[1,2] - b2) / 2 = (0.10 - 0.12 + 0.20 - 0.08) / 2
    assert forward_transfer(A, b) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="one baseline accuracy per chunk"):
        forward_transfer(A, [0.1])


def test_single_chunk_and_bad_shapes():
    one = torch.tensor([[0.5]])
    assert forgetting(one) == 0.0 and backward_transfer(one) == 0.0
    with pytest.raises(ValueError, match="square"):
        average_accuracy(torch.zeros(2, 3))
    assert "chunk  2" in format_matrix(A)


def test_accuracy_of_a_fixed_classifier():
    from torch import nn
    from torch.utils.data import TensorDataset

    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])
    assert accuracy(nn.Identity(), TensorDataset(x, y)) == pytest.approx(0.75)
