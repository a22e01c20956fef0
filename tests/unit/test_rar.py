"""Retrospective adversarial replay: neighbour choice, the targeted attack's bound and direction,
mixup, and the updater end to end."""

from __future__ import annotations

import random
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from retentive import RetrospectiveAdversarialReplayModelUpdater
from retentive.components.adversarial import AdversarialReplay, MixupReplay, nearest_other_class, targeted_mifgsm
from retentive.components.base import StepContext
from retentive.data import load_mnist, split_mnist
from retentive.memory.buffer import MemoryBatch
from retentive.models import MLP

QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)


def test_nearest_neighbour_of_another_class():
    memory = torch.tensor([[0.0, 0.0], [5.0, 5.0], [1.0, 0.0]])
    current = torch.tensor([[0.1, 0.0], [4.0, 4.0], [0.9, 0.1]])
    targets, valid = nearest_other_class(memory, torch.tensor([1, 2, 3]), current, torch.tensor([1, 2, 3]))
    # sample 0 (label 1): nearest is current 0, but it shares label 1: next nearest of another class is current 2
    assert targets.tolist() == [3, 3, 1] and valid.all()
    targets, valid = nearest_other_class(memory[:1], torch.tensor([4]), current[:2], torch.tensor([4, 4]))
    assert targets.tolist() == [4] and valid.tolist() == [False]


def test_one_step_targeted_fgsm_is_a_signed_step_down_the_target_loss():
    torch.manual_seed(0)
    weight = torch.randn(3, 5)
    x = torch.rand(4, 5) * 0.5 + 0.25
    target = torch.tensor([0, 1, 2, 0])
    loss_of = lambda v: F.cross_entropy(v @ weight.T, target, reduction="sum")  # noqa: E731
    adversarial = targeted_mifgsm(loss_of, x, epsilon=0.1, iterations=1)
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss_of(xg), xg)
    assert torch.equal(adversarial, (x - 0.1 * grad.sign()).clamp(0, 1))
    assert loss_of(adversarial) < loss_of(x)


@pytest.mark.parametrize("iterations, decay", [(2, 1.0), (5, 0.5)])
def test_iterated_attack_stays_within_epsilon_and_the_input_range(iterations, decay):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x = torch.rand(16, 6)
    x[0] = 0.0
    target = torch.randint(0, 3, (16,))
    loss_of = lambda v: F.cross_entropy(model(v), target, reduction="sum")  # noqa: E731
    adversarial = targeted_mifgsm(loss_of, x, epsilon=0.05, iterations=iterations, decay=decay)
    assert (adversarial - x).abs().max() <= 0.05 + 1e-7
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert loss_of(adversarial) < loss_of(x)
    unclamped = targeted_mifgsm(loss_of, x - 5, epsilon=0.05, iterations=iterations, input_range=None)
    assert (unclamped - (x - 5)).abs().max() <= 0.05 + 1e-6 and unclamped.max() < 0


def _context(model, new, memory, generator_seed: int = 0) -> StepContext:
    x, y = new.inputs, new.targets
    mem = MemoryBatch(
        torch.arange(len(memory)),
        {"inputs": memory.inputs, "targets": memory.targets, "task_ids": torch.zeros(len(memory), dtype=torch.long)},
    )
    return StepContext(
        inputs=x,
        targets=y,
        task_ids=torch.zeros_like(y),
        outputs=model(x),
        loss_fn=torch.nn.CrossEntropyLoss(),
        model=model,
        step=0,
        memory=mem,
        memory_inputs=memory.inputs,
        memory_outputs=model(memory.inputs),
        generator=torch.Generator().manual_seed(generator_seed),
        rng=random.Random(generator_seed),
    )


@pytest.fixture(scope="module")
def mnist_chunks():
    return [c.subset(torch.arange(64)) for c in split_mnist(load_mnist("train"))[:2]]


