"""The declared memory interface: conformance of the backends and policies, the boundary that
keeps code outside ``retentive/memory`` off the storage, and the one herding, quota, rewrite and
update context everything shares."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from retentive.components import base as component_base
from retentive.components.exemplars import balanced_quotas, herding_selection, replace_memory
from retentive.data.tensors import TensorChunk
from retentive.errors import MemoryShapeError
from retentive.memory import (
    ClassBalancedReservoirPolicy,
    ForgettingPolicy,
    GenerativeMemory,
    GradientDiversityPolicy,
    GreedyClassBalancedPolicy,
    HerdingPolicy,
    InsertionPolicy,
    KCenterPolicy,
    PolicyDefaults,
    ReplayBuffer,
    ReplayMemory,
    ReservoirPolicy,
    RingBufferPolicy,
    UnboundedBuffer,
    UpdateContext,
    VariationalAutoencoder,
    chunk_context,
    run_update_end,
)
from retentive.memory.generative import GeneratorPolicy
from retentive.memory.identity import IDENTITY_KEYS
from retentive.memory.selection import class_quotas, herding
from retentive.memory.unbounded import AppendPolicy

PACKAGE = Path(__file__).resolve().parents[2] / "retentive"


def _batch(start: int, n: int) -> dict[str, torch.Tensor]:
    return {
        "inputs": torch.arange(start, start + n, dtype=torch.float32).unsqueeze(1).repeat(1, 3),
        "targets": torch.arange(start, start + n) % 4,
        "task_ids": torch.zeros(n, dtype=torch.int64),
    }


# ------------------------------------------------------------------------------------ conformance
def test_the_backends_satisfy_the_replay_memory_protocol() -> None:
    declared: ReplayMemory = ReplayBuffer(4)  # and statically, for mypy
    assert isinstance(declared, ReplayMemory)
    unbounded: ReplayMemory = UnboundedBuffer()
    assert isinstance(unbounded, ReplayMemory)
    generative: ReplayMemory = GenerativeMemory(VariationalAutoencoder((3,), 2, (4,)), nn.Linear(3, 2))
    assert isinstance(generative, ReplayMemory)
    assert generative.takes_samples and len(generative) == 0 and generative.capacity == 0
    assert not isinstance(object(), ReplayMemory)


@pytest.mark.parametrize(
    "policy",
    [
        ReservoirPolicy(),
        GreedyClassBalancedPolicy(),
        ClassBalancedReservoirPolicy(),
        RingBufferPolicy(),
        AppendPolicy(),
        GeneratorPolicy(),
        HerdingPolicy(),
        KCenterPolicy(),
        GradientDiversityPolicy(),
        ForgettingPolicy(),
    ],
    ids=lambda p: type(p).__name__,
)
def test_every_built_in_policy_declares_every_member(policy):
    assert isinstance(policy, InsertionPolicy)


def test_a_policy_lacking_members_is_refused_when_the_memory_is_built_naming_them():
    class SelectOnly:
        name = "mine"

        def select(self, n, seen, size, capacity, targets, stored_targets, generator):
            return torch.arange(0), torch.arange(0)

    with pytest.raises(
        TypeError, match=r"lacks the InsertionPolicy members \['uses_targets', 'fills_free_slots_first', 'check'"
    ):
        ReplayBuffer(4, policy=SelectOnly())  # type: ignore[arg-type]

    class Mine(PolicyDefaults, SelectOnly):  # the defaults complete it
        pass

    memory = ReplayBuffer(4, policy=Mine())
    assert memory.policy.uses_targets and not memory.policy.fills_free_slots_first
    assert "policy_state" not in memory.state_dict()  # no state declared: none saved (the format is unchanged)


def test_a_stateful_policy_saves_its_state_and_a_stateless_one_saves_none():
    assert "policy_state" not in ReplayBuffer(4).state_dict()
    state = ReplayBuffer(4, policy=ClassBalancedReservoirPolicy()).state_dict()
    assert set(state["policy_state"]) == {"seen_per_class", "full"}


# ------------------------------------------------------------------------------------ the boundary
#: members of a memory that only the memory package may touch
INTERNAL = {
    "storage",
    "size",
    "dtypes",
    "allocate",
    "encode",
    "write",
    "choose_slots",
    "prepare",
    "reserve",
    "allocated",
    "input_dtype",
    "sample_generator",
    "spec",
    "input_spec",
    "restore_rows",
}
MEMORY_LIKE = re.compile(r"(memory|buffer)(\[\d+\])?$", re.IGNORECASE)


def boundary_violations(source: str, where: str = "<source>") -> list[str]:
    """``file:line: text`` for each access to memory internals or probe of a policy in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            receiver = ast.unparse(node.value)
            internal = node.attr in INTERNAL or (node.attr.startswith("_") and not node.attr.startswith("__"))
            if node.attr == "storage" or (internal and MEMORY_LIKE.search(receiver)):
                found.append((node.lineno, f"{receiver}.{node.attr}"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and node.args
            and "policy" in ast.unparse(node.args[0]).lower()
        ):
            found.append((node.lineno, ast.unparse(node)))
    return [f"{where}:{line}: {text}" for line, text in sorted(found)]


def test_the_boundary_scan_finds_what_it_forbids():
    offending = (
        "x = self.memory.storage['targets'][: len(self.memory)]\n"
        "n = ctx.memory.size\n"
        "memory.allocate(rows)\n"
        "hook = getattr(memory.policy, 'on_update_end', None)\n"
        "y = self._memory[0]._gather(idx)\n"
        "self.memory.restore_rows(rows, dtypes, None)\n"
    )
    assert [v.split(": ", 1)[1] for v in boundary_violations(offending)] == [
        "self.memory.storage",
        "ctx.memory.size",
        "memory.allocate",
        "getattr(memory.policy, 'on_update_end', None)",
        "self._memory[0]._gather",
        "self.memory.restore_rows",
    ]
    allowed = "n = len(memory)\nrows = memory.decoded('targets')\nmemory.seen += 3\nmemory.policy.on_update_end(ctx)\n"
    assert boundary_violations(allowed) == []


def test_code_outside_the_memory_package_uses_the_memory_only_through_its_protocol():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "memory") in path.parents:
            continue
        violations += boundary_violations(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert violations == [], "memory internals touched outside retentive/memory:\n" + "\n".join(violations)


def test_no_module_probes_a_policy_for_members():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "protocol.py" and path.parent.name == "memory":
            continue  # the one conformance check, when a memory is built
        violations += [v for v in boundary_violations(path.read_text(), str(path)) if "attr(" in v]
    assert violations == []


# ------------------------------------------------------------------------------------ one herding
def test_herding_selects_by_hand_computed_greedy_mean_matching_class_by_class():
    # class 0 (rows 0 2 4 6 8 9): mean 1.0 -> 1.1 (row 8); then pair mean nearest 1.0: 0.8 (row 6,
    # (1.1+0.8)/2 = 0.95); then (1.9+1.2)/3 = 1.033 (row 4).
    # class 1 (rows 1 3 5 7): mean 1.75 -> 2.0 (row 1); then (2+1)/2 = 1.5 (row 5) beats 1.0 and 3.0;
    # then (3+4)/3 = 2.33 (row 7) beats (3+0)/3 = 1.0.
    features = torch.tensor([0.0, 2.0, 3.0, 0.0, 1.2, 1.0, 0.8, 4.0, 1.1, -0.1]).unsqueeze(1)
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 0, 0])
    assert herding(features, labels, torch.tensor([3, 3]), normalize=False).tolist() == [8, 6, 4, 1, 5, 7]
    assert herding(features, labels, torch.tensor([2, 1]), normalize=False).tolist() == [8, 6, 1]


