"""Task-incremental models: the multi-head wrapper, routing in the Learner and in evaluation."""

from __future__ import annotations

import pytest
import torch
from helpers import QUIET, sgd
from torch import nn

from retentive import ExperienceReplayModelUpdater
from retentive.data import TensorChunk
from retentive.errors import DataError
from retentive.evaluation import accuracy, accuracy_row
from retentive.models import MLP, MultiHeadClassifier, forward_routed, takes_task_ids

GROUPS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]


def test_each_sample_gets_its_tasks_head_and_the_fill_elsewhere():
    torch.manual_seed(0)
    model = MultiHeadClassifier(nn.Identity(), 4, [(0, 2), (1,)], num_classes=3)
    x = torch.randn(3, 4)
    out = model(x, torch.tensor([0, 1, 0]))
    head0, head1 = model.heads[0](x), model.heads[1](x)
    assert torch.allclose(out[0, [0, 2]], head0[0]) and out[0, 1] == -1e4
    assert torch.allclose(out[1, 1], head1[1, 0]) and out[1, 0] == out[1, 2] == -1e4
    everything = model(x)  # no task ids: every head writes its classes
    assert torch.allclose(everything[:, [0, 2]], head0) and torch.allclose(everything[:, 1], head1[:, 0])


def test_only_the_routed_head_receives_gradient():
    model = MultiHeadClassifier.mlp(GROUPS)
    out = model(torch.rand(4, 1, 28, 28), torch.tensor([2, 2, 2, 2]))
    nn.functional.cross_entropy(out, torch.tensor([4, 5, 4, 5])).backward()
    grads = [head.weight.grad for head in model.heads]
    assert grads[2] is not None and grads[2].abs().sum() > 0
    assert all(g is None for i, g in enumerate(grads) if i != 2)


def test_unknown_task_ids_are_refused():
    model = MultiHeadClassifier.mlp(GROUPS)
    with pytest.raises(DataError, match="task id 5 has no head"):
        model(torch.rand(2, 1, 28, 28), torch.tensor([0, 5]))


def test_routing_helpers():
    assert takes_task_ids(MultiHeadClassifier.mlp(GROUPS)) and not takes_task_ids(MLP())
    mlp = MLP()
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(forward_routed(mlp, x, torch.tensor([0, 1])), mlp(x))


def test_evaluation_routes_by_the_datasets_task_ids():
    torch.manual_seed(0)
    model = MultiHeadClassifier(nn.Identity(), 2, [(0, 1), (2, 3)], num_classes=4)
    with torch.no_grad():
        for head in model.heads:  # each head predicts its first class for x[0] > x[1]
            head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
            head.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    chunk = TensorChunk(x, torch.tensor([2, 3, 0]), torch.tensor([1, 1, 0]))
    assert accuracy(model, chunk) == 1.0
    # without the task ids every head competes and the tie goes to class 0: only the last sample is right
    assert accuracy(model, TensorChunk(x, chunk.targets)) == pytest.approx(1 / 3)


def test_task_aware_masking_of_a_single_head_model():
    model = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))
    x = torch.tensor([[0.0, 0.2, 0.9], [0.0, 0.9, 0.5]])  # argmax 2 and 1
    chunk = TensorChunk(x, torch.tensor([1, 1]))
    assert accuracy(model, chunk) == 0.5
    assert accuracy(model, chunk, classes=[0, 1]) == 1.0  # class 2 masked out
    assert accuracy_row(model, [chunk], task_aware=True).tolist() == [1.0]


@pytest.mark.parametrize("memory_size", [0, 100])
def test_the_learner_routes_new_and_memory_samples_to_their_own_heads(split_small, tmp_path, memory_size):
    train, test = split_small
    train = [TensorChunk(c.inputs[:300], c.targets[:300], torch.full((300,), t)) for t, c in enumerate(train[:2])]
    test = [TensorChunk(c.inputs, c.targets, torch.full_like(c.targets, t)) for t, c in enumerate(test[:2])]

    def updater(input_folder, output_folder):
        torch.manual_seed(0)
        return ExperienceReplayModelUpdater(
            MultiHeadClassifier.mlp(GROUPS[:2], num_classes=4),
            nn.CrossEntropyLoss(),
            sgd(0.1),
            memory_size=memory_size,
            batch_size=20,
            input_state_folder=input_folder,
            output_state_folder=output_folder,
            seed=0,
            **QUIET,
        )

    model = updater(None, tmp_path / "s0").update(train[0], task_id=0)
    head0 = model.heads[0].weight.detach().clone()
    model = updater(tmp_path / "s0", tmp_path / "s1").update(train[1], task_id=1)
    if memory_size == 0:  # task-1 samples reach head 1 only
        assert torch.equal(model.heads[0].weight, head0)
    else:  # replayed task-0 samples went through head 0
        assert not torch.equal(model.heads[0].weight, head0)
    row = accuracy_row(model, test)
    assert bool((row > 0.85).all()), row
