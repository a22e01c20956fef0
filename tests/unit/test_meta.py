"""MER and online meta-learning: each update equals a hand-written reference on a tiny model."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from retentive import MetaExperienceReplayModelUpdater, OnlineMetaLearningModelUpdater
from retentive.data import TensorChunk

QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)
LR = 0.1


def data() -> tuple[TensorChunk, TensorChunk]:
    g = torch.Generator().manual_seed(3)
    memory = TensorChunk(torch.randn(4, 3, generator=g), torch.tensor([0, 1, 1, 0]))
    new = TensorChunk(torch.randn(2, 3, generator=g), torch.tensor([1, 0]))
    return memory, new


def tiny() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2)


def after_memory_update(make) -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Fill a 4-sample memory with the first chunk, then one step on the second: memory_batch_size
    4 draws the whole memory, so the reference knows the batch exactly."""
    memory, new = data()
    model = tiny()
    updater = make(model)
    updater.update(memory, task_id=0)
    assert len(updater.memory) == 4
    before = (model.weight.detach().clone(), model.bias.detach().clone())
    updater.update(new, task_id=1)
    return model, before, torch.cat([new.inputs, memory.inputs]), torch.cat([new.targets, memory.targets])


@pytest.mark.parametrize("beta, gamma, batch_num", [(1.0, 1.0, 1), (0.5, 0.3, 3)])
def test_mer_update_equals_a_hand_written_reference(beta, gamma, batch_num):
    def make(model):
        return MetaExperienceReplayModelUpdater(
            model,
            torch.nn.CrossEntropyLoss(),
            partial(torch.optim.SGD, lr=LR),
            memory_size=4,
            beta=beta,
            gamma=gamma,
            batch_num=batch_num,
            batch_size=2,
            memory_batch_size=4,
            **QUIET,
        )

    model, (w, b), x, y = after_memory_update(make)
    w_a0, b_a0 = w.clone(), b.clone()
    for _ in range(batch_num):  # Riemer et al.'s Algorithm 1 with Mammoth's one SGD step per batch
        w_i0, b_i0 = w.clone(), b.clone()
        wl, bl = w.clone().requires_grad_(), b.clone().requires_grad_()
        loss = F.cross_entropy(x @ wl.T + bl, y)  # the mean over the batch B_i: new and memory samples
        gw, gb = torch.autograd.grad(loss, (wl, bl))
        w, b = w - LR * gw, b - LR * gb
        w, b = w_i0 + beta * (w - w_i0), b_i0 + beta * (b - b_i0)  # within-batch Reptile
    w, b = w_a0 + gamma * (w - w_a0), b_a0 + gamma * (b - b_a0)  # across-batch Reptile
    assert torch.allclose(model.weight, w, atol=1e-6) and torch.allclose(model.bias, b, atol=1e-6)
    assert not torch.allclose(w, w_a0), "the step moved the weights"


@pytest.mark.parametrize("first_order", [False, True])
def test_online_meta_learning_equals_a_hand_written_maml_step(first_order):
    inner_lr = 0.5

    def make(model):
        return OnlineMetaLearningModelUpdater(
            model,
            torch.nn.CrossEntropyLoss(),
            partial(torch.optim.SGD, lr=LR),
            memory_size=4,
            inner_lr=inner_lr,
            inner_steps=2,
            first_order=first_order,
            batch_size=2,
            memory_batch_size=4,
            **QUIET,
        )

    model, (w0, b0), x, y = after_memory_update(make)
    w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    xn, yn, xm, ym = x[:2], y[:2], x[2:], y[2:]
    fw, fb = w, b
    for _ in range(2):  # the inner loop on the current batch only
        gw, gb = torch.autograd.grad(F.cross_entropy(xn @ fw.T + fb, yn), (fw, fb), create_graph=not first_order)
        if first_order:
            gw, gb = gw.detach(), gb.detach()
        fw, fb = fw - inner_lr * gw, fb - inner_lr * gb
    outer = (F.cross_entropy(xn @ fw.T + fb, yn) + F.cross_entropy(xm @ fw.T + fb, ym)) / 2  # ER's normalised loss
    gw, gb = torch.autograd.grad(outer, (w, b))
    assert torch.allclose(model.weight, w0 - LR * gw, atol=1e-6) and torch.allclose(model.bias, b0 - LR * gb, atol=1e-6)


def test_second_order_terms_matter():
    def final(first_order: bool) -> torch.Tensor:
        model, *_ = after_memory_update(
            lambda m: OnlineMetaLearningModelUpdater(
                m,
                torch.nn.CrossEntropyLoss(),
                partial(torch.optim.SGD, lr=LR),
                memory_size=4,
                inner_lr=0.5,
                first_order=first_order,
                batch_size=2,
                memory_batch_size=4,
                **QUIET,
            )
        )
        return model.weight.detach()

    assert not torch.allclose(final(True), final(False), atol=1e-7)


def test_bad_meta_arguments_are_refused_before_anything_is_written(tmp_path):
    common = (tiny(), torch.nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=LR))
    with pytest.raises(ValueError, match=r"inner_steps must be an int >= 1, got 0"):
        OnlineMetaLearningModelUpdater(
            *common, memory_size=10, inner_steps=0, output_state_folder=tmp_path / "s", **QUIET
        )
    with pytest.raises(ValueError, match="inner_lr must be > 0"):
        OnlineMetaLearningModelUpdater(*common, memory_size=10, inner_lr=0.0, **QUIET)
    with pytest.raises(ValueError, match=r"batch_num must be an int >= 1, got 0"):
        MetaExperienceReplayModelUpdater(
            *common, memory_size=10, batch_num=0, output_state_folder=tmp_path / "s", **QUIET
        )
    with pytest.raises(ValueError, match="beta must be > 0"):
        MetaExperienceReplayModelUpdater(*common, memory_size=10, beta=0.0, **QUIET)
    with pytest.raises(ValueError, match="takes no components"):
        from retentive import MemoryCrossEntropy

        MetaExperienceReplayModelUpdater(*common, memory_size=10, components=[MemoryCrossEntropy()], **QUIET)
    assert not (tmp_path / "s").exists()
