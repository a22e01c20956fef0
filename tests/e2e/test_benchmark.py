"""The benchmark harness end to end on small real-MNIST scenarios, and its parts."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from retentive.benchmarking import (
    PROTOCOLS,
    BenchmarkMethod,
    Progress,
    ScenarioOptions,
    build_scenario,
    load_methods,
    mean_std,
    read_runs,
    run_benchmark,
    run_scenario,
    task_order,
)
from retentive.benchmarking.orders import chunk_difficulty
from retentive.benchmarking.resources import Measure
from retentive.state import read_manifest

pytestmark = pytest.mark.slow

SMALL = ScenarioOptions(train_per_chunk=600, test_per_chunk=100)


@pytest.fixture(scope="module")
def mnist(mnist_train, mnist_test):
    return mnist_train, mnist_test


@pytest.fixture(scope="module")
def small_benchmark(mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    stream = io.StringIO()
    report = run_benchmark(
        ["seq-mnist"],
        ["fine-tuning", "der++"],
        seeds=[0, 1],
        output=out,
        options=SMALL,
        progress=Progress(20, stream=stream),
        data=mnist,
    )
    return report, out, stream.getvalue()


def test_every_run_is_a_full_accuracy_matrix_per_view(small_benchmark):
    report, _, _ = small_benchmark
    assert [(r.method, r.seed) for r in report.runs] == [
        ("fine-tuning", 0),
        ("der++", 0),
        ("fine-tuning", 1),
        ("der++", 1),
    ]
    for run in report.runs:
        assert set(run.views) == {"class-il", "task-il"}
        for view in run.views.values():
            matrix = torch.tensor(view.matrix)
            assert matrix.shape == (5, 5) and bool(((matrix >= 0) & (matrix <= 1)).all())
            assert set(view.metrics) == {"average_accuracy", "micro_average_accuracy", "forgetting", "bwt", "fwt"}
            assert view.metrics["average_accuracy"] == pytest.approx(float(matrix[-1].mean()))
        assert len(run.update_seconds) == 5 and all(s > 0 for s in run.update_seconds)
        assert run.train_counts == [600] * 5 and run.test_counts == [100] * 5
        assert all(p > 50 * 2**20 for p in run.peak_rss_bytes)


def test_fine_tuning_forgets_in_class_il_and_replay_forgets_less(small_benchmark):
    report, _, _ = small_benchmark
    ft = [r.views["class-il"] for r in report.runs if r.method == "fine-tuning"]
    der = [r.views["class-il"] for r in report.runs if r.method == "der++"]
    for view in ft:  # fine-tuning predicts only the last chunk's classes
        assert torch.tensor(view.matrix)[-1, :4].max() < 0.05
    for f, d in zip(ft, der):  # same seed, same chunks
        assert d.metrics["average_accuracy"] > f.metrics["average_accuracy"] + 0.1
        assert d.metrics["forgetting"] < f.metrics["forgetting"]
    # task-aware reading of the same model is far better than class-IL
    assert all(
        r.views["task-il"].metrics["average_accuracy"] > r.views["class-il"].metrics["average_accuracy"] + 0.2
        for r in report.runs
    )


def test_each_update_resumed_from_the_previous_state_folder(small_benchmark):
    report, out, _ = small_benchmark
    for run in report.runs:
        folder = out / "states" / "seq-mnist" / run.method / "given" / f"seed_{run.seed}"
        assert [p.name for p in folder.iterdir()] == ["chunk_004"]  # keep_states="last"
        manifest = read_manifest(folder / "chunk_004")
        assert manifest["updates_done"] == 5 and sorted(manifest["tasks_seen"]) == ["0", "1", "2", "3", "4"]
        assert run.final_state == str(folder / "chunk_004")


def test_files_table_heatmaps_and_tensorboard(small_benchmark):
    report, out, progress = small_benchmark
    data = json.loads((out / "results.json").read_text())
    assert len(data["runs"]) == 4 and len(data["summary"]) == 4 and data["settings"]["seeds"] == [0, 1]
    assert read_runs(out / "results.json")[0].views["class-il"].matrix == report.runs[0].views["class-il"].matrix
    with open(out / "runs.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and {r["view"] for r in rows} == {"class-il", "task-il"}
    with open(out / "summary.csv") as handle:
        summary = list(csv.DictReader(handle))
    der = next(r for r in summary if r["method"] == "der++" and r["view"] == "class-il")
    runs = [r.views["class-il"].metrics["average_accuracy"] for r in report.runs if r.method == "der++"]
    assert float(der["average_accuracy_mean"]) == pytest.approx(sum(runs) / 2)
    table = report.table()
    assert "±" in table and "der++" in table and "class-il" in table
    assert report.table(markdown=True).startswith("| scenario")
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == ["seq-mnist_class-il.png", "seq-mnist_task-il.png"]
    events = list((out / "tensorboard" / "seq-mnist" / "der++" / "given" / "seed_0").rglob("events.out.tfevents*"))
    assert {e.parent.name for e in events} == {"training", "evaluation"}
    assert progress.count("\n") == 20 and "chunk 5/5" in progress


def test_results_are_never_overwritten(small_benchmark, mnist):
    _, out, _ = small_benchmark
    with pytest.raises(FileExistsError):
        run_benchmark(["seq-mnist"], ["er"], output=out, options=SMALL, progress=False, data=mnist)


def test_task_incremental_and_domain_scenarios_run(mnist, tmp_path):
    options = ScenarioOptions(num_tasks=3, train_per_chunk=400, test_per_chunk=60)
    er = PROTOCOLS["seq-mnist"]["er"]
    til = run_scenario(er, build_scenario("seq-mnist-til", 0, options, mnist), 0, tmp_path / "til")
    assert list(til.views) == ["task-il"] and til.views["task-il"].metrics["average_accuracy"] > 0.8
    quick = BenchmarkMethod(
        "er",
        "ExperienceReplayModelUpdater",
        "SGD",
        {"lr": 0.1},
        {"memory_size": 50, "batch_size": 32, "memory_batch_size": 32},
    )
    rot = run_scenario(quick, build_scenario("rot-mnist", 0, options, mnist), 0, tmp_path / "rot", keep_states="none")
    assert torch.tensor(rot.views["domain-il"].matrix).shape == (3, 3) and rot.final_state is None
    assert not any((tmp_path / "rot").iterdir())
    for name in ("mnist-iid", "mnist-data-inc", "perm-mnist"):
        scenario = build_scenario(name, 1, options, mnist)
        assert scenario.num_chunks == 3 and len(scenario.test[2]) <= 60


def test_the_seed_fixes_the_domain_transforms(mnist):
    options = ScenarioOptions(num_tasks=2, train_per_chunk=20, test_per_chunk=20)
    a, b = (build_scenario("perm-mnist", 3, options, mnist) for _ in range(2))
    c = build_scenario("perm-mnist", 4, options, mnist)
    assert torch.equal(a.train[1].inputs, b.train[1].inputs) and not torch.equal(a.train[1].inputs, c.train[1].inputs)


def test_task_orders():
    d = [0.3, 0.1, 0.5, 0.1]
    assert task_order("easy-hard", d, 4) == [1, 3, 0, 2]
    assert task_order("hard-easy", d, 4) == [2, 0, 1, 3]
    assert task_order("given", None, 4) == [0, 1, 2, 3]
    r = task_order("random", None, 4, seed=5)
    assert sorted(r) == [0, 1, 2, 3] and r == task_order("random", None, 4, seed=5)
    with pytest.raises(ValueError, match="difficulty"):
        task_order("easy-hard", None, 4)


def test_reordered_scenarios_keep_task_ids_and_record_the_order(mnist, tmp_path):
    scenario = build_scenario("seq-mnist", 0, SMALL, mnist)
    difficulty = chunk_difficulty(scenario, seed=0, fit_per_chunk=100, score_per_chunk=100, epochs=1)
    assert difficulty.shape == (5,) and bool(((difficulty >= 0) & (difficulty <= 1)).all())
    order = task_order("hard-easy", difficulty, 5)
    arranged = scenario.reordered(order, "hard-easy")
    assert list(arranged.order) == order and arranged.chunk_names[0] == scenario.chunk_names[order[0]]
    assert int(arranged.train[0].task_ids[0]) == order[0]
    assert torch.equal(arranged.test[4].targets, scenario.test[order[4]].targets)


def test_method_specs_from_yaml(tmp_path):
    path = tmp_path / "methods.yaml"
    path.write_text(
        "my-er:\n  updater: ExperienceReplayModelUpdater\n  optimizer: Adam\n  optimizer_args: {lr: 0.001}\n"
        "  args: {memory_size: 20, batch_size: 8}\n"
        "custom:\n  updater: retentive.updaters.FineTuningModelUpdater\n"
    )
    specs = load_methods(path)
    assert specs["my-er"].optimizer == "Adam" and specs["my-er"].args["memory_size"] == 20
    assert specs["custom"].updater_class.__name__ == "FineTuningModelUpdater"
    bad = tmp_path / "bad.yaml"
    bad.write_text("x:\n  updater: ExperienceReplayModelUpdater\n  lr: 0.1\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_methods(bad)
    with pytest.raises(ValueError, match="unknown updater"):
        BenchmarkMethod("x", "NoSuchModelUpdater")
    with pytest.raises(ValueError, match="sets .*seed"):
        BenchmarkMethod("x", "FineTuningModelUpdater", args={"seed": 1})
    with pytest.raises(ValueError, match="optimizer"):
        BenchmarkMethod("x", "FineTuningModelUpdater", optimizer="Nope")


def test_mean_std_and_measure():
    assert mean_std([1.0, 3.0]) == pytest.approx((2.0, 2.0**0.5))
    assert mean_std([5.0]) == (5.0, 0.0)
    with Measure() as quiet:
        pass
    with Measure() as busy:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB touched inside the measured block
        block += 1
    assert busy.seconds > 0 and busy.scope in ("update", "process")
    if busy.scope == "update":
        assert busy.peak_rss_bytes > quiet.peak_rss_bytes + 48 * 2**20
