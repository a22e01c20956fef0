"""`retentive update`: every shipped config runs a chunk, then resumes for the next in a new process; help and exit codes."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from retentive.cli import main
from retentive.cli.config import instantiate, load_config
from retentive.data.files import read_chunk, write_chunk
from retentive.evaluation import accuracy
from retentive.state import load_state
from retentive.state.loading import load_model

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: every config in configs/, found when the tests are collected: a config added later is tested too
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
PER_CHUNK = 96


def run_updates(jobs: list[tuple[list[str], Path]]) -> list[subprocess.CompletedProcess[str]]:
    """`retentive update ARGS` in ``cwd`` for each job, one after another in one new Python process
    (tests/support/update_batch_worker.py) importing this checkout's retentive."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as scratch:
        requests, results = Path(scratch) / "jobs.json", Path(scratch) / "results.json"
        requests.write_text(json.dumps([{"args": args, "cwd": str(cwd)} for args, cwd in jobs]))
        worker = ROOT / "tests" / "support" / "update_batch_worker.py"
        done = subprocess.run(
            [sys.executable, str(worker), str(requests), str(results)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300 * max(1, len(jobs)),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return [
            subprocess.CompletedProcess(["retentive", "update", *args], r["returncode"], r["stdout"], r["stderr"])
            for (args, _), r in zip(jobs, json.loads(results.read_text()))
        ]


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def chunk_files(tmp_path_factory, split_small):
    """Two small Split-MNIST training chunks as .npz files, and a validation folder of both."""
    train, test = split_small
    folder = tmp_path_factory.mktemp("chunks")
    for index in (0, 1):
        write_chunk(folder / f"train_{index}.npz", train[index].subset(torch.arange(PER_CHUNK)))
        write_chunk(folder / "val" / f"chunk_{index}.pt", test[index].subset(torch.arange(50)))
    return folder


def test_every_config_is_found():
    assert {p.stem for p in CONFIGS} >= {"der", "er", "fine_tuning"}


@dataclass
class Chain:
    """One config's two updates: chunk 0 from scratch, then chunk 1 resuming from its state."""

    work: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str] | None = None
    before: dict[str, str] | None = None  # the first state's file digests before the second run

    @property
    def states(self) -> tuple[Path, Path]:
        return self.work / "state" / "chunk_0", self.work / "state" / "chunk_1"


def update_here(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`retentive update ...` in this process (as a library user running several updates would),
    its output captured; the result shaped like :func:`run_updates`'."""
    out, err, before = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["update", *map(str, args)])
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["retentive", "update", *map(str, args)], code, out.getvalue(), err.getvalue())


def first_update(config_path: Path, work: Path, chunk_files: Path) -> Chain:
    chain = Chain(
        work,
        update_here(
            "--config",
            config_path,
            "--data",
            chunk_files / "train_0.npz",
            "--output-state",
            work / "state" / "chunk_0",
            "--threads",
            "1",
            cwd=work,
        ),
    )
    if chain.first.returncode == 0:
        chain.before = digest(chain.states[0])
    return chain


def second_args(chain: Chain, config_path: Path, chunk_files: Path) -> list[str]:
    """The arguments of the update on chunk 1, resuming from the state folder of chunk 0."""
    return [
        str(arg)
        for arg in (
            "--config",
            config_path,
            "--data",
            chunk_files / "train_1.npz",
            "--input-state",
            chain.states[0],
            "--output-state",
            chain.states[1],
            "--val-data",
            chunk_files / "val",
            "--summary",
            chain.work / "summary.json",
            "--threads",
            "1",
        )
    ]


def second_updates(chains: list[tuple[Path, Chain]], chunk_files: Path) -> None:
    """Chunk 1 of each chain whose chunk 0 succeeded, all in one new process."""
    todo = [(path, chain) for path, chain in chains if chain.first.returncode == 0]
    done = run_updates([(second_args(chain, path, chunk_files), chain.work) for path, chain in todo])
    for (_, chain), result in zip(todo, done):
        chain.second = result