def test_rar_moves_memory_samples_toward_the_chosen_neighbours_class(mnist_chunks):
    torch.manual_seed(0)
    model = MLP(hidden=(32,))
    old, new = mnist_chunks[0].subset(torch.arange(32)), mnist_chunks[1].subset(torch.arange(32))
    rar = AdversarialReplay(epsilon_fgsm=0.1, iter_fgsm=3, opt_lr=0.1)
    ctx = _context(model, new, old)
    adversarial, targets, valid = rar.perturb(ctx)
    assert valid.all() and set(targets.tolist()) <= {2, 3}, "old digits aim at the current chunk's classes"
    delta = (adversarial - old.inputs).abs()
    assert delta.max() <= 0.1 + 1e-6 and delta.max() > 0.05
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    weights = rar.lookahead(ctx)  # the attacked model: one SGD step on the current batch
    from torch.func import functional_call

    def target_loss(x):
        return F.cross_entropy(functional_call(model, weights, (x,)), targets, reduction="none")

    with torch.no_grad():
        before, after = target_loss(old.inputs), target_loss(adversarial)
    assert (after < before).float().mean() > 0.9, "the perturbation descends toward each neighbour's class"
    assert all(p.grad is None for p in model.parameters()), "the attack leaves the model's gradients alone"
    term = rar.loss(ctx)
    assert term is not None and term.dim() == 0 and term.requires_grad


def test_mixup_replay_mixes_with_a_beta_draw(mnist_chunks):
    torch.manual_seed(0)
    model = MLP(hidden=(16,))
    old, new = mnist_chunks[0].subset(torch.arange(8)), mnist_chunks[1].subset(torch.arange(8))
    ctx = _context(model, new, old, generator_seed=5)
    term = MixupReplay(coef_lambda=1.0).loss(ctx)
    lam = random.Random(5).betavariate(1.0, 1.0)
    order = torch.randperm(8, generator=torch.Generator().manual_seed(5))
    logits = model(lam * old.inputs + (1 - lam) * old.inputs[order])
    expected = lam * F.cross_entropy(logits, old.targets) + (1 - lam) * F.cross_entropy(logits, old.targets[order])
    assert torch.allclose(term, expected)


def test_rar_updater_trains_and_refuses_conflicting_memory_arguments(tmp_path, mnist_chunks):
    def make(folder, previous=None):
        torch.manual_seed(0)
        return RetrospectiveAdversarialReplayModelUpdater(
            MLP(hidden=(32,)),
            torch.nn.CrossEntropyLoss(),
            partial(torch.optim.SGD, lr=0.1),
            batch_size_mem=10,
            mem_size=50,
            batch_size=10,
            input_state_folder=previous,
            output_state_folder=tmp_path / folder,
            **QUIET,
        )

    make("s0").update(mnist_chunks[0])
    updater = make("s1", tmp_path / "s0")
    updater.update(mnist_chunks[1])
    rar = updater.learner.components[1]
    assert isinstance(rar, AdversarialReplay) and rar.last["inputs"].shape[0] == 10
    assert set(updater.memory.storage["targets"][: len(updater.memory)].tolist()) & {0, 1}
    with pytest.raises(ValueError, match="sets memory_size itself"):
        RetrospectiveAdversarialReplayModelUpdater(
            MLP(),
            torch.nn.CrossEntropyLoss(),
            partial(torch.optim.SGD, lr=0.1),
            batch_size_mem=10,
            memory_size=10,
            **QUIET,
        )
    with pytest.raises(ValueError, match="iter_fgsm must be an int >= 1"):
        RetrospectiveAdversarialReplayModelUpdater(
            MLP(),
            torch.nn.CrossEntropyLoss(),
            partial(torch.optim.SGD, lr=0.1),
            batch_size_mem=10,
            iter_fgsm=0,
            **QUIET,
        )
    plain = RetrospectiveAdversarialReplayModelUpdater(
        MLP(),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        batch_size_mem=10,
        use_adversarial_replay=False,
        use_mixup=False,
        **QUIET,
    )
    assert [type(c).__name__ for c in plain.learner.components] == ["MemoryCrossEntropy"]
    assert plain.learner.components[0].weight == 1.0, "without adversarial replay beta_coef counts as 0"
