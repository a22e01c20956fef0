"""GEM and A-GEM: the projections by hand and against a brute-force solve, in a Learner, bad input."""

from __future__ import annotations

import itertools
from functools import partial

import pytest
import torch
from er_family_support import QUIET
from torch import nn

import retentive as R
from retentive.components.projection import (
    GEM_EPS,
    AveragedGradientEpisodicMemory,
    GradientEpisodicMemory,
    agem_project,
    assign_flat_grad_,
    flat_grad,
    gem_project,
)
from retentive.data import TensorChunk
from retentive.learner import Learner
from retentive.memory.buffer import ReplayBuffer
from retentive.models import MLP


def test_agem_projection_by_hand():
    g, ref = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g·r = -1, r·r = 2: g - (-1/2) r = (0.5, 0.5), orthogonal to r
    torch.testing.assert_close(agem_project(g, ref), torch.tensor([0.5, 0.5]))
    assert float(torch.dot(agem_project(g, ref), ref)) == pytest.approx(0.0)
    torch.testing.assert_close(agem_project(torch.tensor([1.0, 2.0]), ref), torch.tensor([1.0, 2.0]))  # g·r > 0


def brute_force_closest(g: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """argmin ||z - g||² s.t. G z >= 0, by projecting g onto every face {z: G_A z = 0} and keeping
    the nearest feasible one (exact for a small number of constraints)."""
    best, best_distance = None, float("inf")
    t = G.shape[0]
    for size in range(t + 1):
        for active in itertools.combinations(range(t), size):
            z = g.clone()
            if active:
                A = G[list(active)]
                z = g - A.T @ torch.linalg.solve(A @ A.T, A @ g)
            if bool((G @ z >= -1e-9).all()) and float((z - g).norm()) < best_distance:
                best, best_distance = z, float((z - g).norm())
    assert best is not None
    return best


@pytest.mark.parametrize("seed", range(6))
def test_gem_projection_satisfies_every_constraint_and_is_the_closest_such_gradient(seed):
    g_ = torch.Generator().manual_seed(seed)
    t, p = 2 + seed % 4, 7
    G = torch.randn(t, p, generator=g_, dtype=torch.float64)
    g = -G.mean(0) * 2 + 0.3 * torch.randn(p, generator=g_, dtype=torch.float64)  # violates some constraints
    assert bool((G @ g < 0).any())
    projected = gem_project(g, G, margin=0.0, eps=0.0)
    assert bool((G @ projected >= -1e-9).all()), G @ projected
    torch.testing.assert_close(projected, brute_force_closest(g, G), rtol=1e-6, atol=1e-8)


def dual_variables(projected: torch.Tensor, g: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """v with projected = Gᵀv + g (G has full row rank here)."""
    return torch.linalg.lstsq(G.T.double(), (projected - g).double().unsqueeze(1)).solution.squeeze(1)


def test_gem_with_a_margin_keeps_every_dual_variable_above_it_and_leaves_a_good_gradient_alone():
    g_ = torch.Generator().manual_seed(0)
    G = torch.randn(4, 10, generator=g_, dtype=torch.float64)
    g = -G[:2].sum(0) + 0.1 * G[3]
    projected = gem_project(g, G, margin=0.5, eps=0.0)
    v = dual_variables(projected, g, G)
    torch.testing.assert_close(G.T @ v + g, projected)
    assert bool((v >= 0.5 - 1e-9).all()), v
    assert bool((G @ projected >= -1e-9).all())
    # the margin moves the gradient further into the feasible cone than the closest projection
    closest = gem_project(g, G, margin=0.0, eps=0.0)
    assert float((G @ projected).min()) >= float((G @ closest).min()) - 1e-9
    assert float((G @ projected).sum()) > float((G @ closest).sum())
    fine = G.sum(0)
    assert bool((G @ fine >= 0).all())
    assert torch.equal(gem_project(fine, G, margin=0.5), fine)


def test_gem_beyond_the_exact_solver_still_satisfies_the_constraints():
    g_ = torch.Generator().manual_seed(1)
    G = torch.randn(12, 40, generator=g_, dtype=torch.float64)
    g = -G[:6].sum(0)
    projected = gem_project(g, G, margin=0.0, eps=0.0)
    assert bool((G @ projected >= -1e-6 * float(g.norm())).all())


def _memory_with_tasks(x: torch.Tensor, y: torch.Tensor, tasks: torch.Tensor) -> ReplayBuffer:
    memory = ReplayBuffer(len(y))
    memory.add({"inputs": x, "targets": y, "task_ids": tasks})
    return memory


def test_gem_in_a_learner_projects_the_step_gradient_against_each_past_task():
    torch.manual_seed(0)
    model = MLP(6, (5,), 4)
    memory = _memory_with_tasks(
        torch.randn(8, 6), torch.tensor([0, 1, 0, 1, 2, 3, 2, 3]), torch.tensor([0] * 4 + [1] * 4)
    )
    gem = GradientEpisodicMemory(memory_strength=0.0)
    learner = Learner(model, nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), components=[gem], memory=memory)
    learner.begin_update(0, 2, 2, None)
    learner.on_fit_start()
    assert len(gem._groups) == 2
    params = [p for p in model.parameters()]
    x, y = torch.randn(5, 6), torch.tensor([3, 3, 2, 3, 2])
    loss, ctx = learner.step_loss((x, y))
    loss.backward()
    g = flat_grad(params)
    past = []
    for task in (0, 1):
        idx = (memory.storage["task_ids"] == task).nonzero().flatten()
        grads = torch.autograd.grad(
            nn.functional.cross_entropy(model(memory.storage["inputs"][idx]), memory.storage["targets"][idx]), params
        )
        past.append(torch.cat([v.reshape(-1) for v in grads]))
    G = torch.stack(past)
    gem.on_before_optimizer_step(ctx)
    projected = flat_grad(params)
    torch.testing.assert_close(projected, gem_project(g, G, 0.0))
    # GEM regularises GGᵀ by eps (as the authors' code): a tight constraint is met up to eps * v
    v = dual_variables(projected, g, G)
    assert bool((G @ projected >= -GEM_EPS * float(v.abs().max()) - 1e-6).all()), (G @ projected, v)
    assert bool((G @ g < 0).any()), "the step gradient violated a constraint: the test projects"


def test_agem_in_a_learner_uses_a_memory_batch_of_sample_size():
    torch.manual_seed(0)
    model = MLP(6, (5,), 4)
    memory = _memory_with_tasks(torch.randn(20, 6), torch.randint(0, 2, (20,)), torch.zeros(20, dtype=torch.long))
    agem = AveragedGradientEpisodicMemory(sample_size=7)
    learner = Learner(model, nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), components=[agem], memory=memory)
    learner.begin_update(0, 1, 1, None)
    learner.on_fit_start()
    params = list(model.parameters())
    loss, ctx = learner.step_loss((torch.randn(4, 6), torch.tensor([2, 3, 2, 3])))
    loss.backward()
    g = flat_grad(params)
    state = memory.sample_generator.get_state()
    drawn = memory.sample(7)
    memory.sample_generator.set_state(state)
    grads = torch.autograd.grad(nn.functional.cross_entropy(model(drawn.inputs), drawn.targets), params)
    ref = torch.cat([v.reshape(-1) for v in grads])
    agem.on_before_optimizer_step(ctx)
    torch.testing.assert_close(flat_grad(params), agem_project(g, ref))
    assert float(torch.dot(flat_grad(params), ref)) >= -1e-5