@pytest.fixture(scope="module")
def chains(chunk_files, tmp_path_factory) -> dict[Path, Chain]:
    """Every config's chain: chunk 0 in this process, one config after another, and chunk 1 in a
    new process resuming from the state folder chunk 0 wrote. The chunk-1 updates of each half of
    the configs share one process (start-up is most of a small update's cost); the first half's
    runs while this process does the second half's chunk 0."""
    halves = [CONFIGS[: len(CONFIGS) // 2], CONFIGS[len(CONFIGS) // 2 :]]
    chains: dict[Path, Chain] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = []
        for half in halves:
            for path in half:
                chains[path] = first_update(path, tmp_path_factory.mktemp(path.stem), chunk_files)
            futures.append(pool.submit(second_updates, [(path, chains[path]) for path in half], chunk_files))
        for future in futures:
            future.result()
    return chains


@pytest.mark.parametrize("config_path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_runs_a_chunk_then_resumes_for_the_next(config_path, chunk_files, chains):
    chain = chains[config_path]
    states = chain.states
    assert chain.first.returncode == 0, chain.first.stderr
    assert f"state -> {states[0]}" in chain.first.stdout
    assert chain.second is not None and chain.second.returncode == 0, chain.second.stderr
    assert digest(states[0]) == chain.before, "the input state folder is never modified"

    config = load_config(config_path)
    updater_name = config.updater.class_path.rsplit(".", 1)[-1]
    old, new = load_state(states[0]), load_state(states[1])
    assert old.manifest["updater"] == new.manifest["updater"] == updater_name
    # the second process resumed: counters continue from the first one's state
    assert (old.manifest["updates_done"], new.manifest["updates_done"]) == (1, 2)
    assert old.manifest["tasks_seen"] == {"0": PER_CHUNK}
    assert new.manifest["tasks_seen"] == {"0": PER_CHUNK, "1": PER_CHUNK}
    steps = old.learner["learner"]["total_steps"], new.learner["learner"]["total_steps"]
    assert 0 < steps[0] < steps[1]
    assert any(not torch.equal(old.model[k], new.model[k]) for k in old.model), "the second update trained"
    if new.manifest["memory"]["size"]:  # a memory remembers both chunks' digits
        remembered = set(new.memory["storage"]["targets"].tolist())
        assert remembered & {0, 1} and remembered & {2, 3}

    summary = json.loads((chain.work / "summary.json").read_text())
    assert summary["updater"] == updater_name and summary["samples"] == PER_CHUNK and summary["updates_done"] == 2
    # the reported validation accuracy is the saved model's, measured here independently
    model = load_model(instantiate(config.model, "model", config.source), states[1])
    assert summary["val_accuracy"] == pytest.approx(accuracy(model, read_chunk(chunk_files / "val")))
    if config.logger is not False and "TensorBoardLogger" in getattr(config.logger, "class_path", "TensorBoardLogger"):
        assert list(chain.work.rglob("events.out.tfevents.*")), "TensorBoard logs were written"


def test_help_explains_every_option_and_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["update", "--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in (
        "--config",
        "--data",
        "--input-state",
        "--output-state",
        "--task-id",
        "--val-data",
        "--set",
        "--summary",
    ):
        assert option in text
    for phrase in (
        "omit it for the first chunk",
        "must not exist yet",
        "weights_only=True",
        "column 'target'",
        "exit codes: 0",
    ):
        assert phrase in text


@pytest.mark.parametrize(
    "argv",
    [
        ["update"],  # no --config, --data, --output-state
        ["update", "--config", "c.yaml", "--data", "d.npz"],  # no --output-state
        ["update", "--config", "c.yaml", "--data", "d.npz", "--output-state", "o", "--threads", "0"],
        ["update", "--config", "c.yaml", "--data", "d.npz", "--output-state", "o", "--task-id", "-1"],
        ["update", "--config", "c.yaml", "--data", "d.npz", "--output-state", "o", "--bogus"],
    ],
)
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage: retentive" in capsys.readouterr().err


def test_retentive_errors_exit_1_with_the_reason(chunk_files, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs" / "er.yaml").read_text().replace("alpha: 1.0", "alpah: 1.0"))
    common = ["--data", str(chunk_files / "train_0.npz"), "--output-state", str(tmp_path / "out")]
    assert main(["update", "--config", str(bad), *common]) == 1
    err = capsys.readouterr().err
    assert err.startswith("retentive update: error: ") and f"{bad}: updater.init_args.alpah: unknown argument" in err

    good = str(ROOT / "configs" / "er.yaml")
    assert (
        main(
            ["update", "--config", good, "--data", str(tmp_path / "none.npz"), "--output-state", str(tmp_path / "out")]
        )
        == 1
    )
    assert "none.npz: no such file or folder" in capsys.readouterr().err
    assert main(["update", "--config", good, *common, "--input-state", str(tmp_path / "nothing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["update", "--config", good, *common, "--set", "optimizer.init_args.lr=fast"]) == 1
    assert "(with --set optimizer.init_args.lr): optimizer.init_args.lr: expected float" in capsys.readouterr().err
    table = tmp_path / "table.csv"
    table.write_text("a,b,c,target\n0.5,1,2,1\n0.1,3,4,0\n")
    assert main(["update", "--config", good, "--data", str(table), "--output-state", str(tmp_path / "out")]) == 1
    assert f"{table}: inputs of shape (3,) and dtype torch.float32 do not fit the model MLP" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "nothing is written on an error"
    (tmp_path / "taken").mkdir()
    assert main(["update", "--config", good, "--data", str(table), "--output-state", str(tmp_path / "taken")]) == 1
    assert "already exists" in capsys.readouterr().err


def test_a_csv_chunk_trains_through_the_command(split_small, chunk_files, tmp_path, capsys):
    """Tabular data: MNIST pixels as 784 CSV feature columns, through the shipped ER config."""
    train, _ = split_small
    pixels = train[0].subset(torch.arange(64))
    table = write_chunk(tmp_path / "pixels.csv", type(pixels)(pixels.inputs.flatten(1), pixels.targets))
    out = tmp_path / "state"
    argv = [
        "update",
        "--config",
        str(ROOT / "configs" / "er.yaml"),
        "--data",
        str(table),
        "--output-state",
        str(out),
        "--task-id",
        "7",
        "--set",
        "logger=false",
        "--summary",
        str(tmp_path / "summary.json"),
    ]
    assert main(argv) == 0
    manifest = load_state(out).manifest
    assert manifest["tasks_seen"] == {"7": 64} and manifest["memory"]["size"] == 64
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["task_id"] == 7 and summary["samples"] == 64 and summary["val_accuracy"] is None
    assert f"state -> {out}" in capsys.readouterr().out
