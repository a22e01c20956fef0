"""Update-end selection: the pure functions against hand-computed and brute-force values, and
the policies over a chunk plus the memory."""

from __future__ import annotations

import itertools
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from retentive.data import TensorChunk
from retentive.memory import (
    ChunkContext,
    ForgettingPolicy,
    GradientDiversityPolicy,
    HerdingPolicy,
    KCenterPolicy,
    ReplayBuffer,
    run_update_end,
)
from retentive.memory.identity import IDENTITY_KEYS
from retentive.memory.selection import (
    class_quotas,
    covering_radius,
    forgetting_counts,
    forgetting_scores,
    herding,
    k_center_greedy,
    last_parameters,
    per_sample_gradients,
)
from retentive.models import MLP


# ---------------------------------------------------------------------------- class quotas
@settings(max_examples=100, deadline=None)
@given(available=st.lists(st.integers(0, 30), min_size=1, max_size=8), capacity=st.integers(0, 120))
def test_class_quotas_are_as_equal_as_availability_allows(available, capacity):
    a = torch.tensor(available)
    q = class_quotas(a, capacity)
    assert int(q.sum()) == min(capacity, sum(available))
    assert bool((q <= a).all()) and bool((q >= 0).all())
    # a class gets less than another's share minus one only when it has nothing more to give
    for i, j in itertools.permutations(range(len(available)), 2):
        if q[i] < q[j] - 1:
            assert q[i] == a[i]


# ---------------------------------------------------------------------------- herding
def test_herding_by_hand():
    # 1-D, unnormalised: mean 3.2; p1 = 3 (|3-3.2|), p2 = 2 ((3+2)/2 = 2.5 beats (3+10)/2 and
    # the rest), p3 = 1 ((5+1)/3 = 2 beats (5+0)/3 and (5+10)/3 = 5).
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    labels = torch.zeros(5, dtype=torch.int64)
    assert herding(x, labels, torch.tensor([3]), normalize=False).tolist() == [3, 2, 1]
    # two classes at once give each class's own order; quotas may differ
    x2 = torch.cat([x, x + 100])
    labels2 = torch.tensor([0] * 5 + [1] * 5)
    assert herding(x2, labels2, torch.tensor([3, 1]), normalize=False).tolist() == [3, 2, 1, 8]


def test_herding_mean_is_closer_to_the_class_mean_than_random_selection():
    g = torch.Generator().manual_seed(0)
    classes, per_class, dim, m = 3, 400, 16, 20
    centres = torch.randn(classes, dim, generator=g) * 3
    labels = torch.arange(classes).repeat_interleave(per_class)
    x = centres[labels] + torch.randn(classes * per_class, dim, generator=g) * torch.linspace(0.5, 2, dim)
    chosen = herding(x, labels, torch.full((classes,), m))
    xn = nn.functional.normalize(x, dim=1)
    for c in range(classes):
        rows = (labels == c).nonzero().squeeze(1)
        mu = xn[rows].mean(0)
        ours = chosen[labels[chosen] == c]
        assert ours.numel() == m and set(ours.tolist()) <= set(rows.tolist())
        herd_error = float((xn[ours].mean(0) - mu).norm())
        random_errors = torch.stack(
            [(xn[rows[torch.randperm(per_class, generator=g)[:m]]].mean(0) - mu).norm() for _ in range(200)]
        )
        assert herd_error < float(random_errors.min()), (herd_error, float(random_errors.min()))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), classes=st.integers(1, 4), normalize=st.booleans())
def test_batched_herding_equals_the_per_class_loop_of_icarl(seed, classes, normalize):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (60,), generator=g)
    x = torch.randn(60, 5, generator=g, dtype=torch.float64)
    counts = torch.bincount(labels, minlength=classes)
    quotas = torch.minimum(counts, torch.randint(0, 12, (classes,), generator=g))
    expected = []
    for c in range(classes):  # iCaRL's ConstructExemplarSet, one class and one exemplar at a time
        rows = (labels == c).nonzero().squeeze(1).tolist()
        f = {i: (x[i] / x[i].norm() if normalize else x[i]) for i in rows}
        mu = sum(f.values()) / len(rows) if rows else None
        chosen, total = [], torch.zeros(5, dtype=torch.float64)
        for k in range(1, int(quotas[c]) + 1):
            best = min((i for i in rows if i not in chosen), key=lambda i: float((mu - (total + f[i]) / k).norm()))
            chosen.append(best)
            total = total + f[best]
        expected += chosen
    assert herding(x, labels, quotas, normalize=normalize).tolist() == expected