def test_icarls_padded_herding_is_the_one_herding():
    g = torch.Generator().manual_seed(3)
    padded = torch.randn(3, 7, 5, generator=g)
    counts = torch.tensor([7, 4, 2])
    chosen = herding_selection(padded, counts, 3)
    valid = torch.arange(7)[None] < counts[:, None]
    flat = herding(
        padded[valid], torch.arange(3)[:, None].expand(3, 7)[valid], torch.tensor([3, 3, 2]), normalize=False
    )
    starts = [0, 7, 11]
    expected = [[i - starts[c] for i in flat.tolist() if starts[c] <= i < starts[c] + int(counts[c])] for c in range(3)]
    assert chosen.tolist() == [expected[0], expected[1], expected[2] + [-1]]


def test_balanced_quotas_are_class_quotas_with_ample_samples():
    for capacity, groups in [(10, 3), (7, 7), (100, 6), (5, 1)]:
        assert balanced_quotas(capacity, groups) == class_quotas(torch.full((groups,), capacity), capacity).tolist()
    assert balanced_quotas(10, 3) == [4, 3, 3]


# ------------------------------------------------------------------------------------ one rewrite
def test_replace_makes_the_rows_the_whole_content_and_counts_the_offered():
    memory = ReplayBuffer(8)
    memory.add(_batch(0, 6))
    seen = memory.seen
    memory.replace(_batch(100, 3), offered=5)
    assert len(memory) == 3 and memory.seen == seen + 5
    assert memory.decoded("inputs")[:, 0].tolist() == [100.0, 101.0, 102.0]
    with pytest.raises(ValueError, match="9 rows do not fit a memory of 8"):
        memory.replace(_batch(0, 9))
    with pytest.raises(MemoryShapeError, match="must hold its keys"):
        memory.replace({**_batch(0, 2), "logits": torch.zeros(2, 4)})
    assert len(memory) == 3  # unchanged by the refusals


