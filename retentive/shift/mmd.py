"""Kernel maximum mean discrepancy (Gretton et al., JMLR 2012) with a permutation test.

The statistic is the unbiased MMD² of Gretton et al.'s Lemma 6 (the diagonal ``k(x_i, x_i)`` left
out of the within-sample means)::

    MMD²_u = Σ_{i≠j} k(x_i, x_j) / (m(m-1)) + Σ_{i≠j} k(y_i, y_j) / (n(n-1)) - 2 Σ_{i,j} k(x_i, y_j) / (mn)

Renate sums the diagonal into the within-sample terms but divides by ``m(m-1)``; for the Gaussian
kernel (``k(x, x) = 1``) its value is this one plus ``1/(m-1) + 1/(n-1)``, a constant for fixed
sample sizes, so the permutation p-values agree.

The kernel is Gaussian, ``k(a, b) = exp(-|a - b|² / (2 ℓ²))``, with ℓ by the median heuristic:
the median distance between distinct points of the pooled sample (Renate's median also counts
each point's zero distance to itself).

Permutation test: the pooled kernel matrix ``K`` is computed once; a random split is an
indicator vector ``a`` of the query group, and every sum the statistic needs follows from
``aᵀKa``, ``aᵀK1`` and ``aᵀdiag(K)``, so ``B`` permutations cost one ``(B, N) @ (N, N)`` product
(done in blocks). The p-value counts the observed split as one of the permutations,
``(1 + #{b: MMD²_b >= MMD²_obs}) / (1 + B)`` (Phipson & Smyth 2010), so it is never 0 and a test at
level α rejects at most a fraction α of the time under the null. Renate's ``#{>}/B`` can be 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Relative slack when comparing permuted statistics with the observed one (rounding of equal splits).
_TIE_TOLERANCE = 1e-10
_BLOCK = 256  # permutations per matrix product: bounds memory at _BLOCK x N


def rbf_kernel(x0: Tensor, x1: Tensor, lengthscale: float) -> Tensor:
    """``exp(-|x0_i - x1_j|² / (2 ℓ²))`` for ``(n0, d)`` and ``(n1, d)`` inputs."""
    if x0.dim() != 2 or x1.dim() != 2 or x0.shape[1] != x1.shape[1]:
        raise ValueError(f"expected (n0, d) and (n1, d) inputs, got shapes {tuple(x0.shape)} and {tuple(x1.shape)}")
    if not lengthscale > 0:
        raise ValueError(f"the kernel lengthscale must be > 0, got {lengthscale}")
    return torch.exp(-0.5 * torch.cdist(x0, x1).square() / lengthscale**2)


def median_lengthscale(x: Tensor) -> float:
    """The median distance between distinct rows of ``x`` (the mean nonzero one if that is 0; else 1)."""
    distances = torch.pdist(x)
    if distances.numel() == 0:
        return 1.0
    median = float(distances.median())
    if median > 0:
        return median
    nonzero = distances[distances > 0]
    return float(nonzero.mean()) if nonzero.numel() else 1.0


def _split_statistics(kernel: Tensor, query: Tensor, n_query: int) -> Tensor:
    """MMD²_u for each row of the ``(B, N)`` 0/1 matrix ``query`` (1: the sample is in the query group)."""
    n = kernel.shape[0]
    n_ref = n - n_query
    row_sums = kernel.sum(dim=1)
    total = row_sums.sum()
    diagonal = kernel.diagonal()
    quadratic = ((query @ kernel) * query).sum(dim=1)  # aᵀKa: query-query sum, diagonal included
    query_rows = query @ row_sums  # aᵀK1
    query_diag = query @ diagonal
    within_query = quadratic - query_diag
    within_ref = total - 2 * query_rows + quadratic - (diagonal.sum() - query_diag)
    between = query_rows - quadratic
    return (
        within_ref / (n_ref * (n_ref - 1)) + within_query / (n_query * (n_query - 1)) - 2 * between / (n_ref * n_query)
    )


def mmd_statistic(kernel: Tensor, n_reference: int) -> Tensor:
    """MMD²_u of the pooled ``kernel`` matrix whose first ``n_reference`` rows are the reference sample."""
    n = kernel.shape[0]
    if kernel.shape != (n, n):
        raise ValueError(f"expected a square kernel matrix, got shape {tuple(kernel.shape)}")
    if not 2 <= n_reference <= n - 2:
        raise ValueError(f"MMD²_u needs at least 2 samples on each side, got {n_reference} and {n - n_reference}")
    query = torch.zeros(1, n, dtype=kernel.dtype, device=kernel.device)
    query[0, n_reference:] = 1
    return _split_statistics(kernel, query, n - n_reference)[0]


def permutation_p_value(kernel: Tensor, n_reference: int, num_permutations: int, generator: torch.Generator) -> float:
    """``(1 + #{permuted MMD²_u >= observed}) / (1 + B)`` over ``B = num_permutations`` random splits."""
    observed = mmd_statistic(kernel, n_reference)
    n = kernel.shape[0]
    n_query = n - n_reference
    threshold = observed - _TIE_TOLERANCE * max(1.0, abs(float(observed)))
    exceed = 0
    for start in range(0, num_permutations, _BLOCK):
        block = min(_BLOCK, num_permutations - start)
        # the first n_query positions of a uniform random ordering form a uniform random split
        order = torch.rand(block, n, generator=generator).argsort(dim=1)
        query = torch.zeros(block, n, dtype=kernel.dtype)
        query.scatter_(1, order[:, :n_query], 1.0)
        exceed += int((_split_statistics(kernel, query.to(kernel.device), n_query) >= threshold).sum())
    return (1 + exceed) / (1 + num_permutations)


def mmd_test(
    reference: Tensor,
    query: Tensor,
    num_permutations: int = 1000,
    generator: torch.Generator | None = None,
    lengthscale: float | None = None,
) -> tuple[float, float, float]:
    """``(MMD²_u, p-value, lengthscale)`` of two ``(n, d)`` samples; float64 throughout.

    ``num_permutations=0`` skips the test and returns a p-value of ``nan``.
    """
    if num_permutations < 0:
        raise ValueError(f"num_permutations must be >= 0, got {num_permutations}")
    pooled = torch.cat([reference, query]).to(torch.float64)
    scale = median_lengthscale(pooled) if lengthscale is None else float(lengthscale)
    kernel = rbf_kernel(pooled, pooled, scale)
    statistic = float(mmd_statistic(kernel, reference.shape[0]))
    if num_permutations == 0:
        return statistic, float("nan"), scale
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return statistic, permutation_p_value(kernel, reference.shape[0], num_permutations, generator), scale
