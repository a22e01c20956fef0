"""CLS-ER: EMA decay and update, per-sample teacher selection, the consistency term, and the
teachers' life as submodules (device/dtype, state, modes, hooks)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from retentive.components import CLSConsistency, StepContext, ema_decay, ema_update_, select_teacher_logits
from retentive.memory import MemoryBatch


def test_ema_decay_by_hand():
    assert ema_decay(1, 0.999) == 0.5
    assert ema_decay(9, 0.999) == pytest.approx(0.9)
    assert ema_decay(3, 0.6) == 0.6  # 1 - 1/4 = 0.75 is capped by the weight
    assert ema_decay(100_000, 0.999) == 0.999


def test_ema_update_by_hand_and_buffers_copied():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(4.0)
        for p in ema.parameters():
            p.fill_(2.0)
        model[1].running_mean.fill_(7.0)
    ema_update_(ema, model, decay=0.75)
    for p in ema.parameters():
        assert torch.equal(p, torch.full_like(p, 0.75 * 2.0 + 0.25 * 4.0))
    assert torch.equal(ema[1].running_mean, torch.full((2,), 7.0))


def test_teacher_selection_by_hand():
    plastic = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    stable = torch.tensor([[0.0, 2.0], [3.0, 0.0], [1.0, 1.0]])
    targets = torch.tensor([0, 0, 1])
    # sample 0: plastic gives class 0 p=0.88 vs 0.12 -> plastic; sample 1: 0.5 vs 0.95 -> stable;
    # sample 2: a tie -> plastic (as in Renate).
    expected = torch.tensor([[2.0, 0.0], [3.0, 0.0], [1.0, 1.0]])
    assert torch.equal(select_teacher_logits(plastic, stable, targets), expected)


def _context(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> StepContext:
    return StepContext(
        inputs=inputs,
        targets=targets,
        task_ids=torch.zeros_like(targets),
        outputs=model(inputs),
        loss_fn=nn.functional.cross_entropy,
        model=model,
        step=0,
        memory=MemoryBatch(torch.arange(len(targets)), {"inputs": inputs, "targets": targets}),
        memory_outputs=model(inputs),
    )


def _set(module: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(value)


def test_consistency_term_by_hand():
    model = nn.Linear(2, 2, bias=False)
    cls = CLSConsistency(0.3, model)
    with torch.no_grad():
        cls.plastic_model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # favours class 0
        cls.stable_model.weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 1.0]]))  # favours class 1
        model.weight.zero_()
    inputs = torch.tensor([[2.0, 2.0], [2.0, 2.0]])
    ctx = _context(model, inputs, torch.tensor([0, 1]))
    # teacher logits: plastic [2, 0], stable [0, 2]; sample 0 -> plastic, sample 1 -> stable;
    # the model outputs 0, so MSE = mean([4, 0, 0, 4]) = 2.
    assert (cls.weight * cls.loss(ctx)).item() == pytest.approx(0.3 * 2.0)  # v2: the Learner applies the weight
    ctx.memory = None
    assert cls.loss(ctx) is None


def test_after_step_updates_teachers_with_their_probability():
    model = nn.Linear(2, 2)
    cls = CLSConsistency(0.1, model, plastic_model_update_probability=1.0, stable_model_update_probability=0.0)
    _set(cls.plastic_model, 0.0)
    _set(cls.stable_model, 0.0)
    _set(model, 1.0)
    ctx = _context(model, torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    cls.on_after_step(ctx)  # iteration 1: decay min(1 - 1/2, 0.999) = 0.5
    assert int(cls.iteration) == 1
    assert torch.equal(cls.plastic_model.weight, torch.full((2, 2), 0.5))
    assert torch.equal(cls.stable_model.weight, torch.zeros(2, 2))
    cls.on_after_step(ctx)  # iteration 2: decay 2/3 -> 2/3 * 0.5 + 1/3 * 1
    assert torch.allclose(cls.plastic_model.weight, torch.full((2, 2), 2 / 3))


def test_update_frequencies_follow_the_probabilities():
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    cls = CLSConsistency(0.1, model, plastic_model_update_probability=0.9, stable_model_update_probability=0.3)
    ctx = _context(model, torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))
    plastic = stable = 0
    for step in range(2000):
        _set(model, float(step + 1))  # a new value each step shows whether a teacher moved
        before = (cls.plastic_model.weight.clone(), cls.stable_model.weight.clone())
        cls.on_after_step(ctx)
        plastic += int(not torch.equal(before[0], cls.plastic_model.weight))
        stable += int(not torch.equal(before[1], cls.stable_model.weight))
    assert abs(plastic / 2000 - 0.9) < 0.03 and abs(stable / 2000 - 0.3) < 0.04


def test_teachers_are_frozen_submodules_that_follow_to_and_save():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    cls = CLSConsistency(0.1, model)
    state = cls.state_dict()
    assert "iteration" in state and "plastic_model.0.weight" in state and "stable_model.2.bias" in state
    assert all(not p.requires_grad for p in cls.parameters())
    model_params = {id(p) for p in model.parameters()}
    assert not any(id(p) in model_params for p in cls.parameters())
    cls.to(torch.float64)
    assert cls.plastic_model[0].weight.dtype == torch.float64 and cls.stable_model[2].bias.dtype == torch.float64
    other = CLSConsistency(0.1, model)
    cls.iteration.fill_(17)
    _set(cls.stable_model, 3.0)
    other.load_state_dict(cls.state_dict())
    assert int(other.iteration) == 17 and torch.equal(other.stable_model[0].weight, torch.full((4, 3), 3.0))


def test_teachers_run_in_eval_mode_and_do_not_fire_the_models_hooks():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.9), nn.Linear(4, 2))
    fired = []
    model[0].register_forward_hook(lambda module, args, output: fired.append(1))
    cls = CLSConsistency(1.0, model)
    cls.train()
    inputs = torch.ones(8, 4)
    ctx = _context(nn.Sequential(nn.Linear(4, 2)), inputs, torch.zeros(8, dtype=torch.long))
    fired.clear()
    assert torch.equal(cls.loss(ctx), cls.loss(ctx))  # dropout off: deterministic targets
    assert fired == []
    # Back to the learner's mode when the update ends, so that Lightning finds no module left in
    # eval mode when the next fit starts.
    cls.on_update_end(SimpleNamespace(model=model))
    assert cls.plastic_model.training and cls.stable_model.training


def test_constraints_are_checked():
    model = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="plastic_model_update_probability=0.5"):
        CLSConsistency(0.1, model, plastic_model_update_probability=0.5, stable_model_update_probability=0.7)
    with pytest.raises(ValueError, match="plastic_model_update_weight=0.999"):
        CLSConsistency(0.1, model, plastic_model_update_weight=0.999, stable_model_update_weight=0.99)
    with pytest.raises(ValueError, match="stable_model_update_weight must lie in"):
        CLSConsistency(0.1, model, stable_model_update_weight=1.5)