def test_herding_refuses_quotas_above_the_class_counts():
    with pytest.raises(ValueError, match="exceed the class counts"):
        herding(torch.zeros(3, 2), torch.tensor([0, 0, 1]), torch.tensor([1, 2]))


# ---------------------------------------------------------------------------- k-center
@settings(max_examples=40, deadline=None)
@given(n=st.integers(4, 9), k=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_k_center_is_within_twice_the_optimal_radius(n, k, seed):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    chosen = k_center_greedy(x, k)
    assert chosen.unique().numel() == min(k, n)
    optimum = min(covering_radius(x, torch.tensor(c)) for c in itertools.combinations(range(n), min(k, n)))
    assert covering_radius(x, chosen) <= 2 * optimum + 1e-9


def test_k_center_by_hand():
    # points on a line, mean 4.33: the start is the point nearest it (3), then the farthest (12),
    # then the farthest from {3, 12}: 8 (distance 4) over 0 (distance 3), then 0, then 1 and 2
    # (each 1 away; the first index wins the tie)
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0], [8.0], [12.0]])
    assert k_center_greedy(x, 3).tolist() == [3, 5, 4]
    assert k_center_greedy(x, 2, centers=torch.tensor([0])).tolist() == [0, 5]
    assert k_center_greedy(x, 10).tolist() == [3, 5, 4, 0, 1, 2]


# ---------------------------------------------------------------------------- gradients
def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))


@pytest.mark.parametrize("which", ["all", "last"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_per_sample_gradients_match_a_loop(which, reduction):
    model = _tiny()
    x, y = torch.randn(7, 5), torch.tensor([0, 1, 2, 0, 1, 2, 2])
    loss_fn = nn.CrossEntropyLoss(reduction=reduction)
    names = [n for n, _ in model.named_parameters()] if which == "all" else last_parameters(model)
    assert last_parameters(model) == ["2.weight", "2.bias"]
    got = per_sample_gradients(model, loss_fn, x, y, names)
    params = dict(model.named_parameters())
    for i in range(7):
        loss = loss_fn(model(x[i : i + 1]), y[i : i + 1]).mean()
        expected = torch.cat([g.flatten() for g in torch.autograd.grad(loss, [params[n] for n in names])])
        torch.testing.assert_close(got[i], expected, rtol=1e-5, atol=1e-6)


def test_per_sample_gradients_route_task_ids():
    class Routed(nn.Module):
        takes_task_ids = True

        def __init__(self) -> None:
            super().__init__()
            self.heads = nn.Linear(3, 4)

        def forward(self, x, t):
            return self.heads(x) * (t[:, None].float() + 1)

    model = Routed()
    x, y, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0, 1])
    got = per_sample_gradients(model, nn.functional.cross_entropy, x, y, task_ids=t)
    for i in range(4):
        loss = nn.functional.cross_entropy(model(x[i : i + 1], t[i : i + 1]), y[i : i + 1])
        expected = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])
        torch.testing.assert_close(got[i], expected)


# ---------------------------------------------------------------------------- forgetting
def test_forgetting_counts_by_hand():
    correct = torch.tensor(
        [  # evaluations x samples
            [1, 0, 1, 0, 1],
            [0, 0, 1, 1, 1],
            [1, 0, 0, 0, 1],
            [0, 0, 1, 1, 1],
        ]
    )
    # sample 0: 1→0, 1→0 = 2; sample 1 never learned; sample 2: one drop; sample 3: one; sample 4: none
    counts = forgetting_counts(correct)
    assert counts.tolist() == [2, 0, 1, 1, 0]
    scores = forgetting_scores(counts, correct.bool().any(0))
    assert scores.tolist() == [2.0, float("inf"), 1.0, 1.0, 0.0]


