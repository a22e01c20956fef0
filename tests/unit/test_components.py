"""Loss formulas against hand-computed values."""

from __future__ import annotations

import torch
from torch import nn

from retentive.components import LogitMSE, MemoryCrossEntropy, StepContext
from retentive.learner import normalized_total
from retentive.memory import MemoryBatch


def _ctx(memory_outputs, memory_targets, stored_logits=None):
    data = {"inputs": torch.zeros(len(memory_targets), 1), "targets": memory_targets}
    if stored_logits is not None:
        data["logits"] = stored_logits
    return StepContext(
        inputs=torch.zeros(1, 1),
        targets=torch.zeros(1, dtype=torch.long),
        task_ids=torch.zeros(1, dtype=torch.long),
        outputs=torch.zeros(1, 2),
        loss_fn=nn.CrossEntropyLoss(),
        model=nn.Identity(),
        step=0,
        memory=MemoryBatch(indices=torch.arange(len(memory_targets)), data=data),
        memory_outputs=memory_outputs,
    )


def test_memory_cross_entropy_by_hand():
    # logits (0, ln 3): softmax = (1/4, 3/4); CE for class 1 = -ln(3/4), class 0 = -ln(1/4)
    logits = torch.tensor([[0.0, torch.log(torch.tensor(3.0))], [0.0, torch.log(torch.tensor(3.0))]])
    ctx = _ctx(logits, torch.tensor([1, 0]))
    expected = 0.5 * 0.5 * (-torch.log(torch.tensor(0.75)) - torch.log(torch.tensor(0.25)))
    term = MemoryCrossEntropy(0.5)
    assert torch.allclose(term.weight * term.loss(ctx), expected)  # v2: the Learner applies the weight


def test_logit_mse_by_hand():
    outputs = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    stored = torch.tensor([[0.0, 2.0], [3.0, 6.0]])
    # squared errors 1, 0, 0, 4 -> mean 1.25, weight 0.2 -> 0.25
    ctx = _ctx(outputs, torch.tensor([0, 1]), stored)
    term = LogitMSE(0.2)
    assert torch.allclose(term.weight * term.loss(ctx), torch.tensor(0.25))  # v2: the Learner applies the weight
    assert LogitMSE.memory_keys == ("logits",)


def test_terms_absent_without_memory():
    ctx = _ctx(None, torch.tensor([0]))
    ctx.memory = None
    assert MemoryCrossEntropy(1.0).loss(ctx) is None and LogitMSE(1.0).loss(ctx) is None


def test_normalized_total_is_renates_formula():
    new = torch.tensor(2.0)
    terms = [(0.5, torch.tensor(0.5 * 4.0)), (0.25, torch.tensor(0.25 * 8.0))]
    # (1 * 2 + 2 + 2) / (1 + 0.5 + 0.25) = 6 / 1.75
    assert torch.isclose(normalized_total(1.0, new, terms, True), torch.tensor(6.0 / 1.75))
    assert torch.isclose(normalized_total(1.0, new, terms, False), torch.tensor(6.0))
    # no terms present (empty memory): exactly the new-data loss
    assert torch.equal(normalized_total(1.0, new, [], True), new)
    # a weight-0 component changes neither numerator nor denominator
    assert torch.isclose(normalized_total(1.0, new, [(0.0, torch.tensor(0.0))], True), new)


def test_component_state_is_declared_once():
    class Counter(MemoryCrossEntropy):
        def __init__(self):
            super().__init__(1.0)
            self.add_state("count", torch.zeros((), dtype=torch.long))

    c = Counter()
    c.count += 3
    clone = Counter()
    clone.load_state_dict(c.state_dict())
    assert int(clone.count) == 3
    assert set(c.state_dict()) == {"count"}
