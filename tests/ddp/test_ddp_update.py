"""A real 2-process DDP update on CPU (gloo), against what one process keeps.

One subprocess (tests/ddp_worker.py) runs three DDP updates on real MNIST; pytest itself is never
forked. Checked here: both ranks end with bit-identical models, learner state and memory; the
memory is a uniform sample of what *both* ranks saw (rank provenance and chunk shares within
sampling error, every stored label and logit that of the sample it came with) and matches the
class histogram one process keeps; state folders move between world sizes 2 -> 1 and 1 -> 2.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from ddp_worker import CHUNK_SIZES, build_model, chunks, fingerprints, make_updater
from helpers import assert_same_tree as _assert_equal
from helpers import run_support_script

from retentive.memory.compact import decode, dtype_from_name
from retentive.state import load_state

pytestmark = [pytest.mark.slow, pytest.mark.ddp]

MEMORY = 500


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Single-process updates on chunks 0 and 1, then the DDP worker; returns the output folder."""
    out = tmp_path_factory.mktemp("ddp")
    data = chunks()
    single = make_updater(None, out / "single0", devices=1)
    single.update(data[0], task_id=0)
    make_updater(out / "single0", out / "single1", devices=1).update(data[1], task_id=1)
    run_support_script("ddp_worker.py", "--out", str(out), "--single-state", str(out / "single0"), cwd=out, timeout=300)
    return out


