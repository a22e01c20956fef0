"""LwF and iCaRL: distillation terms by hand, herding, the NME classifier, and bad input."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from er_family_support import QUIET
from torch import nn

import retentive as R
from retentive.components.base import Batch
from retentive.components.distillation import (
    LearningWithoutForgetting,
    NearestMeanOfExemplars,
    distillation_kl,
    icarl_classifier,
    icarl_targets,
    nme_scores,
)
from retentive.components.exemplars import balanced_quotas, herding_selection
from retentive.data import TensorChunk
from retentive.learner import Learner
from retentive.models import MLP


def test_distillation_kl_by_hand():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2 * math.log(3.0), 0.0]])  # at T = 2: softmax = (3/4, 1/4)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert float(distillation_kl(student, teacher, 2.0)) == pytest.approx(expected)
    # mean over the batch: a second, identical-to-teacher sample adds 0
    both = distillation_kl(
        torch.tensor([[0.0, 0.0], [1.0, 2.0]]), torch.tensor([[2 * math.log(3.0), 0.0], [1.0, 2.0]]), 2.0
    )
    assert float(both) == pytest.approx(expected / 2, rel=1e-5)


def test_icarl_targets_by_hand():
    targets = icarl_targets(
        torch.tensor([2, 0]), torch.tensor([[0.0, math.log(3.0), 5.0], [1.0, 1.0, 1.0]]), torch.tensor([1]), 3
    )
    expected = torch.tensor([[0.0, 0.75, 1.0], [1.0, 1 / (1 + math.exp(-1.0)), 0.0]])
    torch.testing.assert_close(targets, expected)


def test_lwf_distils_the_start_of_update_model_on_old_classes_only():
    torch.manual_seed(0)
    model = MLP(4, (5,), 4)
    lwf = LearningWithoutForgetting(1.0, temperature=2.0)
    learner = Learner(model, nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.5), components=[lwf])
    first = [Batch(torch.randn(8, 4), torch.tensor([0, 1] * 4), torch.zeros(8, dtype=torch.long))]
    learner.begin_update(0, 0, 0, lambda size: iter(first))
    learner.on_fit_start()
    _, ctx = learner.step_loss((torch.randn(3, 4), torch.tensor([0, 1, 0])))
    assert "loss/0_LearningWithoutForgetting" not in ctx.losses  # nothing to distil from yet
    learner.on_fit_end()
    assert lwf.seen_classes.tolist() == [True, True]
    second = [Batch(torch.randn(8, 4), torch.tensor([2, 3] * 4), torch.ones(8, dtype=torch.long))]
    learner.begin_update(0, 1, 1, lambda size: iter(second))
    learner.on_fit_start()
    teacher = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = learner.configure_optimizers()
    for _ in range(3):  # the model moves; the teacher stays
        optimizer.zero_grad()
        loss, ctx = learner.step_loss((torch.randn(4, 4), torch.tensor([2, 3, 2, 3])))
        loss.backward()
        optimizer.step()
    x, y = torch.randn(5, 4), torch.tensor([2, 3, 3, 2, 2])
    total, ctx = learner.step_loss((x, y))
    old = MLP(4, (5,), 4)
    old.load_state_dict(teacher)
    out = model(x)
    kd = distillation_kl(out[:, :2], old(x)[:, :2], 2.0)
    assert float(kd.detach()) > 0
    torch.testing.assert_close(ctx.losses["loss/0_LearningWithoutForgetting"], kd)
    torch.testing.assert_close(total, nn.functional.cross_entropy(out, y) + kd)  # added after the normaliser
    learner.on_fit_end()
    assert lwf.seen_classes.tolist() == [True] * 4


def test_herding_picks_the_greedy_mean_matching_sequence_by_hand():
    # class mean 1.0: first the point nearest it (1.1); then the one whose pair mean is nearest
    # ((1.1 + 0.8)/2 = 0.95 beats (1.1 + 1.2)/2 = 1.15); then (1.9 + 1.2)/3 = 1.033 beats
    # (1.9 + 0.0)/3 = 0.633 and (1.9 + 3.0)/3 = 1.633
    values = torch.tensor([0.0, 3.0, 1.2, 0.8, 1.1, -0.1])
    assert float(values.mean()) == pytest.approx(1.0)
    chosen = herding_selection(values.view(1, 6, 1), torch.tensor([6]), 3)
    assert chosen.tolist() == [[4, 3, 2]]


def test_herding_mean_is_closer_to_the_class_mean_than_random_selection():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 300, 16, generator=g) * torch.linspace(0.1, 3.0, 16)
    counts = torch.tensor([300, 180])  # the second class is padded
    chosen = herding_selection(features, counts, 10)
    assert (chosen >= 0).all() and all(int(chosen[k].max()) < int(counts[k]) for k in range(2))
    for k in range(2):
        real = features[k, : int(counts[k])]
        mean = real.mean(0)
        herded = (real[chosen[k]].mean(0) - mean).norm()
        random = torch.stack(
            [(real[torch.randperm(len(real), generator=g)[:10]].mean(0) - mean).norm() for _ in range(200)]
        )
        assert herded < random.min(), (herded, random.min())


def test_herding_runs_out_of_candidates_gracefully():
    chosen = herding_selection(torch.randn(2, 3, 2), torch.tensor([3, 1]), 3)
    assert chosen[1].tolist()[1:] == [-1, -1] and sorted(chosen[0].tolist()) == [0, 1, 2]


def test_balanced_quotas():
    assert balanced_quotas(10, 3) == [4, 3, 3]
    with pytest.raises(ValueError, match="a memory of 2 samples cannot keep one sample for each of the 3 classes seen"):
        balanced_quotas(2, 3, "classes")


class Toy(nn.Module):
    """Identity features (the inputs), a linear head."""

    feature_layers = ("features",)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.head = nn.Linear(2, 3)

    def forward(self, x):
        return self.head(self.features(x))


def test_nme_classifier_on_a_toy_set():
    means = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), dim=-1)
    nme = NearestMeanOfExemplars(Toy(), "features", means, torch.tensor([True, True, False]))
    x = torch.tensor([[2.0, 0.1], [0.2, 5.0], [-3.0, 0.0], [0.5, -0.4]])
    scores = nme(x)
    # class 2 has no exemplars: never predicted, even for a point at its mean
    assert scores.argmax(-1).tolist() == [0, 1, 1, 0]
    assert torch.isinf(scores[:, 2]).all()
    # the score is -||f/|f| - μ||²
    f = torch.nn.functional.normalize(x[0:1], dim=-1)
    assert float(scores[0, 0]) == pytest.approx(-float((f - means[0]).pow(2).sum()), abs=1e-6)
    torch.testing.assert_close(
        nme_scores(x, means, torch.ones(3, dtype=torch.bool)).argmax(-1), torch.tensor([0, 1, 2, 0])
    )
    with pytest.raises(ValueError, match="no class means yet"):
        NearestMeanOfExemplars(Toy(), "features", torch.zeros(0, 0), torch.zeros(0, dtype=torch.bool))


def blobs(classes: list[int], n: int, seed: int) -> TensorChunk:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]])
    y = torch.tensor(classes).repeat_interleave(n)
    return TensorChunk(centres[y] + 0.5 * torch.randn(len(y), 2, generator=g), y)


def test_icarl_herds_a_balanced_memory_keeps_class_means_and_predicts_by_nme(tmp_path):
    torch.manual_seed(0)
    chunks = [blobs([0, 1], 30, 0), blobs([2, 3], 30, 1)]
    previous = None
    for i, chunk in enumerate(chunks):
        folder = tmp_path / f"chunk_{i}"
        updater = R.ICaRLModelUpdater(
            MLP(2, (16,), 4),
            nn.CrossEntropyLoss(),
            partial(torch.optim.SGD, lr=0.1),
            memory_size=12,
            batch_size=10,
            input_state_folder=previous,
            output_state_folder=folder,
            **{**QUIET, "max_epochs": 3},
        )
        updater.update(chunk, task_id=i)
        previous = folder
        counts = updater.memory.class_counts(4).tolist()
        assert counts == ([6, 6, 0, 0] if i == 0 else [3, 3, 3, 3])
    icarl = updater.learner.components[0]
    assert icarl.has_mean.tolist() == [True] * 4 and icarl.class_means.shape == (4, 16)
    assert updater.hyperparameters["feature_layer"] == "features.2"
    # the classes kept their first (herded) exemplars: the memory of chunk 0's classes is a prefix
    nme = icarl_classifier(MLP(2, (16,), 4), previous)
    torch.testing.assert_close(nme.class_means, icarl.class_means)
    test = torch.utils.data.ConcatDataset([blobs([0, 1], 50, 5), blobs([2, 3], 50, 6)])
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.tensor([int(test[i][1]) for i in range(len(test))])
    assert float((nme(x).argmax(-1) == y).float().mean()) > 0.9
    torch.testing.assert_close(nme(x), icarl.classifier(updater.model)(x))


def test_icarl_with_fewer_memory_slots_than_classes_fails_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    updater = R.ICaRLModelUpdater(
        MLP(2, (4,), 4),
        nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        memory_size=3,
        batch_size=10,
        output_state_folder=out,
        **QUIET,
    )
    with pytest.raises(ValueError, match="a memory of 3 samples cannot keep one sample for each of the 4 classes seen"):
        updater.update(blobs([0, 1, 2, 3], 5, 0), task_id=0)
    assert not out.exists() and len(updater.memory) == 0


def test_icarl_needs_a_feature_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="iCaRL needs feature_layer"):
        R.ICaRLModelUpdater(model, nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), memory_size=4, **QUIET)
    with pytest.raises(ValueError, match="feature_layer 'nope' is not a submodule"):
        R.ICaRLModelUpdater(
            model, nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), memory_size=4, feature_layer="nope", **QUIET
        )
