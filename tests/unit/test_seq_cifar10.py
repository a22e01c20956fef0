"""Seq-CIFAR-10 through the scenario and benchmark harness, on a few hundred real CIFAR-10 images.

The images are the project's shared copy (JPEG re-encoded at quality ~75): close to, not
identical with, the canonical archive, so no figure here is comparable with the paper's.
"""

from __future__ import annotations

import pytest
import torch
from cifar_support import sample_folders

from retentive.benchmarking import PROTOCOLS, BenchmarkMethod, ScenarioOptions, build_scenario, run_benchmark
from retentive.benchmarking.scenarios import SCENARIOS, scenario_data
from retentive.data import SEQ_CIFAR10_CLASSES, image_folder, seq_cifar10
from retentive.models import ResNet18


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(train, test) as the benchmark loads CIFAR-10: float32 images in [0, 1]."""
    sample = sample_folders(tmp_path_factory.mktemp("cifar-sample"), per_class=12, test_per_class=6)
    return image_folder(sample / "train", cache=False).as_float(), image_folder(sample / "test", cache=False).as_float()


def test_seq_cifar10_is_five_tasks_of_two_classes_in_order(pair):
    train, _ = pair
    chunks = seq_cifar10(train)
    assert SEQ_CIFAR10_CLASSES == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
    assert [c.targets.unique().tolist() for c in chunks] == [list(g) for g in SEQ_CIFAR10_CLASSES]
    assert all(c.task_ids is None for c in chunks) and len(chunks[0]) == 24
    assert [c.task_ids.unique().tolist() for c in seq_cifar10(train, with_task_ids=True)] == [[t] for t in range(5)]


def test_the_scenario_reads_class_il_and_task_il_with_the_paper_model(pair):
    scenario = build_scenario("seq-cifar10", seed=0, options=ScenarioOptions(train_per_chunk=10), data=pair)
    assert SCENARIOS["seq-cifar10"].dataset == "cifar10" and scenario.protocol == "seq-cifar10"
    assert dict(scenario.views) == {"class-il": False, "task-il": True}
    assert scenario.chunk_names[0] == "airplane and automobile" and scenario.chunk_names[4] == "ship and truck"
    assert [len(c) for c in scenario.train] == [10] * 5 and scenario.test_counts() == [12] * 5
    model = scenario.model_factory()
    assert isinstance(model, ResNet18) and model.nf == 64
    assert model.eval()(scenario.test[0].inputs[:2]).shape == (2, 10)


def test_the_protocol_holds_the_papers_seq_cifar10_settings():
    der_pp = PROTOCOLS["seq-cifar10"]["der++"]
    assert der_pp.optimizer_args == {"lr": 0.03}
    assert {k: der_pp.args[k] for k in ("alpha", "beta", "batch_size", "memory_batch_size", "max_epochs")} == {
        "alpha": 0.2,
        "beta": 0.5,
        "batch_size": 32,
        "memory_batch_size": 32,
        "max_epochs": 50,
    }
    assert PROTOCOLS["seq-cifar10"]["der"].args["alpha"] == 0.3 and PROTOCOLS["seq-cifar10"]["er"].optimizer_args == {
        "lr": 0.1
    }


def test_each_dataset_is_loaded_once_for_its_scenarios(monkeypatch, pair):
    calls = []
    monkeypatch.setattr(
        "retentive.benchmarking.scenarios.DATASETS",
        {
            "mnist": (lambda root: calls.append("mnist") or pair, None),
            "cifar10": (lambda root: calls.append("c") or pair, None),
        },
    )
    data = scenario_data(["seq-cifar10", "seq-mnist", "perm-mnist", "seq-cifar10"])
    assert calls == ["c", "mnist"] and data["seq-cifar10"] is pair


@pytest.mark.slow
def test_a_small_seq_cifar10_benchmark_runs_end_to_end(pair, tmp_path):
    """Two methods, one step per chunk, through the harness, with both views measured."""
    spec = PROTOCOLS["seq-cifar10"]["der++"].to_dict()
    spec["args"] = {**spec["args"], "max_epochs": 1, "batch_size": 8, "memory_batch_size": 8, "memory_size": 20}
    quick = BenchmarkMethod.from_dict("der++", spec)
    report = run_benchmark(
        ["seq-cifar10"],
        ["quick-der++"],
        output=tmp_path / "bench",
        options=ScenarioOptions(train_per_chunk=8, test_per_chunk=6),
        custom_methods={"quick-der++": quick},
        tensorboard=False,
        progress=False,
        data=pair,
    )
    (run,) = report.runs
    assert set(run.views) == {"class-il", "task-il"} and run.train_counts == [8] * 5
    class_il = torch.tensor(run.views["class-il"].matrix)
    task_il = torch.tensor(run.views["task-il"].matrix)
    assert class_il.shape == (5, 5) and bool((task_il >= class_il).all())  # masking can only help