def _dumps(out: Path, name: str) -> list[dict]:
    return [torch.load(out / f"{name}.rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("name", ["ddp0", "ddp1", "from1_loaded", "from1", "super0", "super1"])
def test_both_ranks_hold_identical_models_components_and_memories(run, name):
    rank0, rank1 = _dumps(run, name)
    assert rank0["world_size"] == rank1["world_size"] == 2
    for part in ("model", "learner", "memory"):
        _assert_equal(rank0[part], rank1[part], f"{name}.{part}")
    if name != "from1_loaded":
        assert rank0["returned_is_model"] and rank1["returned_is_model"]
        # the batch-norm statistics, updated by each rank's own last batch, were made rank 0's
        assert "2.running_mean" in rank0["model"]
        # only rank 0 wrote the folder, and it holds the replica every rank has
        state = load_state(run / name)
        _assert_equal(state.memory, rank0["memory"], f"{name} folder memory")
        _assert_equal(state.model, rank0["model"], f"{name} folder model")
        assert state.manifest["world_size"] == 2
    assert not list(run.glob(".retentive-staging-*"))


def test_random_component_state_agrees_across_ranks_and_was_exercised(run):
    """CLS-ER flips coins after every step and shrink-and-perturb draws noise at every update
    start; with dropout and uneven batches the ranks' global RNGs differ, yet (previous test) the
    teachers, the counters and the perturbed model are bit-identical. Here: they really moved."""
    first, second = _dumps(run, "super0")[0], _dumps(run, "super1")[0]
    types = second["learner"]["component_types"]
    assert {"CLSConsistency", "ShrinkAndPerturb", "PooledOutputDistillation"} <= set(types)
    cls = second["learner"]["components"][types.index("CLSConsistency")]
    assert int(cls["iteration"]) == second["learner"]["total_steps"] > first["learner"]["total_steps"]
    plastic = {k[len("plastic_model.") :]: v for k, v in cls.items() if k.startswith("plastic_model.")}
    stable = {k[len("stable_model.") :]: v for k, v in cls.items() if k.startswith("stable_model.")}
    weight = "5.weight"
    # the teachers were updated on different random steps, so they differ from each other and the model
    assert not torch.equal(plastic[weight], stable[weight])
    assert not torch.equal(plastic[weight], second["model"][weight])
    assert "features.3" in second["memory"]["storage"]  # POD's features travel with their samples


def _hypergeometric_sd(draws: int, good: int, total: int) -> float:
    p = good / total
    return math.sqrt(draws * p * (1 - p) * (total - draws) / (total - 1))


def test_memory_is_a_uniform_sample_of_what_every_rank_saw(run):
    ranks = _dumps(run, "ddp0"), _dumps(run, "ddp1")
    memory = ranks[1][0]["memory"]
    assert memory["size"] == MEMORY and memory["seen"] == sum(CHUNK_SIZES[:2])
    # what each rank offered, over both updates: every sample exactly once, on one rank
    offered = [
        {k: torch.cat([upd[r]["seen"][k] for upd in ranks]) for k in ("fingerprints", "targets", "logits")}
        for r in range(2)
    ]
    chunk_of = [
        torch.cat([torch.full((len(upd[r]["seen"]["targets"]),), i) for i, upd in enumerate(ranks)]) for r in range(2)
    ]
    all_fp = torch.cat([o["fingerprints"] for o in offered])
    assert all_fp.numel() == sum(CHUNK_SIZES[:2]) and all_fp.unique().numel() == all_fp.numel()
    assert abs(len(offered[0]["targets"]) - len(offered[1]["targets"])) <= 1  # 999: one rank one fewer

    stored_fp = fingerprints(memory["storage"]["inputs"])
    provenance = torch.full((MEMORY,), -1)
    chunk = torch.full((MEMORY,), -1)
    for r in range(2):
        match = stored_fp[:, None] == offered[r]["fingerprints"][None, :]
        found = match.any(1)
        where = match.float().argmax(1)
        provenance[found] = r
        chunk[found] = chunk_of[r][where[found]]
        # the label and the logits stored with a sample are those it was offered with
        assert torch.equal(memory["storage"]["targets"][found], offered[r]["targets"][where[found]])
        assert torch.equal(memory["storage"]["logits"][found], offered[r]["logits"][where[found]])
    assert (provenance >= 0).all(), "the memory holds a sample no rank offered"

    # rank and chunk shares: a uniform sample of the union, within 4 standard deviations
    total = all_fp.numel()
    for label, groups in (("rank", provenance), ("chunk", chunk)):
        for g in (0, 1):
            offered_g = len(offered[g]["targets"]) if label == "rank" else CHUNK_SIZES[g]
            expected = MEMORY * offered_g / total
            kept = int((groups == g).sum())
            assert abs(kept - expected) < 4 * _hypergeometric_sd(MEMORY, offered_g, total), (label, g, kept, expected)


def _chi2_homogeneity(a: torch.Tensor, b: torch.Tensor) -> float:
    table = torch.stack([a, b]).double()
    expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def test_memory_matches_what_one_process_keeps(run):
    ddp = load_state(run / "ddp1").memory
    single = load_state(run / "single1").memory
    assert (ddp["size"], ddp["seen"]) == (single["size"], single["seen"])
    classes = [torch.bincount(m["storage"]["targets"], minlength=4)[:4] for m in (ddp, single)]
    assert int(classes[0].sum()) == int(classes[1].sum()) == MEMORY
    # chi-square test of one class distribution (3 degrees of freedom): 21.1 is p = 1e-4
    assert _chi2_homogeneity(*classes) < 21.1, classes
    # the single process keeps the DDP ranks' shards in the same expected shares
    rank0 = torch.cat([_dumps(run, n)[0]["seen"]["fingerprints"] for n in ("ddp0", "ddp1")])
    kept = int(torch.isin(fingerprints(single["storage"]["inputs"]), rank0).sum())
    total = sum(CHUNK_SIZES[:2])
    expected = MEMORY * rank0.numel() / total
    assert abs(kept - expected) < 4 * _hypergeometric_sd(MEMORY, rank0.numel(), total)


def test_state_written_by_two_ranks_resumes_in_one_process(run, tmp_path):
    rank0 = _dumps(run, "ddp1")[0]
    updater = make_updater(run / "ddp1", tmp_path / "next", devices=1)
    _assert_equal(updater.memory.state_dict(), rank0["memory"], "memory after 2 -> 1")
    _assert_equal({k: v for k, v in updater.model.state_dict().items()}, rank0["model"], "model after 2 -> 1")
    assert updater.learner.total_steps == rank0["learner"]["total_steps"]
    updater.update(chunks()[2], task_id=2)
    assert updater.memory.seen == sum(CHUNK_SIZES) and len(updater.memory) == MEMORY
    assert load_state(tmp_path / "next").manifest["world_size"] == 1


def test_state_written_by_one_process_resumes_on_two_ranks(run):
    written = load_state(run / "single0").memory
    loaded = _dumps(run, "from1_loaded")[0]["memory"]
    assert (loaded["size"], loaded["seen"]) == (written["size"], written["seen"])
    for stream in ("insert", "sample"):
        assert torch.equal(loaded["generators"][stream], written["generators"][stream])
    for key, rows in written["storage"].items():
        got = loaded["storage"][key]
        if key == "inputs":  # this updater stores them as uint8, decoded bit-exactly
            assert got.dtype == torch.uint8
            got = decode(got, dtype_from_name(loaded["dtypes"]["inputs"]))
        assert torch.equal(got, rows), key
    after = load_state(run / "from1")
    assert after.manifest["hyperparameters"]["precision"] == "bf16-mixed"
    assert after.memory["storage"]["logits"].dtype == torch.float32  # stored float32 under bf16-mixed
    assert after.memory["storage"]["inputs"].dtype == torch.uint8
    assert after.memory["seen"] == CHUNK_SIZES[0] + CHUNK_SIZES[1]
    # the uint8 inputs the two ranks stored decode to images of the chunks
    seen = torch.cat([chunks()[i].inputs for i in (0, 1)])
    stored = decode(after.memory["storage"]["inputs"], torch.float32)
    assert torch.isin(fingerprints(stored), fingerprints(seen)).all()
    # and the model they return is usable
    model = build_model()
    model.load_state_dict(after.model)
