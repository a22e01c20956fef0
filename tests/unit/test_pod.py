"""POD: each pooling type against hand-computed values, the distance, flat-feature degeneracies."""

from __future__ import annotations

import math

import pytest
import torch

from retentive.components import PooledOutputDistillation, StepContext, pod_distance, pod_pool
from retentive.memory import MemoryBatch

# One sample, C=2, H=2, W=2. Squared: channel 0 = [[1, 4], [9, 16]], channel 1 = [[0, 1], [4, 0]].
A = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [2.0, 0.0]]]])

HAND = {
    # sum over W per (c, h) row, then sum over H per (c, w) column
    "spatial": [5, 25, 1, 4, 10, 20, 4, 1],
    "channel": [1, 5, 13, 16],  # sum over C per (h, w)
    "width": [10, 20, 4, 1],  # sum over H: one value per (c, w)
    "height": [5, 25, 1, 4],  # sum over W: one value per (c, h)
    "gap": [7.5, 1.25],  # mean over H and W per channel
    "pixel": [1, 4, 9, 16, 0, 1, 4, 0],
}


@pytest.mark.parametrize("kind", list(HAND))
def test_pooling_by_hand(kind):
    expected = torch.tensor([HAND[kind]], dtype=torch.float32)
    assert torch.allclose(pod_pool(A, kind, normalize=False), expected)
    assert torch.allclose(pod_pool(A, kind, normalize=True), expected / expected.norm())


def test_gap_normalised_by_hand():
    norm = math.sqrt(7.5**2 + 1.25**2)
    assert torch.allclose(pod_pool(A, "gap", normalize=True), torch.tensor([[7.5 / norm, 1.25 / norm]]))


def test_distance_is_per_sample_norm_averaged_over_the_batch():
    current = torch.cat([A, A])
    stored = torch.cat([torch.zeros_like(A), A])
    # sample 0: |[7.5, 1.25] - 0| = 7.6035...; sample 1: 0. Mean, not the batch's Frobenius norm.
    expected = math.sqrt(7.5**2 + 1.25**2) / 2
    assert pod_distance(current, stored, "gap", normalize=False).item() == pytest.approx(expected, rel=1e-6)
    spatial = torch.tensor(HAND["spatial"], dtype=torch.float32)
    assert pod_distance(current, stored, "spatial", normalize=False).item() == pytest.approx(
        float(spatial.norm()) / 2, rel=1e-6
    )


def test_distance_of_normalised_vectors_by_hand():
    stored = A.flip(-1)  # columns swapped: width statistics [20, 10, 1, 4]
    u = torch.tensor([10.0, 20, 4, 1])
    v = torch.tensor([20.0, 10, 1, 4])
    expected = float((u / u.norm() - v / v.norm()).norm())
    assert pod_distance(A, stored, "width", normalize=True).item() == pytest.approx(expected, rel=1e-6)
    # height statistics are unchanged by swapping columns
    assert pod_distance(A, stored, "height", normalize=True).item() == pytest.approx(0.0, abs=1e-7)


def test_flat_features_degenerate_as_documented():
    g = torch.Generator().manual_seed(0)
    current, stored = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    for normalize in (False, True):
        pixel = pod_distance(current, stored, "pixel", normalize)
        for kind in ("width", "height", "gap"):
            assert torch.allclose(pod_distance(current, stored, kind, normalize), pixel)
    assert torch.allclose(pod_distance(current, stored, "spatial", True), pod_distance(current, stored, "pixel", True))
    assert torch.allclose(
        pod_distance(current, stored, "spatial", False), math.sqrt(2) * pod_distance(current, stored, "pixel", False)
    )
    # channel keeps only the squared norm per sample; normalised, it is 1 for every sample.
    assert pod_distance(current, stored, "channel", True).item() == pytest.approx(0.0, abs=1e-6)
    squared_norms = (current.pow(2).sum(1) - stored.pow(2).sum(1)).abs().mean()
    assert torch.allclose(pod_distance(current, stored, "channel", False), squared_norms)


def test_gradient_is_finite_when_features_match():
    features = A.clone().requires_grad_(True)
    pod_distance(features, A, "spatial", True).backward()
    assert torch.isfinite(features.grad).all()


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="'channels'"):
        pod_pool(A, "channels")
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        pod_pool(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="shape"):
        pod_distance(A, torch.zeros(1, 2, 2, 3))
    with pytest.raises(ValueError, match="layer names"):
        PooledOutputDistillation(1.0, [])


def _context(memory_features: dict[str, torch.Tensor], stored: dict[str, torch.Tensor]) -> StepContext:
    n = next(iter(stored.values())).shape[0]
    data = {"inputs": torch.zeros(n, 1), "targets": torch.zeros(n, dtype=torch.long), **stored}
    return StepContext(
        inputs=torch.zeros(1, 1),
        targets=torch.zeros(1, dtype=torch.long),
        task_ids=torch.zeros(1, dtype=torch.long),
        outputs=torch.zeros(1, 2),
        loss_fn=torch.nn.functional.cross_entropy,
        model=torch.nn.Identity(),
        step=0,
        memory=MemoryBatch(torch.arange(n), data),
        memory_outputs=torch.zeros(n, 2),
        memory_features=memory_features,
    )


def test_component_weights_the_mean_over_layers():
    pod = PooledOutputDistillation(0.5, ["a", "b"], distillation_type="gap", normalize=False)
    assert pod.memory_keys == ("features.a", "features.b")
    # layer a: distance 7.6035 (vs zeros); layer b: 0 (identical) -> 0.5 * mean = 0.5 * 7.6035 / 2
    ctx = _context({"a": A, "b": A}, {"features.a": torch.zeros_like(A), "features.b": A})
    expected = 0.5 * math.sqrt(7.5**2 + 1.25**2) / 2
    assert (pod.weight * pod.loss(ctx)).item() == pytest.approx(
        expected, rel=1e-6
    )  # v2: the Learner applies the weight
    ctx.memory = None
    assert pod.loss(ctx) is None


@pytest.mark.parametrize("kind", list(HAND))
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape", [(3, 2, 3, 4), (3, 5)])
def test_gradient_is_the_numerical_one(kind, normalize, shape):
    g = torch.Generator().manual_seed(1)
    current = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    stored = torch.randn(*shape, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda c: pod_distance(c, stored, kind, normalize), (current,))