# ---------------------------------------------------------------------------- the policies
def _chunk(classes: list[int], n: int, seed: int) -> TensorChunk:
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(classes).repeat(n // len(classes))
    x = torch.rand(len(y), 784, generator=g) * 0.3 + nn.functional.one_hot(y, 784).float()
    return TensorChunk(x, y)


def _online(memory: ReplayBuffer, chunk: TensorChunk, task: int, logits: bool) -> None:
    """What the Learner does per step (the update-end policies keep nothing online)."""
    for i in range(0, len(chunk), 16):
        batch = {"inputs": chunk.inputs[i : i + 16], "targets": chunk.targets[i : i + 16]}
        batch["task_ids"] = torch.full_like(batch["targets"], task)
        if logits:
            batch["logits"] = torch.zeros(len(batch["targets"]), 10)
        assert memory.add(batch).numel() == 0


POLICIES = {
    "herding": HerdingPolicy,
    "k_center": KCenterPolicy,
    "gradient_diversity": partial(GradientDiversityPolicy, batch_size=64),
    "forgetting": ForgettingPolicy,
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_update_end_policies_over_chunks(name):
    torch.manual_seed(0)
    model = MLP()
    memory = ReplayBuffer(30, policy=POLICIES[name]())
    with pytest.raises(RuntimeError, match="nothing calls its on_update_end"):
        _online(memory, _chunk([0], 16, 0), 0, logits=True)
    memory.policy.attach(model, 30)
    chunks = [_chunk([0, 1], 120, 0), _chunk([2, 3], 120, 1), _chunk([4, 5, 0], 120, 2)]
    previous = chunks[0].inputs[:0]
    for task, chunk in enumerate(chunks):
        _online(memory, chunk, task, logits=True)
        before = {int(v) for v in memory.storage["inputs"][: len(memory), 0:784].argmax(1)}
        run_update_end(memory, ChunkContext(model, memory, chunk, task_id=task, update=task))
        assert len(memory) == 30
        n = len(memory)
        stored = memory.storage["inputs"][:n]
        # every row is a sample of this chunk or one the memory held, with its own target and task
        pool = torch.cat([chunk.inputs, previous])
        assert bool((stored[:, None] == pool[None]).all(2).any(1).all())
        assert torch.equal(memory.storage["targets"][:n], stored.argmax(1))
        new_rows = (stored[:, None] == chunk.inputs[None]).all(2).any(1)
        assert bool((memory.storage["task_ids"][:n][new_rows] == task).all())
        # the new rows' logits are the model's, computed in eval mode (kept rows keep theirs)
        with torch.no_grad():
            torch.testing.assert_close(memory.storage["logits"][:n][new_rows], model(stored[new_rows]))
        counts = memory.class_counts()
        if name in ("herding", "forgetting"):  # class-balanced by construction
            assert int(counts[counts > 0].max() - counts[counts > 0].min()) <= 1
        assert torch.equal(memory.storage["targets"][:n], torch.sort(memory.storage["targets"][:n]).values)
        previous = stored.clone()
        del before


def test_herding_memory_matches_icarl_construct_and_reduce():
    # update 0 herds classes 0, 1 with 10 each; update 1 (classes 2, 3) reduces 0, 1 to the first 5
    torch.manual_seed(0)
    model = MLP()
    memory = ReplayBuffer(20, policy=HerdingPolicy())
    memory.policy.attach(model, 20)
    first = _chunk([0, 1], 100, 0)
    _online(memory, first, 0, logits=False)
    run_update_end(memory, ChunkContext(model, memory, first))
    kept0 = memory.storage["inputs"][:20].clone()
    # the same as herding the chunk's penultimate features directly
    with torch.no_grad():
        feats = model.features(first.inputs)
    expected = herding(feats, first.targets, torch.tensor([10, 10]))
    torch.testing.assert_close(kept0, first.inputs[expected])
    second = _chunk([2, 3], 100, 1)
    _online(memory, second, 1, logits=False)
    run_update_end(memory, ChunkContext(model, memory, second, task_id=1, update=1))
    torch.testing.assert_close(memory.storage["inputs"][:5], kept0[:5])  # class 0: first 5 exemplars
    torch.testing.assert_close(memory.storage["inputs"][5:10], kept0[10:15])  # class 1: first 5


def test_forgetting_policy_keeps_the_forgotten_samples():
    class Table(nn.Module):
        """Logits read from a table by sample id (input 0): predictions set by hand."""

        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.zeros(8, 2))
            self.head = nn.Linear(2, 2)

        def forward(self, x):
            return self.table[x[:, 0].long()] + 0 * self.head(self.table[x[:, 0].long()])

    model = Table()
    ids = torch.arange(8, dtype=torch.float32)
    chunk = TensorChunk(torch.stack([ids, torch.zeros(8)], 1), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
    memory = ReplayBuffer(4, policy=ForgettingPolicy())
    ctx = ChunkContext(model, memory, chunk)

    def predict(correct: list[int]) -> None:
        with torch.no_grad():
            for i, ok in enumerate(correct):
                label = int(chunk.targets[i])
                model.table[i] = nn.functional.one_hot(torch.tensor(label if ok else 1 - label), 2).float()

    # epoch ends: samples 1 and 5 are forgotten twice, 2 and 6 once, 3 never learned
    history = [[1, 1, 1, 0, 1, 1, 1, 1], [1, 0, 0, 0, 1, 0, 0, 1], [1, 1, 1, 0, 1, 1, 1, 1], [1, 0, 1, 0, 1, 0, 1, 1]]
    for row in history[:-1]:
        predict(row)
        memory.policy.on_train_epoch_end(ctx)
    predict(history[-1])  # the update end evaluates once more
    run_update_end(memory, ctx)
    kept = memory.storage["inputs"][:4, 0].long().tolist()
    # class 0: 3 (never learned: infinite) and 1 (twice); class 1: 5 (twice) and 6 (once)
    assert kept == [3, 1, 5, 6]
    state = memory.state_dict()["policy_state"]
    assert state["slots"]["counts"].tolist() == [0, 2, 2, 1]
    assert state["slots"]["learned"].tolist() == [False, True, True, True]
    assert state["slots"]["ids"].tolist() == [3, 1, 5, 6]  # update 0: the id is the chunk index


def test_gradient_diversity_picks_diverse_gradients():
    # Twenty copies of one sample and four distinct ones: the copies have one gradient, so a
    # memory of five keeps one copy and the four others.
    torch.manual_seed(0)
    model = _tiny()
    x = torch.cat([torch.ones(20, 5), torch.randn(4, 5) * 3])
    y = torch.cat([torch.zeros(20, dtype=torch.int64), torch.tensor([1, 2, 1, 2])])
    chunk = TensorChunk(x, y)
    memory = ReplayBuffer(5, policy=GradientDiversityPolicy(parameters="all"))
    run_update_end(memory, ChunkContext(model, memory, chunk))
    stored = memory.storage["inputs"][:5]
    assert int((stored == 1).all(1).sum()) == 1
    assert (torch.cdist(stored, x[20:]) < 1e-6).any(0).all()


def test_gradient_sketch_bounds_the_dimension():
    policy = GradientDiversityPolicy(parameters="all", sketch_dim=16)
    torch.manual_seed(0)
    model = _tiny()
    chunk = TensorChunk(torch.randn(40, 5), torch.randint(0, 3, (40,)))
    memory = ReplayBuffer(6, policy=policy)
    run_update_end(memory, ChunkContext(model, memory, chunk))
    assert len(memory) == 6


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_state_round_trips(name):
    torch.manual_seed(0)
    model = MLP()
    a = ReplayBuffer(12, policy=POLICIES[name]())
    chunk = _chunk([0, 1, 2], 60, 0)
    run_update_end(a, ChunkContext(model, a, chunk))
    b = ReplayBuffer(12, policy=POLICIES[name]())
    b.load_state_dict(a.state_dict())
    nxt = _chunk([3, 4], 60, 1)
    for memory in (a, b):
        run_update_end(memory, ChunkContext(model, memory, nxt, task_id=1, update=1))
    assert torch.equal(a.storage["inputs"], b.storage["inputs"])
    assert str(a.state_dict().get("policy_state")) == str(b.state_dict().get("policy_state"))


def test_feature_policies_refuse_a_missing_layer_and_gradient_policy_a_frozen_model():
    model = MLP()
    for policy in (HerdingPolicy(feature_layers=["encoder.3"]), KCenterPolicy(feature_layers=["encoder.3"])):
        with pytest.raises(ValueError, match=r"feature layers \['encoder.3'\] are not submodules of MLP"):
            policy.check(10, model)
    HerdingPolicy(feature_layers=["features.2"]).check(10, model)
    frozen = MLP().requires_grad_(False)
    with pytest.raises(ValueError, match="needs trainable parameters, but MLP has none"):
        GradientDiversityPolicy().check(10, frozen)
    with pytest.raises(ValueError, match=r"parameters \['nope'\] are not trainable"):
        GradientDiversityPolicy(parameters=["nope"]).check(10, model)
    with pytest.raises(ValueError, match="parameters must be 'last', 'all'"):
        GradientDiversityPolicy(parameters="first")


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_second_call_in_the_same_update_selects_nothing_more(name):
    torch.manual_seed(0)
    model = MLP()
    memory = ReplayBuffer(10, policy=POLICIES[name]())
    chunk = _chunk([0, 1], 60, 0)
    run_update_end(memory, ChunkContext(model, memory, chunk))
    once = memory.state_dict()
    run_update_end(memory, ChunkContext(model, memory, chunk))  # e.g. the Learner's hook and the adapter
    assert str(memory.state_dict()) == str(once)
    memory.load_state_dict(ReplayBuffer(10, policy=POLICIES[name]()).state_dict() | {"capacity": 10})
    run_update_end(memory, ChunkContext(model, memory, chunk))  # rolled back: selects again
    assert len(memory) == 10


def test_compact_uint8_memory_keeps_exact_inputs():
    torch.manual_seed(0)
    model = MLP()
    memory = ReplayBuffer(8, policy=HerdingPolicy(), input_dtype="uint8")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 784), generator=g).float() / 255
    chunk = TensorChunk(x, torch.arange(40) % 2)
    run_update_end(memory, ChunkContext(model, memory, chunk))
    assert memory.storage["inputs"].dtype == torch.uint8
    stored = memory.decoded("inputs")
    assert bool((stored[:, None] == x[None]).all(2).any(1).all())
    nxt = TensorChunk(torch.randint(0, 256, (40, 784), generator=g).float() / 255, torch.arange(40) % 2 + 2)
    run_update_end(memory, ChunkContext(model, memory, nxt, update=1))
    kept_old = (memory.decoded("inputs")[:, None] == x[None]).all(2).any(1)
    assert int(kept_old.sum()) == 4 and memory.class_counts().tolist() == [2, 2, 2, 2]


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_nested_dict_inputs(name):
    class Text(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(20, 6)
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            mask = x["attention_mask"].unsqueeze(-1).float()
            return self.head((self.embed(x["input_ids"]) * mask).sum(1) / mask.sum(1).clamp_min(1))

    torch.manual_seed(0)
    model = Text()
    g = torch.Generator().manual_seed(0)
    x = {
        "input_ids": torch.randint(0, 20, (30, 5), generator=g),
        "attention_mask": torch.ones(30, 5, dtype=torch.int64),
    }

    class Chunk(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 30

        def __getitem__(self, i):
            return {k: v[i] for k, v in x.items()}, int(i % 3)

    memory = ReplayBuffer(6, policy=POLICIES[name]())
    memory.policy.attach(model, 6)
    run_update_end(memory, ChunkContext(model, memory, Chunk()))
    assert len(memory) == 6 and set(memory.keys) == {
        "inputs.input_ids",
        "inputs.attention_mask",
        "targets",
        "task_ids",
        *IDENTITY_KEYS,
    }
    ids = memory.decoded("inputs")["input_ids"]
    assert bool((ids[:, None] == x["input_ids"][None]).all(2).any(1).all())
    assert torch.equal(
        memory.storage["targets"][:6], torch.tensor([(x["input_ids"] == r).all(1).nonzero()[0, 0] % 3 for r in ids])
    )
    run_update_end(memory, ChunkContext(model, memory, Chunk(), update=1))  # memory batches are nested too
    assert len(memory) == 6