def test_flat_grad_round_trip():
    model = nn.Linear(3, 2)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    flat = flat_grad(list(model.parameters()))
    assign_flat_grad_(list(model.parameters()), flat * 2)
    torch.testing.assert_close(flat_grad(list(model.parameters())), flat * 2)


def chunk(classes: tuple[int, int], n: int = 20, seed: int = 0) -> TensorChunk:
    g = torch.Generator().manual_seed(seed)
    return TensorChunk(torch.rand(n, 1, 28, 28, generator=g), torch.tensor(classes).repeat(n // 2))


@pytest.mark.parametrize("cls", [R.GradientEpisodicMemoryModelUpdater, R.AveragedGradientEpisodicMemoryModelUpdater])
def test_a_memory_smaller_than_the_tasks_seen_fails_before_training_and_writes_nothing(cls, tmp_path):
    first = tmp_path / "chunk_0"
    updater = cls(
        MLP(),
        nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        memory_size=1,
        batch_size=10,
        output_state_folder=first,
        **QUIET,
    )
    updater.update(chunk((0, 1)), task_id=0)
    second = tmp_path / "chunk_1"
    updater = cls(
        MLP(),
        nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        memory_size=1,
        batch_size=10,
        input_state_folder=first,
        output_state_folder=second,
        **QUIET,
    )
    steps = updater.learner.total_steps
    with pytest.raises(ValueError, match="a memory of 1 samples cannot keep one sample for each of the 2 tasks seen"):
        updater.update(chunk((2, 3)), task_id=1)
    assert not second.exists() and updater.learner.total_steps == steps and len(updater.memory) == 1


def test_the_episodic_memory_is_task_balanced_and_keeps_earlier_tasks_rows():
    updater = R.GradientEpisodicMemoryModelUpdater(
        MLP(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), memory_size=10, batch_size=10, **QUIET
    )
    updater.update(chunk((0, 1), 20, 0), task_id=0)
    first = updater.memory.storage["inputs"][:10].clone()
    assert len(updater.memory) == 10 and updater.memory.seen == 20
    updater.update(chunk((2, 3), 20, 1), task_id=1)
    updater.update(chunk((4, 5), 20, 2), task_id=2)
    tasks = updater.memory.storage["task_ids"][: len(updater.memory)]
    assert tasks.tolist() == [0] * 4 + [1] * 3 + [2] * 3 and updater.memory.seen == 60
    assert torch.equal(updater.memory.storage["inputs"][:4], first[:4])


def test_episodic_updaters_refuse_memory_batching():
    with pytest.raises(TypeError, match="drop the argument 'batch_memory_frac'"):
        R.GradientEpisodicMemoryModelUpdater(
            MLP(),
            nn.CrossEntropyLoss(),
            partial(torch.optim.SGD, lr=0.1),
            memory_size=10,
            batch_memory_frac=0.5,
            **QUIET,
        )
    with pytest.raises(ValueError, match="memory_strength must be >= 0"):
        GradientEpisodicMemory(-1.0)
    with pytest.raises(ValueError, match="sample_size must be an int >= 1"):
        AveragedGradientEpisodicMemory(0)
