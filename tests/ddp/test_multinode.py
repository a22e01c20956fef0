"""Two DDP "nodes" on this machine: ``torchrun --nnodes 2`` twice on 127.0.0.1, one process each.

scripts/two_nodes.py launches tests/support/multinode_worker.py (``num_nodes=2, devices=1``, gloo)
as two nodes; pytest itself is never part of the process group. Checked here: after each update
both nodes hold bit-identical models, component state and memories, and the folder global rank 0
wrote is that replica; the nodes read disjoint shards of each chunk; nothing is printed; an update
crashed on both nodes resumes on both from rank 0's checkpoint; the state 2 nodes x 1 process
wrote loads in one process and goes on; node-local state folders are refused with a clear error
on every rank; the command line runs a gated update into a model home under torchrun; and the
launcher never waits forever for a node whose peer failed.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import pytest
import torch
from ddp_worker import CHUNK_SIZES, chunks, fingerprints, make_updater
from helpers import assert_same_tree
from script_modules import load_script

from retentive.state import load_state
from retentive.state.home import ModelHome

pytestmark = [pytest.mark.slow, pytest.mark.ddp]

ROOT = Path(__file__).resolve().parents[2]
WORKER = str(ROOT / "tests" / "support" / "multinode_worker.py")
UPDATES = ("mn0", "mn1", "mn2")
EPOCHS = (1, 1, 3)  # mn2: three epochs with resume=True
launcher = load_script("scripts/two_nodes.py", "retentive_two_nodes")


def _launch(command: list[str], workdir: Path, timeout: float = 400.0, how: str = "torchrun"):
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return launcher.run_two_nodes(command, workdir, timeout=timeout, grace=20.0, env=env, launcher=how)


def _assert_both_succeeded(results) -> None:
    logs = "\n".join(f"--- node {r.node_rank}\n{r.output[-4000:]}" for r in results)
    assert [r.returncode for r in results] == [0, 0], launcher.describe(results) + "\n" + logs


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Three updates on two nodes (the third crashed and resumed); returns the shared output folder."""
    out = tmp_path_factory.mktemp("two_nodes")
    results = _launch([WORKER, "--out", str(out)], out)
    _assert_both_succeeded(results)
    return out, results


