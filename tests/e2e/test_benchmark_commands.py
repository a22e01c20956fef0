"""``retentive benchmark`` and ``retentive evaluate`` through the command line entry point."""

from __future__ import annotations

import json

import pytest

from retentive.cli import main

pytestmark = pytest.mark.slow

SIGNATURE = b"\x89PNG\r\n\x1a\n"  # every PNG file starts with these bytes
QUICK = ["--tasks", "3", "--train-per-chunk", "300", "--test-per-chunk", "80"]


@pytest.fixture(scope="module")
def benchmarked(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "bench"
    methods = out.parent / "methods.yaml"
    methods.write_text(
        "small-er:\n  updater: ExperienceReplayModelUpdater\n  optimizer_args: {lr: 0.1}\n"
        "  args: {memory_size: 60, batch_size: 20, batch_memory_frac: 0.5, max_epochs: 1}\n"
    )
    code = main(
        [
            "benchmark",
            "--scenario",
            "seq-mnist",
            "--method",
            "fine-tuning",
            "small-er",
            "--methods-file",
            str(methods),
            "--orders",
            "given",
            "random",
            "--keep-states",
            "all",
            "--no-tensorboard",
            "--quiet",
            "--output",
            str(out),
            *QUICK,
        ]
    )
    return code, out


def test_benchmark_command_writes_results_and_prints_the_table(benchmarked, capsys):
    code, out = benchmarked
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert {(r["method"], r["order"]) for r in data["runs"]} == {
        ("fine-tuning", "given"),
        ("fine-tuning", "random"),
        ("small-er", "given"),
        ("small-er", "random"),
    }
    assert data["settings"]["methods"]["seq-mnist"]["small-er"]["args"]["memory_size"] == 60
    assert (out / "heatmaps" / "seq-mnist_class-il_random.png").read_bytes().startswith(SIGNATURE)
    assert not (out / "tensorboard").exists()
    states = sorted(p.name for p in (out / "states" / "seq-mnist" / "small-er" / "given" / "seed_0").iterdir())
    assert states == ["chunk_000", "chunk_001", "chunk_002"]


def test_evaluate_rebuilds_the_matrix_from_the_state_folders(benchmarked, tmp_path, capsys):
    _, out = benchmarked
    folder = out / "states" / "seq-mnist" / "small-er" / "given" / "seed_0"
    states = [str(folder / f"chunk_00{i}") for i in range(3)]
    report = tmp_path / "eval.json"
    heatmap = tmp_path / "eval.png"
    code = main(
        [
            "evaluate",
            *states,
            "--scenario",
            "seq-mnist",
            "--tasks",
            "3",
            "--test-per-chunk",
            "80",
            "--json",
            str(report),
            "--heatmap",
            str(heatmap),
        ]
    )
    assert code == 0
    evaluated = json.loads(report.read_text())["views"]["class-il"]
    run = next(
        r
        for r in json.loads((out / "results.json").read_text())["runs"]
        if r["method"] == "small-er" and r["order"] == "given"
    )
    flat = [v for row in evaluated["matrix"] for v in row]
    assert flat == pytest.approx([v for row in run["views"]["class-il"]["matrix"] for v in row])
    assert evaluated["metrics"]["forgetting"] == pytest.approx(run["views"]["class-il"]["metrics"]["forgetting"])
    assert heatmap.read_bytes().startswith(SIGNATURE)
    printed = capsys.readouterr().out
    assert "ExperienceReplayModelUpdater, 3 updates" in printed and "metrics over all chunks" in printed
    # Renate's flip metrics between consecutive states: each rate in [0, 1], as many pairs as states - 1
    flips = json.loads(report.read_text())["flips"]
    assert [f["to"] for f in flips] == states[1:]
    assert all(0.0 <= f[name] <= 1.0 for f in flips for name in ("nfr", "pfr", "nfi", "pfi"))
    assert flips[0]["nfr"] > 0  # a class-incremental update forgets: some samples flip to wrong
    assert "flips " in printed and "NFR" in printed


def test_evaluate_one_state_reports_the_chunks_seen_so_far(benchmarked, capsys):
    _, out = benchmarked
    state = out / "states" / "seq-mnist" / "small-er" / "given" / "seed_0" / "chunk_000"
    assert main(["evaluate", str(state), "--scenario", "seq-mnist", "--tasks", "3", "--test-per-chunk", "80"]) == 0
    assert "the first 1 of 3 chunks" in capsys.readouterr().out


def test_evaluate_refuses_a_folder_that_is_not_a_state(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--scenario", "seq-mnist", "--test-per-chunk", "10"]) == 1
    assert "manifest.json is missing" in capsys.readouterr().err


def test_bad_arguments_exit_with_usage_errors(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--scenario", "seq-mnist", "--model", "nocolon"]) == 2
    assert main(["benchmark", "--method", "no-such-method", "--output", str(tmp_path / "x"), *QUICK]) == 2
    assert "unknown method 'no-such-method'" in capsys.readouterr().err


# ---------------------------------------------------------------- issue 16, finding 7: `retentive evaluate`
def _states(out, count=3):
    folder = out / "states" / "seq-mnist" / "small-er" / "given" / "seed_0"
    return [str(folder / f"chunk_00{i}") for i in range(count)]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_7_evaluate_refuses_state_folders_out_of_update_order(benchmarked, capsys):
    _, out = benchmarked
    first, second, third = _states(out)
    assert (
        main(["evaluate", second, first, third, "--scenario", "seq-mnist", "--tasks", "3", "--test-per-chunk", "20"])
        == 1
    )
    line = _one_line(capsys)
    assert (
        "out of update order" in line and f"{second!r} is after 2 updates but the next one, {first!r}, after 1" in line
    )


def test_7_evaluate_imports_model_from_the_current_folder(benchmarked, tmp_path, monkeypatch, capsys):
    import sys

    _, out = benchmarked
    (tmp_path / "issue16_models.py").write_text(
        "from retentive.models import MLP\n\n\ndef build():\n    return MLP()\n"
    )
    monkeypatch.chdir(tmp_path)
    # as the `retentive` script runs: the current folder is not on sys.path
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    code = main(
        [
            "evaluate",
            *_states(out, 1),
            "--scenario",
            "seq-mnist",
            "--tasks",
            "3",
            "--test-per-chunk",
            "20",
            "--model",
            "issue16_models:build",
        ]
    )
    assert code == 0, capsys.readouterr().err


def test_7_evaluate_suggests_model_when_the_weights_do_not_fit(benchmarked, capsys):
    _, out = benchmarked
    code = main(["evaluate", *_states(out, 1), "--scenario", "seq-mnist-til", "--tasks", "3", "--test-per-chunk", "20"])
    assert code == 1
    line = _one_line(capsys)
    assert "does not fit the model passed in (MultiHeadClassifier)" in line and "pass --model MODULE:FUNCTION" in line
    assert len(line) < 600  # not a load_state_dict dump


def test_7_evaluate_heatmap_shows_the_acc_it_prints(benchmarked, tmp_path, monkeypatch, capsys):
    import retentive.benchmarking.heatmap as heatmap

    _, out = benchmarked
    recorded = {}
    monkeypatch.setattr(
        heatmap, "write_heatmap", lambda path, matrices, caption=None, seen=None: recorded.update(k=seen)
    )
    assert (
        main(
            [
                "evaluate",
                *_states(out, 2),
                "--scenario",
                "seq-mnist",
                "--tasks",
                "3",
                "--test-per-chunk",
                "20",
                "--heatmap",
                str(tmp_path / "h.png"),
            ]
        )
        == 0
    )
    assert recorded == {"k": 2}  # the panels' ACC is over the 2 chunks seen, as the printed metrics are
    assert "metrics over the first 2 of 3 chunks (average_accuracy is the ACC over them)" in capsys.readouterr().out
