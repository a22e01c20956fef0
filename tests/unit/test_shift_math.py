"""The shift tests' math against hand-computed values and scipy (Renate's kernel and MMD
tests translated: ``test_kernels.py``, ``test_mmd_helpers.py``)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from retentive.shift.ks import kolmogorov_survival, ks_p_values, ks_statistics, ks_test
from retentive.shift.labels import chi_square_test
from retentive.shift.mmd import _split_statistics, median_lengthscale, mmd_statistic, mmd_test, rbf_kernel

X0 = torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
X1 = torch.tensor([[1.0, 0.0], [2.0, 2.0]], dtype=torch.float64)


def test_rbf_kernel_against_hand_computed_values_and_its_limits():
    kernel = rbf_kernel(X0, X1, lengthscale=1.0)
    assert torch.allclose(kernel, torch.exp(-0.5 * torch.tensor([[1.0, 8.0], [2.0, 5.0]], dtype=torch.float64)))
    x = torch.randn(10, 2, dtype=torch.float64)
    assert torch.allclose(rbf_kernel(x, x, 1e-8), torch.eye(10, dtype=torch.float64))
    assert torch.allclose(rbf_kernel(x, x, 1e8), torch.ones(10, 10, dtype=torch.float64))
    assert rbf_kernel(torch.randn(10, 2), torch.randn(20, 2), 1.0).shape == (10, 20)
    with pytest.raises(ValueError, match=r"\(10, 2\) and \(20, 3\)"):
        rbf_kernel(torch.randn(10, 2), torch.randn(20, 3), 1.0)


def test_mmd_against_the_hand_computed_value():
    # pooled distances²: within X0 1, within X1 5, across 1, 8, 2, 5 (Renate's toy set)
    within0, within1 = math.exp(-0.5), math.exp(-2.5)
    across = (math.exp(-0.5) + math.exp(-4) + math.exp(-1) + math.exp(-2.5)) / 4
    expected = within0 + within1 - 2 * across  # unbiased: no k(x, x) terms
    statistic, p_value, scale = mmd_test(X0, X1, num_permutations=0, lengthscale=1.0)
    assert statistic == pytest.approx(expected, abs=1e-12) and math.isnan(p_value) and scale == 1.0
    # Renate's figure (1.6065 + 1.0821 - 2 * 0.2687) adds the diagonal: 1/(m-1) + 1/(n-1) = 2 here
    assert statistic + 2 == pytest.approx(1.6065 + 1.0821 - 2 * 0.2687, abs=1e-4)


def test_the_vectorised_split_statistics_equal_the_statistic_of_each_split():
    x = torch.randn(12, 3, dtype=torch.float64)
    kernel = rbf_kernel(x, x, median_lengthscale(x))
    splits = torch.stack([torch.randperm(12) for _ in range(5)])
    query = torch.zeros(5, 12, dtype=torch.float64).scatter_(1, splits[:, :5], 1.0)
    direct = [mmd_statistic(kernel[order][:, order], 7) for order in (s.flip(0) for s in splits)]
    assert torch.allclose(_split_statistics(kernel, query, 5), torch.stack(direct))


def test_median_heuristic_is_the_median_distance_between_distinct_points():
    x = torch.tensor([[0.0], [1.0], [3.0]])  # distances 1, 2, 3
    assert median_lengthscale(x) == 2.0
    assert median_lengthscale(torch.zeros(4, 2)) == 1.0


def test_mmd_p_values_for_identical_and_disjoint_data():
    x = torch.randn(100, 2)
    assert mmd_test(x, x, num_permutations=100)[1] == 1.0
    # disjoint blobs: no permutation reaches the observed split, p = 1/(B+1) (Renate's estimator gives 0)
    assert mmd_test(x, torch.randn(100, 2) + 2.0, num_permutations=100)[1] == 1 / 101


def test_mmd_is_deterministic_under_a_seed():
    x, y = torch.randn(40, 3), torch.randn(50, 3) + 0.1
    run = lambda seed: mmd_test(x, y, 200, torch.Generator().manual_seed(seed))  # noqa: E731
    assert run(1) == run(1)
    assert {run(seed)[1] for seed in range(4)} != {run(1)[1]}


def test_ks_statistic_and_p_values_against_scipy():
    torch.manual_seed(0)
    for n0, n1, shift, tolerance in (
        (30, 30, 0.5, 1e-9),
        (200, 200, 0.2, 1e-9),
        (50, 200, 0.35, 0.01),
        (500, 2000, 0.1, 3e-3),
    ):
        a, b = torch.randn(n0, 4, dtype=torch.float64), torch.randn(n1, 4, dtype=torch.float64) + shift
        statistics, p_values = ks_statistics(a, b), ks_p_values(ks_statistics(a, b), n0, n1)
        for j in range(4):
            reference = stats.ks_2samp(a[:, j].numpy(), b[:, j].numpy())
            assert float(statistics[j]) == pytest.approx(reference.statistic, abs=1e-12)
            assert float(p_values[j]) == pytest.approx(reference.pvalue, abs=tolerance)
    lam = torch.linspace(0.01, 3.0, 200, dtype=torch.float64)
    assert torch.allclose(kolmogorov_survival(lam), torch.from_numpy(stats.kstwobign.sf(lam.numpy())), atol=1e-12)


def test_ks_bonferroni_over_the_features_that_vary():
    a, b = torch.randn(60, 3, dtype=torch.float64), torch.randn(60, 3, dtype=torch.float64)
    b[:, 1] += 1.0
    a[:, 2] = b[:, 2] = 7.0  # one constant value on both sides: D = 0, not counted
    statistic, p_value, details = ks_test(a, b)
    p = ks_p_values(ks_statistics(a, b), 60, 60)
    assert details["features_tested"] == 2 and details["most_shifted_feature"] == 1
    assert p_value == pytest.approx(min(1.0, 2 * float(p[:2].min()))) and statistic == float(ks_statistics(a, b)[1])
    assert ks_test(torch.ones(5, 2), torch.ones(6, 2))[:2] == (0.0, 1.0)


def test_chi_square_against_the_hand_computed_value_and_scipy():
    statistic, p_value, details = chi_square_test(torch.tensor([10, 20, 0]), torch.tensor([20, 10, 0]))
    # expected 15 in every cell: X² = 4 · 5²/15, one degree of freedom: p = erfc(sqrt(X²/2))
    assert statistic == pytest.approx(20 / 3) and details["dof"] == 1
    assert p_value == pytest.approx(math.erfc(math.sqrt(10 / 3)), rel=1e-10)
    table = [[12, 30, 7, 51], [20, 25, 9, 30]]
    reference = stats.chi2_contingency(table, correction=False)
    ours = chi_square_test(torch.tensor(table[0]), torch.tensor(table[1]))
    assert ours[0] == pytest.approx(reference.statistic) and ours[1] == pytest.approx(reference.pvalue, rel=1e-10)
    assert chi_square_test(torch.tensor([5, 0]), torch.tensor([9, 0]))[:2] == (0.0, 1.0)  # one class: nothing to test
