"""The metric functions against matrices computed by hand."""

from __future__ import annotations

import pytest
import torch

from retentive.evaluation import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    micro_average_accuracy,
    summarize,
)

# A[i, j]: accuracy on chunk j after update i. Chunk 0 peaks after update 1 (0.9), not on the
# diagonal (0.8), so forgetting (max over earlier rows) and BWT (diagonal) differ on purpose.
A = torch.tensor(
    [
        [0.8, 0.1, 0.2],
        [0.9, 0.7, 0.3],
        [0.6, 0.5, 0.9],
    ],
    dtype=torch.float64,
)


def test_average_accuracy_is_the_mean_of_the_last_row():
    assert average_accuracy(A) == pytest.approx((0.6 + 0.5 + 0.9) / 3)


def test_forgetting_takes_the_max_over_all_earlier_rows():
    # chunk 0: max(0.8, 0.9) - 0.6 = 0.3 ; chunk 1: max(0.1, 0.7) - 0.5 = 0.2
    assert forgetting(A) == pytest.approx((0.3 + 0.2) / 2)


def test_backward_transfer_compares_with_the_diagonal():
    # chunk 0: 0.6 - 0.8 = -0.2 ; chunk 1: 0.5 - 0.7 = -0.2
    assert backward_transfer(A) == pytest.approx(-0.2)


def test_forward_transfer_uses_the_row_before_and_the_random_init_baseline():
    b = [0.5, 0.05, 0.1]
    # chunk 1: A[0, 1] - b1 = 0.1 - 0.05 = 0.05 ; chunk 2: A[1, 2] - b2 = 0.3 - 0.1 = 0.2
    assert forward_transfer(A, b) == pytest.approx((0.05 + 0.2) / 2)


def test_micro_average_weights_chunks_by_their_test_size():
    counts = [100, 300, 600]
    assert micro_average_accuracy(A, counts) == pytest.approx((0.6 * 100 + 0.5 * 300 + 0.9 * 600) / 1000)
    assert micro_average_accuracy(A, [5, 5, 5]) == pytest.approx(average_accuracy(A))


def test_forgetting_can_be_negative_when_accuracy_improves_later():
    improving = torch.tensor([[0.5, 0.0], [0.7, 0.9]], dtype=torch.float64)
    assert forgetting(improving) == pytest.approx(0.5 - 0.7)
    assert backward_transfer(improving) == pytest.approx(0.2)


def test_single_chunk_metrics_are_zero():
    one = torch.tensor([[0.75]])
    assert average_accuracy(one) == pytest.approx(0.75)
    assert forgetting(one) == 0.0 and backward_transfer(one) == 0.0 and forward_transfer(one, [0.1]) == 0.0


def test_summarize_adds_fwt_and_micro_only_when_given_their_inputs():
    plain = summarize(A)
    assert set(plain) == {"average_accuracy", "forgetting", "bwt"}
    full = summarize(A, [0.5, 0.05, 0.1], [100, 300, 600])
    assert full["fwt"] == pytest.approx(0.125) and full["micro_average_accuracy"] == pytest.approx(0.75)


@pytest.mark.parametrize("bad", [torch.zeros(2, 3), torch.zeros(3)])
def test_non_square_matrices_are_refused(bad):
    with pytest.raises(ValueError, match="square"):
        average_accuracy(bad)


def test_wrong_baseline_and_count_lengths_are_refused():
    with pytest.raises(ValueError, match="baseline"):
        forward_transfer(A, [0.1, 0.2])
    with pytest.raises(ValueError, match="test-set size"):
        micro_average_accuracy(A, [1, 2])
    with pytest.raises(ValueError, match="positive total"):
        micro_average_accuracy(A, [0, 0, 0])
