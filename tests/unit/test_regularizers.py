"""Online EWC and SI: their math against hand-computed values, their state, and bad input."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from er_family_support import QUIET
from torch import nn

import retentive as R
from retentive.components.base import Batch
from retentive.components.regularizers import (
    ElasticWeightConsolidation,
    SynapticIntelligence,
    fisher_diagonal,
    quadratic_penalty,
    si_importance,
    si_path_step_,
)
from retentive.data import TensorChunk
from retentive.errors import NonFiniteLossError
from retentive.learner import Learner
from retentive.models import MLP


def linear_model() -> nn.Linear:
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0], [0.0, 0.0]]))
        model.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return model


def by_hand_fisher(model: nn.Linear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For softmax(Wx + b): ∂log p_c/∂W_jk = (δ_cj - p_j) x_k, so
    Σ_c p_c (δ_cj - p_j)² x_k² = p_j (1 - p_j) x_k², and for b_j: p_j (1 - p_j)."""
    fw = torch.zeros(3, 2)
    fb = torch.zeros(3)
    for sample in x:
        p = [math.exp(v) for v in (model.weight @ sample + model.bias).tolist()]
        p = [v / sum(p) for v in p]
        for j in range(3):
            fb[j] += p[j] * (1 - p[j])
            for k in range(2):
                fw[j, k] += p[j] * (1 - p[j]) * float(sample[k]) ** 2
    return fw / len(x), fb / len(x)


@pytest.mark.parametrize("exact_jacobians", [False, True])
def test_fisher_diagonal_matches_the_closed_form_of_a_linear_softmax(exact_jacobians):
    model = linear_model()
    x = torch.tensor([[1.0, 2.0], [-0.5, 0.0], [3.0, -1.0]])
    batches = [
        Batch(x[:2], torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)),
        Batch(x[2:], torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)),
    ]
    fisher = fisher_diagonal(model, batches, lambda inputs, t: model(inputs), exact_jacobians=exact_jacobians)
    fw, fb = by_hand_fisher(model, x)
    torch.testing.assert_close(fisher["weight"], fw, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fisher["bias"], fb, rtol=1e-5, atol=1e-7)


def test_fisher_closed_form_for_linear_layers_equals_per_sample_jacobians_on_an_mlp():
    torch.manual_seed(0)
    model = MLP(12, (7, 5), 4)
    model.features[1].weight.requires_grad_(False)  # a frozen parameter is left out
    x = torch.randn(40, 12)
    batches = [
        Batch(
            x[i : i + 16],
            torch.zeros(len(x[i : i + 16]), dtype=torch.long),
            torch.zeros(len(x[i : i + 16]), dtype=torch.long),
        )
        for i in range(0, 40, 16)
    ]
    fast = fisher_diagonal(model, batches, lambda inputs, t: model(inputs))
    exact = fisher_diagonal(model, batches, lambda inputs, t: model(inputs), exact_jacobians=True)
    assert set(fast) == set(exact) and "features.1.weight" not in fast
    for name in fast:
        torch.testing.assert_close(fast[name], exact[name], rtol=1e-4, atol=1e-8)
    assert model.training, "the model's mode is restored"


def test_quadratic_penalty_by_hand():
    params = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([[3.0]])}
    importance = {"a": torch.tensor([0.5, 2.0]), "b": torch.tensor([[10.0]])}
    anchor = {"a": torch.tensor([0.0, 1.0]), "b": torch.tensor([[2.5]])}
    # 0.5*1 + 2*1 + 10*0.25
    assert float(quadratic_penalty(params, importance, anchor)) == pytest.approx(5.0)


def test_si_path_integral_and_importance_by_hand():
    omega = [torch.zeros(2)]
    si_path_step_(omega, [torch.tensor([2.0, -1.0])], [torch.tensor([1.0, 1.0])], [torch.tensor([0.8, 1.1])])
    # -g * Δθ = -(2 * -0.2), -(-1 * 0.1)
    torch.testing.assert_close(omega[0], torch.tensor([0.4, 0.1]))
    importance = si_importance(omega[0], torch.tensor([-0.2, 0.1]), epsilon=0.1)
    torch.testing.assert_close(importance, torch.tensor([0.4 / (0.04 + 0.1), 0.1 / (0.01 + 0.1)]))