def test_replace_round_trips_compact_inputs_bit_for_bit():
    images = torch.randint(0, 256, (6, 4), generator=torch.Generator().manual_seed(0)).float() / 255
    memory = ReplayBuffer(6, input_dtype="uint8")
    memory.add({"inputs": images, "targets": torch.arange(6), "task_ids": torch.zeros(6, dtype=torch.int64)})
    codes = memory.storage["inputs"][:6].clone()
    order = torch.tensor([5, 0, 3])
    memory.replace(memory.gather(order).data)
    assert torch.equal(memory.storage["inputs"][:3], codes[order])


def test_replace_memory_refuses_metadata_and_takes_nested_inputs():
    memory = ReplayBuffer(4)
    memory.add({**_batch(0, 2), "logits": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match=r"also stores \['logits'\]"):
        replace_memory(memory, _batch(0, 2), offered=2)
    nested = ReplayBuffer(4)
    rows = {
        "inputs": {"a": torch.ones(2, 3), "b": torch.zeros(2, dtype=torch.int64)},
        "targets": torch.arange(2),
        "task_ids": torch.zeros(2, dtype=torch.int64),
    }
    replace_memory(nested, rows, offered=2)
    replace_memory(nested, rows, offered=2)  # rebuilt again: its input leaves are not metadata
    assert len(nested) == 2 and nested.seen == 4 and torch.equal(nested.decoded("inputs")["a"], torch.ones(2, 3))


# ------------------------------------------------------------------------------------ one context
def test_components_and_memory_policies_read_one_update_context():
    assert component_base.UpdateContext is UpdateContext
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    chunk = TensorChunk(torch.randn(10, 3), torch.arange(10) % 2)
    memory = ReplayBuffer(4, policy=HerdingPolicy())
    memory.policy.attach(model, 4)
    ctx = chunk_context(model, memory, chunk)
    assert isinstance(ctx, UpdateContext)
    assert [tuple(b.targets.tolist()) for b in ctx.chunk_batches(4)] == [(0, 1, 0, 1), (0, 1, 0, 1), (0, 1)]
    run_update_end(memory, ctx)
    assert len(memory) == 4 and memory.class_counts(2).tolist() == [2, 2]
    assert [b.targets.tolist() for b in ctx.memory_batches(3)] == [[0, 0, 1], [1]]


def test_the_learners_update_context_names_the_metadata_its_components_store():
    """Update-end selection into an empty memory stores the metadata the components declared
    (DER's logits), which only the context can tell it: the memory has no keys yet."""
    from functools import partial

    from retentive.components.replay import LogitMSE
    from retentive.learner import Learner

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    memory = ReplayBuffer(4, policy=HerdingPolicy())
    memory.policy.attach(model, 4)
    learner = Learner(model, nn.functional.cross_entropy, partial(torch.optim.SGD, lr=0.1), [LogitMSE()], memory)
    chunk = TensorChunk(torch.randn(10, 3), torch.arange(10) % 2)
    learner.begin_update(0, 0, 0, chunk_context(model, memory, chunk).chunk_batches)
    ctx = learner.update_context()
    assert ctx.memory_keys == ("logits",)
    run_update_end(memory, ctx)
    assert set(memory.keys) == {"inputs", "targets", "task_ids", "logits", *IDENTITY_KEYS}
    with torch.no_grad():
        assert torch.allclose(memory.decoded("logits"), model(memory.decoded("inputs")))


def test_a_generative_memory_is_refused_under_data_parallelism_before_any_exchange():
    from retentive.memory.exchange import Exchange, distributed_add

    def gather(tensor):
        raise AssertionError("nothing may be exchanged")

    memory = GenerativeMemory(VariationalAutoencoder((3,), 2, (4,)), nn.Linear(3, 2))
    with pytest.raises(TypeError, match="GenerativeMemory cannot keep identical replicas under data parallelism"):
        distributed_add(memory, _batch(0, 2), Exchange(0, 2, gather))
    assert not ReplayBuffer(0).takes_samples and ReplayBuffer(1).takes_samples and UnboundedBuffer().takes_samples
