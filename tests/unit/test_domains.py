"""Domain-incremental MNIST: pixel permutations, torch-only rotations and lazily built chunks."""

from __future__ import annotations

import pytest
import torch

from retentive.data import (
    LazyChunks,
    TensorChunk,
    permute_pixels,
    permuted_mnist,
    random_angles,
    random_permutations,
    rotate,
    rotated_mnist,
)


def test_permute_pixels_moves_pixel_k_from_its_source():
    images = torch.arange(8.0).reshape(2, 1, 2, 2)
    out = permute_pixels(images, torch.tensor([3, 0, 2, 1]))
    assert out.shape == images.shape
    assert out[0].flatten().tolist() == [3.0, 0.0, 2.0, 1.0]
    assert out[1].flatten().tolist() == [7.0, 4.0, 6.0, 5.0]
    with pytest.raises(ValueError, match="permutation of 4 pixels"):
        permute_pixels(images, torch.arange(5))


def test_random_permutations_are_seeded_and_differ_per_task():
    p = random_permutations(3, 784, seed=5)
    assert torch.equal(p, random_permutations(3, 784, seed=5))
    assert not torch.equal(p, random_permutations(3, 784, seed=6))
    assert all(torch.equal(row.sort().values, torch.arange(784)) for row in p)
    assert not torch.equal(p[0], p[1])


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_rotation_by_right_angles_matches_rot90(mode):
    images = torch.rand(3, 1, 28, 28)
    assert torch.allclose(rotate(images, 0.0, mode), images, atol=1e-5)
    assert torch.allclose(rotate(images, 90.0, mode), torch.rot90(images, 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(rotate(images, 180.0, mode), images.flip(-1).flip(-2), atol=1e-5)
    assert torch.allclose(rotate(images, -90.0, mode), torch.rot90(images, -1, dims=(-2, -1)), atol=1e-5)


def test_rotation_turns_counter_clockwise_about_the_centre_with_zero_fill():
    image = torch.zeros(1, 9, 9)
    image[0, 4, 8] = 1.0  # a dot right of the centre
    out = rotate(image, 45.0)
    y, x = divmod(int(out[0].argmax()), 9)
    assert (y, x) == (1, 7)  # up and to the right: counter-clockwise on screen
    corner = rotate(torch.ones(1, 9, 9), 45.0)
    assert corner[0, 0, 0] == 0.0 and corner[0, 4, 4] == 1.0


def test_integer_images_are_rounded_back_to_their_dtype():
    images = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    out = rotate(images, 33.0, mode="bilinear")
    assert out.dtype == torch.uint8 and out.shape == images.shape


def test_random_angles_lie_in_the_range_and_are_seeded():
    a = random_angles(20, seed=1)
    assert torch.equal(a, random_angles(20, seed=1)) and bool(((a >= 0) & (a < 180)).all())
    with pytest.raises(ValueError):
        random_angles(2, 0, low=5, high=5)


def test_lazy_chunks_build_on_access_and_cache_when_asked():
    calls = []

    def build(i):
        calls.append(i)
        return TensorChunk(torch.zeros(1, 1), torch.tensor([i]))

    lazy = LazyChunks(build, 3)
    assert calls == []
    lazy[1], lazy[1]
    assert calls == [1, 1] and len(lazy) == 3 and lazy[-1].targets.item() == 2
    cached = LazyChunks(build, 3, cache=True)
    calls.clear()
    cached[0], cached[0]
    assert calls == [0]
    with pytest.raises(IndexError):
        lazy[3]


def test_permuted_mnist_same_seed_same_tasks_for_train_and_test(mnist_test):
    small = mnist_test.subset(torch.arange(50))
    a, b = permuted_mnist(small, 4, seed=2), permuted_mnist(small, 4, seed=2)
    assert len(a) == 4
    assert torch.equal(a[3].inputs, b[3].inputs) and not torch.equal(a[0].inputs, a[1].inputs)
    assert torch.equal(a[2].targets, small.targets) and a[2].task_ids.tolist() == [2] * 50
    # a permutation keeps every pixel value
    assert torch.equal(a[1].inputs.flatten(1).sort(dim=1).values, small.inputs.flatten(1).sort(dim=1).values)


def test_rotated_mnist_applies_one_seeded_angle_per_task(mnist_test):
    small = mnist_test.subset(torch.arange(20))
    chunks = rotated_mnist(small, 3, seed=4)
    angles = random_angles(3, seed=4).tolist()
    assert torch.allclose(chunks[1].inputs, rotate(small.inputs, angles[1]))
    assert chunks.names[1] == f"rotation {angles[1]:.1f} deg"
    assert chunks[0].inputs.shape == small.inputs.shape