def _learner(component, model, lr=0.1) -> tuple[Learner, torch.optim.Optimizer]:
    learner = Learner(model, nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=lr), components=[component])
    chunk = [Batch(torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]), torch.zeros(6, dtype=torch.long))]
    learner.begin_update(0, 0, 0, lambda batch_size: iter(chunk))
    learner.on_fit_start()
    return learner, learner.configure_optimizers()


def _step(learner, optimizer, x, y):
    optimizer.zero_grad()
    loss, ctx = learner.step_loss((x, y))
    loss.backward()
    for c in learner.components:
        c.on_before_optimizer_step(ctx)
    optimizer.step()
    learner.after_step(ctx)


def test_si_accumulates_lr_times_squared_gradient_under_plain_sgd_and_normalises_at_update_end():
    torch.manual_seed(0)
    model, lr, xi = linear_model(), 0.1, 0.9
    si = SynapticIntelligence(1.0, epsilon=xi)
    learner, optimizer = _learner(si, model, lr)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for _ in range(3):
        x, y = torch.randn(4, 2), torch.tensor([0, 1, 2, 1])
        grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), list(model.parameters()))
        for (n, _), g in zip(model.named_parameters(), grads):
            expected[n] += lr * g.pow(2)  # -g * Δθ with Δθ = -lr g
        _step(learner, optimizer, x, y)
    omega = si.parameter_state("omega", model)
    for n in expected:
        torch.testing.assert_close(omega[n], expected[n], rtol=1e-5, atol=1e-8)
    assert learner.components[0].loss is not None and si._active is False  # no penalty in the first update
    learner.on_fit_end()
    importance = si.parameter_state("importance", model)
    for n, p in model.named_parameters():
        torch.testing.assert_close(
            importance[n], expected[n] / ((p.detach() - start[n]).pow(2) + xi), rtol=1e-5, atol=1e-8
        )
        assert torch.equal(si.parameter_state("anchor", model)[n], p.detach())
        assert not si.parameter_state("omega", model)[n].any()
    assert bool(si.consolidated)


def test_ewc_folds_fisher_with_decay_and_penalises_from_the_anchor():
    torch.manual_seed(0)
    model = linear_model()
    ewc = ElasticWeightConsolidation(2.0, gamma=0.5)
    learner, optimizer = _learner(ewc, model)
    chunk_x = torch.randn(6, 2)
    chunk = [Batch(chunk_x, torch.zeros(6, dtype=torch.long), torch.zeros(6, dtype=torch.long))]
    learner.begin_update(0, 0, 0, lambda batch_size: iter(chunk))
    learner.on_fit_start()
    assert learner.step_loss((torch.randn(2, 2), torch.tensor([0, 1])))[1].losses.keys() == {"loss/new", "loss/total"}
    learner.on_fit_end()
    first = {n: v.clone() for n, v in ewc.parameter_state("fisher", model).items()}
    fw, fb = by_hand_fisher(model, chunk_x)
    torch.testing.assert_close(first["weight"], fw, rtol=1e-5, atol=1e-7)
    # second update: the penalty is λ Σ F (θ - θ*)², added after the normaliser
    learner.begin_update(0, 1, 1, lambda batch_size: iter(chunk))
    learner.on_fit_start()
    optimizer = learner.configure_optimizers()
    _step(learner, optimizer, torch.randn(3, 2), torch.tensor([0, 1, 2]))
    x, y = torch.randn(3, 2), torch.tensor([2, 1, 0])
    total, ctx = learner.step_loss((x, y))
    anchor = ewc.parameter_state("anchor", model)
    penalty = sum((first[n] * (p - anchor[n]).pow(2)).sum() for n, p in model.named_parameters())
    assert float(penalty.detach()) > 0
    torch.testing.assert_close(total, nn.functional.cross_entropy(model(x), y) + 2.0 * penalty)
    learner.on_fit_end()
    second = ewc.parameter_state("fisher", model)
    fw2, _ = by_hand_fisher(model, chunk_x)
    torch.testing.assert_close(second["weight"], 0.5 * first["weight"] + fw2, rtol=1e-5, atol=1e-7)


