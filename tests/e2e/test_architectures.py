"""PackNet and progressive networks: masks and columns, frozen weights bit-identical across later
updates run in new processes, state folders rebuilt from scratch, and the bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from arch_worker import GROUPS, build_model
from side_by_side import side_by_side

from retentive import PackNetModelUpdater, ProgressiveNetworkModelUpdater, StateError, load_model
from retentive.data import TensorChunk, load_mnist, split_mnist
from retentive.models import MultiHeadClassifier, PackedNetwork, ProgressiveNetwork
from retentive.models.masks import prune_by_magnitude, tasks_that_fit
from retentive.state import load_state

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)


def run_worker(method: str, task: int, input_state: Path | None, output_state: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [
        sys.executable,
        str(ROOT / "tests" / "support" / "arch_worker.py"),
        method,
        str(task),
        str(input_state or "-"),
        str(output_state),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def test_inputs():
    chunks = split_mnist(load_mnist("test"), with_task_ids=True)
    return [c.subset(torch.arange(100)) for c in chunks]


def chain(method: str, root: Path, tasks: int = 3) -> list[Path]:
    """``tasks`` updates, each in a new process resuming from the previous state folder."""
    states: list[Path] = []
    for task in range(tasks):
        states.append(root / f"{method}_{task}")
        run_worker(method, task, states[-2] if task else None, states[-1])
    return states


#: each chain's method, its number of tasks, and the test that checks it
CHAINS = {
    "packnet": (3, "test_packnet_earlier_tasks_are_bit_identical_across_updates_in_new_processes"),
    "pnn": (3, "test_progressive_columns_are_frozen_bit_identical_in_new_processes[pnn]"),
    "pnn-cnn": (2, "test_progressive_columns_are_frozen_bit_identical_in_new_processes[pnn-cnn]"),
}


@pytest.fixture(scope="module")
def chains(request, tmp_path_factory):
    """The selected tests' chains, started together (tests/support/side_by_side.py): each is a
    sequence of single-threaded, seeded processes, independent of the others, so running them side
    by side changes no weight. ``{method: future of its state folders}``."""
    jobs = {
        method: (partial(chain, method, tmp_path_factory.mktemp(method), tasks), (test,))
        for method, (tasks, test) in CHAINS.items()
    }
    with side_by_side(request, jobs) as futures:
        yield futures


def logits(model: torch.nn.Module, chunk: TensorChunk) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(chunk.inputs, chunk.task_ids)


# ------------------------------------------------------------------------------------- PackNet


def test_prune_by_magnitude_releases_the_smallest_free_weights():
    weight = torch.tensor([[0.5, -0.1, 0.3], [-0.9, 0.05, 0.2]])
    free = torch.tensor([[True, True, False], [True, True, True]])
    keep = prune_by_magnitude(weight, free, 0.6)  # 5 free: release int(3.0) = 3 smallest: 0.05, -0.1, 0.2
    assert keep.tolist() == [[True, False, False], [True, False, False]]
    assert prune_by_magnitude(weight, free, 0.0).equal(free)
    with pytest.raises(ValueError, match="prune_ratio must lie in"):
        prune_by_magnitude(weight, free, 1.0)
    assert tasks_that_fit(8, 0.5) == 4  # 8 -> keeps 4 (free 4) -> 2 (2) -> 1 (1) -> 1 (0)
    assert tasks_that_fit(100, 0.0) == 1


def test_packnet_masks_route_by_task_and_free_weights_start_at_zero():
    torch.manual_seed(0)
    net = PackedNetwork(MultiHeadClassifier.mlp(GROUPS[:2], in_features=4, hidden=(3,), num_classes=4))
    net.adapt(0)
    assert [p.requires_grad for p in net.shared()] == [True]  # trunk bias: the first task trains it
    assert all(m.all() for m in net.trainable().values())
    kept = net.prune(0.5)
    assert kept == {"backbone.1.weight": 6}  # 12 weights, half kept; heads are task-specific
    weight = net.model.get_parameter("backbone.1.weight")
    assert int((weight == 0).sum()) == 6 and torch.equal(
        net.trainable()["backbone.1.weight"], net.owner("backbone.1.weight") == 1
    )
    net.adapt(1)
    assert [p.requires_grad for p in net.shared()] == [False]  # fixed after the first task
    assert torch.equal(net.trainable()["backbone.1.weight"], weight == 0)
    x = torch.randn(5, 4)
    before = net(x, torch.zeros(5, dtype=torch.long))
    with torch.no_grad():
        weight.add_(torch.where(net.owner("backbone.1.weight") == 0, 1.0, 0.0))  # "train" task 1's free weights
    assert torch.equal(net(x, torch.zeros(5, dtype=torch.long)), before), "task 0 does not see task 1's weights"
    mixed = net(x, torch.tensor([0, 1, 0, 1, 1]))
    assert torch.equal(mixed[[0, 2]], before[[0, 2]])
    assert not torch.equal(mixed[[1]], net(x[[1]], torch.zeros(1, dtype=torch.long)))
    with pytest.raises(ValueError, match="task id 7 has no PackNet mask"):
        net(x, torch.full((5,), 7))
    fresh = PackedNetwork(MultiHeadClassifier.mlp(GROUPS[:2], in_features=4, hidden=(3,), num_classes=4))
    fresh.load_state_dict(net.state_dict())  # the slot registry grows to the saved one
    assert fresh.task_slots.tolist() == [0, 1] and torch.equal(fresh(x, torch.tensor([0, 1, 0, 1, 1])), mixed)


def test_packnet_earlier_tasks_are_bit_identical_across_updates_in_new_processes(chains, test_inputs):
    states = chains["packnet"].result()
    models = [load_model(build_model("packnet"), s) for s in states]  # fresh models, no adapt: buffers suffice
    owners = {name: owner for name, _, owner in models[-1].prunable()}
    for name in owners:
        first = models[0].model.get_parameter(name)
        for later in models[1:]:
            kept = later.owner(name) == 1
            assert torch.equal(later.owner(name)[models[0].owner(name) == 1], torch.ones_like(later.owner(name)[kept]))
            assert torch.equal(later.model.get_parameter(name)[kept], first[kept]), name
        assert bool((models[-1].owner(name) == 3).any()), "the third task owns weights of its own"
    # heads of earlier tasks, and the trunk biases after the first task, never change
    for key, value in models[0].state_dict().items():
        if key.startswith("model.heads.0.") or key.startswith("model.backbone.") and key.endswith("bias"):
            assert all(torch.equal(m.state_dict()[key], value) for m in models[1:]), key
    for task in range(3):
        reference = logits(models[task], test_inputs[task])
        for later in models[task + 1 :]:
            assert torch.equal(logits(later, test_inputs[task]), reference), f"task {task}'s outputs changed"
    accuracy = (logits(models[-1], test_inputs[0]).argmax(1) == test_inputs[0].targets).float().mean()
    assert accuracy > 0.9
    manifest = json.loads((states[-1] / "manifest.json").read_text())
    architecture = manifest["architecture"]
    assert architecture["packnet_tasks"] == [0, 1, 2]
    trunk = 784 * 32 + 32 * 32
    assert architecture["weights_per_task"] == [
        trunk - int(0.5 * trunk),
        int(0.5 * trunk) - int(0.5 * int(0.5 * trunk)),
        pytest.approx(trunk // 8, abs=2),
    ]


def _packnet_updater(tmp: Path, name: str, previous: Path | None, prune_ratio: float = 0.5) -> PackNetModelUpdater:
    torch.manual_seed(0)
    model = PackedNetwork(MultiHeadClassifier.mlp(GROUPS, hidden=(8,), num_classes=10))
    return PackNetModelUpdater(
        model,
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        prune_ratio=prune_ratio,
        post_prune_epochs=0,
        batch_size=50,
        input_state_folder=previous,
        output_state_folder=tmp / name,
        **QUIET,
    )


@pytest.fixture(scope="module")
def tiny_chunks():
    return [c.subset(torch.arange(100)) for c in split_mnist(load_mnist("train"), with_task_ids=True)]


def test_packnet_without_free_weights_says_how_many_tasks_fit_and_writes_nothing(tmp_path, tiny_chunks):
    _packnet_updater(tmp_path, "s0", None, prune_ratio=0.0).update(tiny_chunks[0], task_id=0)
    updater = _packnet_updater(tmp_path, "s1", tmp_path / "s0", prune_ratio=0.0)
    with pytest.raises(
        ValueError,
        match=r"no free weights left in 'backbone.1.weight' for task 1 after 1 tasks; "
        r"with prune_ratio=0.0, 1 tasks fit in its 6272 weights",
    ):
        updater.update(tiny_chunks[1], task_id=1)
    assert not (tmp_path / "s1").exists()


def test_packnet_refuses_to_train_a_packed_task_again(tmp_path, tiny_chunks):
    _packnet_updater(tmp_path, "s0", None).update(tiny_chunks[0], task_id=0)
    updater = _packnet_updater(tmp_path, "s1", tmp_path / "s0")
    before = {k: v.clone() for k, v in updater.model.state_dict().items()}
    with pytest.raises(ValueError, match="PackNet trains each task once; task 0 was packed already"):
        updater.update(tiny_chunks[0], task_id=0)
    assert not (tmp_path / "s1").exists()
    assert all(torch.equal(before[k], v) for k, v in updater.model.state_dict().items())


def test_packnet_needs_a_packed_network():
    with pytest.raises(TypeError, match="needs a retentive.models.PackedNetwork"):
        PackNetModelUpdater(torch.nn.Linear(2, 2), torch.nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1))
    with pytest.raises(ValueError, match="prune_ratio must lie in"):
        PackNetModelUpdater(
            PackedNetwork(torch.nn.Linear(2, 2)),
            torch.nn.CrossEntropyLoss(),
            partial(torch.optim.SGD, lr=0.1),
            prune_ratio=1.0,
        )


# ------------------------------------------------------------------------------------- progressive networks


@pytest.mark.parametrize("method", ["pnn", "pnn-cnn"])
def test_progressive_columns_are_frozen_bit_identical_in_new_processes(method, chains, test_inputs):
    states = chains[method].result()
    models = [load_model(build_model(method), s) for s in states]  # load_state_dict grows the columns
    assert [m.num_columns for m in models] == list(range(1, len(states) + 1))
    for k, model in enumerate(models):
        for later in models[k + 1 :]:
            for key, value in model.columns[k].state_dict().items():
                assert torch.equal(later.columns[k].state_dict()[key], value), f"column {k} {key} changed"
            assert torch.equal(logits(later, test_inputs[k]), logits(model, test_inputs[k]))
    counts = models[-1].parameter_counts()
    assert counts == sorted(counts) and len(set(counts)) == len(counts), (
        "each column adds laterals from all earlier ones"
    )
    manifest = json.loads((states[-1] / "manifest.json").read_text())
    assert manifest["architecture"]["parameters_per_column"] == counts
    assert manifest["architecture"]["column_tasks"] == list(range(len(states)))
    accuracy = (logits(models[-1], test_inputs[0]).argmax(1) == test_inputs[0].targets).float().mean()
    assert accuracy > 0.9


def test_progressive_laterals_follow_the_paper():
    torch.manual_seed(0)
    net = ProgressiveNetwork("mlp", in_shape=(3,), hidden=(4, 5), num_classes=2)
    net.adapt(0)
    net.adapt(1)
    net.adapt(1)  # idempotent
    assert net.num_columns == 2
    assert not any(p.requires_grad for p in net.columns[0].parameters())
    assert all(p.requires_grad for p in net.columns[1].parameters())
    x = torch.randn(6, 3)
    c0, c1 = net.columns
    h0 = [x]
    for layer in c0.layers:
        h0.append(torch.relu(layer(h0[-1])))
    h1_1 = torch.relu(c1.layers[0](x))
    h1_2 = torch.relu(c1.layers[1](h1_1) + c1.laterals[1][0](h0[1]))  # U^(1:0) on column 0's layer-1 output
    out1 = c1.head(h1_2) + c1.head_laterals[0](h0[2])
    assert torch.allclose(net(x, torch.ones(6, dtype=torch.long)), out1)
    assert torch.allclose(net(x, torch.zeros(6, dtype=torch.long)), c0.head(h0[2]))
    assert torch.allclose(net(x), out1), "no task id: the newest column"
    with pytest.raises(ValueError, match="task id 4 has no column"):
        net(x, torch.full((6,), 4))


def test_progressive_state_with_more_columns_than_the_model_builds(tmp_path, tiny_chunks):
    def updater(name: str, previous: Path | None, max_columns: int) -> ProgressiveNetworkModelUpdater:
        model = ProgressiveNetwork(hidden=(8,), num_classes=10, class_groups=GROUPS, max_columns=max_columns)
        return ProgressiveNetworkModelUpdater(
            model,
            torch.nn.CrossEntropyLoss(),
            partial(torch.optim.SGD, lr=0.1),
            batch_size=50,
            input_state_folder=previous,
            output_state_folder=tmp_path / name,
            **QUIET,
        )

    updater("s0", None, 2).update(tiny_chunks[0], task_id=0)
    updater("s1", tmp_path / "s0", 2).update(tiny_chunks[1], task_id=1)
    with pytest.raises(StateError, match="ProgressiveNetwork builds at most 1 columns; task 1 would need column 2"):
        updater("s2", tmp_path / "s1", 1)
    small = ProgressiveNetwork(hidden=(8,), class_groups=GROUPS, max_columns=1)
    with pytest.raises(StateError, match="builds at most 1 columns; task 1 would need column 2"):
        load_model(small, tmp_path / "s1")  # load_model grows the columns first (adapt per task)
    with pytest.raises(StateError, match="holds 2 progressive columns .* builds at most 1"):
        ProgressiveNetwork(hidden=(8,), class_groups=GROUPS, max_columns=1).load_state_dict(
            load_state(tmp_path / "s1").model
        )
    grown = updater("s2", tmp_path / "s1", 2)
    with pytest.raises(ValueError, match="builds at most 2 columns; task 2 would need column 3"):
        grown.update(tiny_chunks[2], task_id=2)
    assert not (tmp_path / "s2").exists()
    assert load_state(tmp_path / "s1").manifest["architecture"]["column_tasks"] == [0, 1]
