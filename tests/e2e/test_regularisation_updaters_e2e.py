"""Every regularisation, distillation and projection updater (and two combinations without new
classes) end to end on real MNIST through state folders; the state folders continued by a
separate process bit-identically to the first process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from er_family_support import snapshot
from methods_support import UPDATERS, build

from retentive.components.distillation import icarl_classifier
from retentive.evaluation import accuracy_row
from retentive.models import MLP

pytestmark = pytest.mark.slow

CHUNKS = 3
TESTS_DIR = Path(__file__).resolve().parents[1] / "support"


@pytest.fixture(scope="module")
def chains(split_small, tmp_path_factory):
    """Each updater over three chunks (300 samples each), a fresh updater per chunk reading the
    previous chunk's state folder; then, in this process, the last updater continues on a fourth."""
    train, test = split_small
    train = [chunk.subset(torch.arange(300)) for chunk in train[: CHUNKS + 1]]
    root = tmp_path_factory.mktemp("method_states")
    torch.save((train[CHUNKS].inputs, train[CHUNKS].targets), root / "next_chunk.pt")
    results = {}
    for name in UPDATERS:
        previous = None
        for i in range(CHUNKS):
            folder = root / f"{name}_{i}"
            updater = build(name, input_state_folder=previous, output_state_folder=folder)
            model = updater.update(train[i], task_id=i)
            previous = folder
        expected = root / f"{name}_expected.pt"
        torch.save(snapshot(updater), expected)
        accuracy = accuracy_row(model, test[:CHUNKS])
        nme = accuracy_row(icarl_classifier(MLP(), previous), test[:CHUNKS]) if name == "icarl" else None
        updater.output_state_folder = None  # continue in memory, writing nothing
        updater.update(train[CHUNKS], task_id=CHUNKS)
        expected_next = root / f"{name}_expected_next.pt"
        torch.save(snapshot(updater), expected_next)
        results[name] = {
            "folder": previous,
            "expected": expected,
            "expected_next": expected_next,
            "accuracy": accuracy,
            "nme": nme,
            "updater": updater,
        }
    return results, root


@pytest.fixture(scope="module")
def reloaded(chains):
    results, root = chains
    jobs = [
        {
            "name": n,
            "folder": str(r["folder"]),
            "expected": str(r["expected"]),
            "next_chunk": str(root / "next_chunk.pt"),
            "next_task": CHUNKS,
            "expected_next": str(r["expected_next"]),
        }
        for n, r in results.items()
    ]
    jobs_path = root / "jobs.json"
    jobs_path.write_text(json.dumps(jobs))
    env = {**os.environ, "PYTHONPATH": f"{TESTS_DIR.parents[1]}{os.pathsep}{TESTS_DIR}"}
    done = subprocess.run(
        [sys.executable, str(TESTS_DIR / "methods_state_worker.py"), str(jobs_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(UPDATERS))
def test_state_round_trips_through_a_second_process_bit_identically(chains, reloaded, name):
    assert reloaded[name] == []


@pytest.mark.parametrize("name", ["gem", "er_avalanche", "er_ewc"])
def test_memory_methods_remember_earlier_chunks(chains, name):
    # fine-tuning ends near 1/3 on average here (it knows only the last chunk's two digits)
    accuracy = chains[0][name]["accuracy"]
    assert float(accuracy.mean()) > 0.6 and float(accuracy[0]) > 0.5, accuracy


def test_icarl_nme_classifier_remembers_every_chunk(chains):
    nme = chains[0]["icarl"]["nme"]
    assert float(nme.mean()) > 0.6 and float(nme.min()) > 0.3, nme


@pytest.mark.parametrize("name", ["ewc", "si", "lwf", "agem", "lwf_si"])
def test_every_method_learns_the_last_chunk(chains, name):
    assert float(chains[0][name]["accuracy"][-1]) > 0.8, chains[0][name]["accuracy"]


def test_component_states_are_not_trivial(chains):
    """The second-process comparison would be vacuous if the state held nothing."""
    results = chains[0]
    ewc = results["ewc"]["updater"]
    fisher = ewc.learner.components[0].parameter_state("fisher", ewc.model)
    assert all(bool((v > 0).any()) for v in fisher.values())
    si = results["si"]["updater"]
    assert all(bool((v != 0).any()) for v in si.learner.components[0].parameter_state("importance", si.model).values())
    assert results["lwf"]["updater"].learner.components[0].seen_classes.tolist() == [True] * 8
    icarl = results["icarl"]["updater"]
    assert (
        icarl.learner.components[0].has_mean.sum() == 8 and icarl.memory.class_counts(8).tolist() == [8] * 4 + [7] * 4
    )
    combo = results["er_ewc"]["updater"]
    assert [type(c).__name__ for c in combo.learner.components] == ["MemoryCrossEntropy", "ElasticWeightConsolidation"]
    assert bool(combo.learner.components[1].consolidated) and len(combo.memory) == 60
    lwf_si = results["lwf_si"]["updater"]
    assert [type(c).__name__ for c in lwf_si.learner.components] == [
        "LearningWithoutForgetting",
        "SynapticIntelligence",
    ]
    tasks = results["gem"]["updater"].memory.storage["task_ids"][:60]
    assert torch.bincount(tasks).tolist() == [15, 15, 15, 15]