def _frozen_mlp() -> MLP:
    model = MLP(4, (3,), 2)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.mark.parametrize("cls", [R.ElasticWeightConsolidationModelUpdater, R.SynapticIntelligenceModelUpdater])
def test_a_model_without_trainable_parameters_is_refused_by_name(cls):
    with pytest.raises(ValueError, match=r"has none \(4 parameters, all with requires_grad=False\)"):
        cls(_frozen_mlp(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), **QUIET)


def test_an_overflowing_penalty_stops_the_update_and_writes_nothing(tmp_path):
    torch.manual_seed(0)
    chunks = [TensorChunk(torch.rand(40, 1, 28, 28), torch.randint(2 * i, 2 * i + 2, (40,))) for i in range(2)]
    first = tmp_path / "chunk_0"
    updater = R.ElasticWeightConsolidationModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.5),
        ewc_lambda=1e38,
        batch_size=10,
        output_state_folder=first,
        **QUIET,
    )
    updater.update(chunks[0], task_id=0)
    second = tmp_path / "chunk_1"
    updater = R.ElasticWeightConsolidationModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.5),
        ewc_lambda=1e38,
        batch_size=10,
        input_state_folder=first,
        output_state_folder=second,
        **QUIET,
    )
    before = {k: v.clone() for k, v in updater.model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="nothing was written"):
        updater.update(chunks[1], task_id=1)
    assert not second.exists()
    assert all(torch.equal(before[k], v) for k, v in updater.model.state_dict().items()), "the model was put back"


def test_a_non_finite_fisher_is_a_clear_error():
    model = linear_model()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    ewc = ElasticWeightConsolidation(1.0)
    learner, _ = _learner(ewc, model)
    with pytest.raises(
        NonFiniteLossError, match=r"EWC's Fisher diagonal is not finite for parameters \['weight', 'bias'\]"
    ):
        learner.on_fit_end()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="gamma must lie in"):
        ElasticWeightConsolidation(1.0, gamma=1.5)
    with pytest.raises(ValueError, match="si_epsilon must be > 0"):
        SynapticIntelligence(1.0, epsilon=0.0)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        ElasticWeightConsolidation(-1.0)


@pytest.mark.parametrize("cls", [R.ElasticWeightConsolidationModelUpdater, R.SynapticIntelligenceModelUpdater])
def test_a_failed_first_update_is_rolled_back_with_its_own_error(cls, tmp_path):
    """The per-parameter state is created during the fit; putting back the state from before it
    must drop it again rather than fail on missing keys and hide the real error."""
    out = tmp_path / "out"
    updater = cls(
        MLP(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=1e38), batch_size=10, output_state_folder=out, **QUIET
    )
    with pytest.raises(NonFiniteLossError):  # the first step's weights overflow
        updater.update(TensorChunk(torch.rand(40, 1, 28, 28), torch.randint(0, 2, (40,))), task_id=0)
    assert not out.exists()
    assert not any("__" in name for name, _ in updater.learner.components[0].named_buffers())
    updater.learner.optimizer_factory = partial(torch.optim.SGD, lr=0.1)
    updater.update(TensorChunk(torch.rand(20, 1, 28, 28), torch.randint(0, 2, (20,))), task_id=0)  # and it can go on
    assert out.exists()


def test_per_parameter_states_are_registered_in_declaration_order():
    """Two DDP ranks broadcast buffers in registration order: it must not depend on the hash seed."""
    ewc = ElasticWeightConsolidation(1.0)
    ewc.init_parameter_state(linear_model())
    assert [name for name, _ in ewc.named_buffers()] == [
        "consolidated",
        "fisher__weight",
        "fisher__bias",
        "anchor__weight",
        "anchor__bias",
    ]
