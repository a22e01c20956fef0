"""The ER-family components inside the Learner: the normalised total by hand, one model forward
per step, and EMA refresh of stored logits and features."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from er_family_support import manual_step, start
from torch import nn

from retentive import Learner, ReplayBuffer
from retentive.components import (
    CLSConsistency,
    LogitMSE,
    MemoryCrossEntropy,
    PooledOutputDistillation,
    ShrinkAndPerturb,
    pod_distance,
    select_teacher_logits,
)
from retentive.models import MLP


def _batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _super_learner(normalize: bool, gamma: float = 1.0) -> tuple[Learner, MLP]:
    torch.manual_seed(0)
    model = MLP(in_features=4, hidden=(5, 5), num_classes=3)
    components = [
        LogitMSE(0.5),
        MemoryCrossEntropy(0.3),
        CLSConsistency(0.2, model),
        ShrinkAndPerturb(0.9, 0.0),
        PooledOutputDistillation(0.7, model.feature_layers, "spatial", normalize=True),
    ]
    learner = Learner(
        model,
        nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        components=components,
        memory=ReplayBuffer(32, seed=0),
        memory_batch_size=6,
        loss_weight=1.5,
        loss_normalization=normalize,
        ema_memory_update_gamma=gamma,
    )
    return learner, model


def _hidden(model: MLP, x: torch.Tensor) -> dict[str, torch.Tensor]:
    h1 = F.relu(model.features[1](x.flatten(1)))
    return {"features.2": h1, "features.4": F.relu(model.features[3](h1))}


@pytest.mark.parametrize("normalize", [True, False])
def test_total_loss_by_hand(normalize):
    learner, model = _super_learner(normalize)
    optimizer = start(learner)
    for seed in range(3):
        manual_step(learner, optimizer, _batch(8, seed))
    x, y = _batch(8, 10)
    with torch.no_grad():
        total, ctx = learner.step_loss((x, y))
    memory = ctx.memory
    mx, my = memory.inputs, memory.targets
    with torch.no_grad():
        out_new, out_mem = model(x), model(mx)
        cls = learner.components[2]
        teacher = select_teacher_logits(cls.plastic_model(mx), cls.stable_model(mx), my)
        hidden = _hidden(model, mx)
        terms = [
            0.5 * F.mse_loss(out_mem, memory.data["logits"]),
            0.3 * F.cross_entropy(out_mem, my),
            0.2 * F.mse_loss(out_mem, teacher),
            0.7
            * (
                pod_distance(hidden["features.2"], memory.data["features.features.2"], "spatial", True)
                + pod_distance(hidden["features.4"], memory.data["features.features.4"], "spatial", True)
            )
            / 2,
        ]
        expected = 1.5 * F.cross_entropy(out_new, y) + sum(terms)
        if normalize:  # shrink-and-perturb has weight 0 and does not count
            expected = expected / (1.5 + 0.5 + 0.3 + 0.2 + 0.7)
    assert len(memory) == 6
    assert float(total) == pytest.approx(float(expected), rel=1e-5)


def test_one_model_forward_per_step():
    learner, model = _super_learner(True)
    optimizer = start(learner)
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    manual_step(learner, optimizer, _batch(8, 0))
    manual_step(learner, optimizer, _batch(8, 1))
    assert calls == [8, 8 + 6]  # new samples, then new + memory in one pass


def test_ema_refresh_of_stored_logits_and_features():
    learner, model = _super_learner(True, gamma=0.25)
    optimizer = start(learner)
    manual_step(learner, optimizer, _batch(8, 0))  # fills slots 0..7
    before = {k: v.clone() for k, v in learner.memory.storage.items()}
    batch = _batch(4, 1)  # goes to slots 8..11: the replayed slots are not overwritten
    optimizer.zero_grad()
    loss, ctx = learner.step_loss(batch)
    fresh = {f"features.{k}": v.detach() for k, v in ctx.memory_features.items()}
    fresh["logits"] = ctx.memory_outputs.detach()
    loss.backward()
    optimizer.step()
    learner.after_step(ctx)
    index = ctx.memory.indices
    assert index.numel() == 6 and int(index.max()) < 8
    for key in ("logits", "features.features.2", "features.features.4"):
        expected = 0.25 * before[key][index] + 0.75 * fresh[key]
        assert torch.allclose(learner.memory.storage[key][index], expected), key
        untouched = torch.ones(8, dtype=torch.bool)
        untouched[index] = False
        assert torch.equal(learner.memory.storage[key][:8][untouched], before[key][:8][untouched])
    assert torch.equal(learner.memory.storage["inputs"][8:12], batch[0])


def test_memory_left_alone_when_not_updated_every_step():
    learner, _ = _super_learner(True)
    learner.update_memory_every_step = False
    optimizer = start(learner)
    manual_step(learner, optimizer, _batch(8, 0))
    assert len(learner.memory) == 0 and learner.memory.seen == 0