def _dumps(out: Path, name: str) -> list[dict]:
    return [torch.load(out / f"{name}.rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("name", UPDATES)
def test_both_nodes_hold_identical_replicas_and_rank_0_wrote_them(nodes, name):
    out, _ = nodes
    rank0, rank1 = _dumps(out, name)
    assert rank0["world_size"] == rank1["world_size"] == 2
    for part in ("model", "learner", "memory"):
        assert_same_tree(rank0[part], rank1[part], f"{name}.{part}")
    assert rank0["returned_is_model"] and rank1["returned_is_model"]
    update = UPDATES.index(name)
    offered = sum(size * epochs for size, epochs in zip(CHUNK_SIZES[: update + 1], EPOCHS))
    assert rank0["memory"]["size"] == 500 and rank0["memory"]["seen"] == offered
    state = load_state(out / name)
    assert_same_tree(state.memory, rank0["memory"], f"{name} folder memory")
    assert_same_tree(state.model, rank0["model"], f"{name} folder model")
    assert state.manifest["world_size"] == 2 and state.manifest["updates_done"] == update + 1


def test_the_nodes_train_on_disjoint_shards_that_cover_each_chunk(nodes):
    out, _ = nodes
    for name, chunk in zip(UPDATES[:2], chunks()):
        offered = [dump["seen"]["fingerprints"] for dump in _dumps(out, name)]
        assert min(len(o) for o in offered) >= CHUNK_SIZES[0] // 2
        union = torch.cat(offered)
        assert union.unique().numel() == union.numel() == len(chunk)  # each sample on one node, once
        assert torch.equal(union.sort().values, fingerprints(chunk.inputs).sort().values)


def test_nothing_is_printed_on_either_node(nodes):
    out, results = nodes
    for name in UPDATES:
        for rank in (0, 1):
            assert (out / f"{name}.rank{rank}.log").read_text() == "", (name, rank)
    for result in results:
        for chatter in ("GPU available", "LOCAL_RANK", "Initializing distributed", "retentive", "Warning"):
            assert chatter not in result.output, (result.node_rank, chatter, result.output[-2000:])


def test_an_update_crashed_on_both_nodes_resumes_on_both_from_rank_0s_checkpoint(nodes):
    out, _ = nodes
    for rank in (0, 1):  # each rank found the checkpoint rank 0 wrote after epoch 1, in the shared folder
        said = (out / f"resume.rank{rank}.log").read_text()
        assert "resuming from the checkpoint after epoch 1" in said, (rank, said)
    assert not list(out.glob(".retentive-resume-*"))  # discarded once the state was in place
    learner = _dumps(out, "mn2")[0]["learner"]
    steps_per_epoch = math.ceil(CHUNK_SIZES[2] / 2 / 32)  # 500 samples a node, 32 new ones a step
    assert learner["total_steps"] - _dumps(out, "mn1")[0]["learner"]["total_steps"] == 3 * steps_per_epoch


def test_the_state_two_nodes_wrote_loads_in_one_process_and_goes_on(nodes, tmp_path):
    out, _ = nodes
    rank0 = _dumps(out, "mn1")[0]
    updater = make_updater(out / "mn1", tmp_path / "next", devices=1)
    assert_same_tree(updater.memory.state_dict(), rank0["memory"], "memory after 2 nodes -> 1 process")
    assert_same_tree(dict(updater.model.state_dict()), rank0["model"], "model after 2 nodes -> 1 process")
    updater.update(chunks()[2], task_id=2)
    assert updater.memory.seen == sum(CHUNK_SIZES) and len(updater.memory) == 500
    manifest = load_state(tmp_path / "next").manifest
    assert manifest["world_size"] == 1 and manifest["updates_done"] == 3


def test_node_local_state_folders_are_refused_on_every_rank(nodes, tmp_path):
    """Each node gets its own folders, as two machines without a shared filesystem. Lightning's
    own launcher starts the nodes (``NODE_RANK``, no ``RANK``): node 1's process, its local rank 0,
    must still not write (it did before the launch rank was read from the environment)."""
    out, _ = nodes
    shutil.copytree(out / "mn0", tmp_path / "mn0")
    shutil.copytree(out / "mn0", tmp_path / "node0" / "input")  # "the" input state: a stale copy on node 1
    shutil.copytree(out / "mn1", tmp_path / "node1" / "input")
    _assert_both_succeeded(_launch([WORKER, "--out", str(tmp_path), "--phase", "local"], tmp_path, how="lightning"))
    said = [json.loads((tmp_path / f"local.rank{rank}.json").read_text()) for rank in (0, 1)]
    for rank in (0, 1):
        assert said[rank]["visible"].startswith("StateError: rank 0 wrote the state to"), said[rank]
        assert "rank 1 does not see it there" in said[rank]["visible"]
        assert "a path on a shared filesystem, or a URL" in said[rank]["visible"]
        start = said[rank]["start"]
        assert start.startswith("ReplicaMismatchError: before the update the ranks hold different"), start
        assert "input state version" in start and "memory" in start and "nothing was trained" in start
    assert said[0]["wrote"] == ["input", "local"]
    assert said[1]["wrote"] == ["input"]  # node 1's local rank 0 wrote nothing: it is global rank 1


def _cli_update(tmp_path: Path, chunk: str, *extra: str):
    command = [
        "-m", "retentive.cli", "update", "--config", str(ROOT / "configs" / "er.yaml"), "--threads", "1",
        "--set", "logger=false", "--set", "trainer.num_nodes=2", "--set", "trainer.strategy=ddp",
        "--data", str(tmp_path / chunk), "--gate", "holdout=0.2", *extra,
    ]  # fmt: skip
    results = _launch(command, tmp_path / chunk.replace(".npz", ""))
    printed = [[line for line in r.output.splitlines() if line.startswith("retentive update")] for r in results]
    assert printed[1] == [], printed[1]  # rank 1 says nothing
    return results, printed[0]


def test_the_command_line_runs_gated_updates_into_a_home_on_two_nodes(tmp_path):
    """Promoted, then rejected (labels shuffled): global rank 0 commits, keeps the challenger, reports."""
    from retentive.data import TensorChunk
    from retentive.data.files import write_chunk

    first, second = chunks()[:2]
    write_chunk(tmp_path / "good.npz", first)
    shuffled = second.targets[torch.randperm(len(second), generator=torch.Generator().manual_seed(0))]
    write_chunk(tmp_path / "noise.npz", TensorChunk(second.inputs, shuffled))
    home, summary = tmp_path / "home", tmp_path / "summary.json"

    results, printed = _cli_update(tmp_path, "good.npz", "--output-state", str(home), "--gate", "max_drop=5")
    _assert_both_succeeded(results)
    # the update's line (and "created the model home" before it, if node 0 made the home before node 1 did)
    assert len(printed) in (1, 2) and "gate: promote" in printed[-1], printed
    current = ModelHome(home).current()
    assert current is not None and ModelHome(home).manifest()["world_size"] == 2

    gate = ["--gate", "min_new_accuracy=0.9", "--summary", str(summary)]
    results, printed = _cli_update(
        tmp_path, "noise.npz", "--input-state", str(home), "--output-state", str(home), *gate
    )
    # each worker exits with the gate's code 4; torchrun reports any worker's failure as 1
    assert [r.returncode for r in results] == [1, 1], launcher.describe(results)
    assert all("failed (exitcode: 4)" in r.output for r in results)
    assert len(printed) == 1 and "kept as the challenger" in printed[0], printed
    assert ModelHome(home).current() == current  # still serving
    assert ModelHome(home).challenger() is not None
    assert json.loads(summary.read_text())["gate"]["passed"] is False


def test_the_launcher_stops_a_node_whose_peer_failed(tmp_path):
    """Node 1 fails at once; node 0 would wait forever: it is killed after the grace, both reported."""
    script = tmp_path / "one_fails.py"
    script.write_text(
        "import os, sys, time\nif os.environ['RANK'] == '1':\n    sys.exit(3)\ntime.sleep(600)\n", encoding="utf-8"
    )
    start = time.monotonic()
    results = launcher.run_two_nodes([str(script)], tmp_path, timeout=120.0, grace=3.0)
    assert time.monotonic() - start < 90
    assert results[1].returncode != 0 and not results[1].killed
    assert results[0].killed and results[0].returncode == launcher.KILLED
    assert "node 0: rc -9 (killed: timed out waiting)" in launcher.describe(results)


def test_the_launcher_needs_a_command():
    with pytest.raises(SystemExit):
        launcher.main(["--timeout", "5"])
