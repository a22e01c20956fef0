"""The command line as a newcomer meets it: the tests find MNIST as the library does, --help and
usage errors are fast and import no torch, every error is one line naming the flag or file, an
interrupted update is neither restarted nor deleted silently, and Lightning stays quiet (the
README's first command is tests/e2e/test_readme_first_command.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from retentive.cli import main
from retentive.data.files import write_chunk
from retentive.state.resume import checkpoint_root, leftover_epochs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ER = ROOT / "configs" / "er.yaml"
QUIET = ["--set", "logger=false", "--threads", "1"]


@pytest.fixture(scope="module")
def chunks(tmp_path_factory, split_small):
    train, test = split_small
    folder = tmp_path_factory.mktemp("chunks")
    for index in (0, 1):
        write_chunk(folder / f"train_{index}.npz", train[index].subset(torch.arange(96)))
    write_chunk(folder / "val.npz", test[0].subset(torch.arange(40)))
    return folder


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"retentive {command}: error: "), err
    return lines[0]


# ------------------------------------------------------------------ 2. the README's test command
def test_2_tests_find_mnist_as_the_library_does():
    """tests/unit/test_mnist.py hard-coded ../shared/data/mnist; now no test names that folder."""
    pattern = re.compile(r"""/\s*["']shared["']|["'][^"'\n]*\.\./shared""")  # a path built to it in code
    offenders = [
        p.name
        for p in (ROOT / "tests").rglob("*.py")
        if p.name
        not in (
            "test_cli_errors_and_usage.py",
            "test_readme_first_command.py",
            "first_run_support.py",
        )  # these check its absence
        and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
    conftest = (ROOT / "tests" / "conftest.py").read_text(encoding="utf-8")
    assert "ensure_mnist()" in conftest  # a machine without MNIST fetches it, as the commands do


# ------------------------------------------------------------------ 3. --help in well under a second
@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["update", "--help"],
        ["benchmark", "--help"],
        ["evaluate", "--help"],
        ["demo", "--help"],
        ["inspect", "--help"],
        ["shift", "--help"],
        ["updte"],
        ["--version"],
        ["update", "--config", "c", "--data", "d", "--output-state", "o", "--set", "x"],
    ],
)
def test_3_help_and_usage_errors_import_neither_torch_nor_lightning(argv):
    probe = (
        "import json, sys, time; start = time.perf_counter()\n"
        "from retentive.cli import main\n"
        "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        "heavy = sorted(m for m in ('torch', 'pytorch_lightning', 'lightning', 'numpy') if m in sys.modules)\n"
        "print(json.dumps([code, heavy, time.perf_counter() - start]), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60)
    code, heavy, seconds = json.loads(result.stderr.strip().splitlines()[-1])
    assert heavy == [], f"{argv} imported {heavy}"
    assert code in (0, 2) and seconds < 1.0, (argv, code, seconds)


def test_3_version():
    result = subprocess.run(
        [sys.executable, "-m", "retentive.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    from retentive import __version__

    assert result.returncode == 0 and result.stdout.strip() == f"retentive {__version__}"


# ------------------------------------------------------------------ 4. one line, not a traceback
def test_4_ddp_spawn_is_one_line_naming_the_key(chunks, tmp_path, capsys):
    code = main(
        [
            "update",
            "--config",
            str(ER),
            "--data",
            str(chunks / "train_0.npz"),
            "--output-state",
            str(tmp_path / "new" / "s0"),
            *QUIET,
            "--set",
            "trainer.strategy=ddp_spawn",
            "--set",
            "trainer.devices=2",
        ]
    )
    assert code == 1
    line = _one_error_line(capsys, "update")
    assert "(with --set trainer.strategy): trainer.strategy: 'ddp_spawn' is refused" in line
    assert not (tmp_path / "new").exists()  # the folder it would have made is gone again


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: accelerator=gpu is valid here")
def test_4_an_accelerator_the_machine_lacks_is_one_line(chunks, tmp_path, capsys):
    code = main(
        [
            "update",
            "--config",
            str(ER),
            "--data",
            str(chunks / "train_0.npz"),
            "--output-state",
            str(tmp_path / "s0"),
            *QUIET,
            "--set",
            "trainer.accelerator=gpu",
        ]
    )
    assert code == 1
    line = _one_error_line(capsys, "update")
    assert "trainer.accelerator: Lightning refused the Trainer settings (accelerator='gpu'" in line


def test_4_a_misspelled_methods_file_key_is_one_line_and_leaves_no_output(tmp_path, capsys):
    methods = tmp_path / "methods.yaml"
    methods.write_text("my-er:\n  updater: ExperienceReplayModelUpdater\n  args: {memory_sise: 50}\n")
    out = tmp_path / "bench"
    assert (
        main(["benchmark", "--method", "my-er", "--methods-file", str(methods), "--output", str(out), "--quiet"]) == 1
    )
    line = _one_error_line(capsys, "benchmark")
    # the same checker, and so the same message, as `retentive update --config`
    assert (
        f"{methods}: my-er.args.memory_sise: unknown argument of ExperienceReplayModelUpdater (did you mean 'memory_size'?)"
        in line
    )
    assert not out.exists()


def test_4_benchmark_without_data_exits_1_not_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RETENTIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RETENTIVE_MNIST_MIRROR", "http://127.0.0.1:9/")
    monkeypatch.setattr(
        "retentive.data.mnist.search_dirs", lambda root=None: [tmp_path / "nowhere", tmp_path / "cache" / "mnist"]
    )
    assert main(["benchmark", "--method", "er", "--output", str(tmp_path / "bench"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "could not be fetched" in err and "Traceback" not in err
    assert not (tmp_path / "bench").exists()


# ------------------------------------------------------------------ 5. nothing starts over silently
def test_5_an_interrupted_update_is_neither_restarted_nor_deleted_silently(chunks, tmp_path, monkeypatch, capsys):
    output = tmp_path / "state" / "chunk_0"
    args = [
        "update",
        "--config",
        str(ER),
        "--data",
        str(chunks / "train_0.npz"),
        "--output-state",
        str(output),
        *QUIET,
        "--set",
        "trainer.max_epochs=3",
        "--set",
        "trainer.callbacks=[{class_path: crash_callback.CrashAtEpoch}]",
    ]
    monkeypatch.setenv("RETENTIVE_TEST_CRASH_AT", "2")
    with pytest.raises(RuntimeError, match="simulated crash"):  # a defect, not a user error: its traceback stays
        main([*args, "--resume"])
    monkeypatch.delenv("RETENTIVE_TEST_CRASH_AT")
    capsys.readouterr()
    epochs = leftover_epochs(output)
    assert epochs == 1

    assert main(args) == 1  # without --resume: refused, the checkpoint kept
    line = _one_error_line(capsys, "update")
    assert f"pass --resume to continue from epoch {epochs}, or --fresh to discard it" in line
    assert leftover_epochs(output) == epochs and not output.exists()

    assert main([*args, "--resume", "--set", "optimizer.init_args.lr=0.05"]) == 1  # another lr: names only lr
    line = _one_error_line(capsys, "update")
    assert re.search(
        r"\(hyperparameters: checkpoint \{[\w.]*\blr: 0\.1\}, this update \{[\w.]*\blr: 0\.05\}\)", line
    ), line
    # not two 900-character dicts; the line names the temporary folder twice, which is longer under
    # pytest-xdist (.../popen-gw1/...): 376 is the old limit of 500 less two 62-character folders
    assert len(line.replace(str(tmp_path), "")) < 376, line

    assert main([*args, "--resume"]) == 0
    assert f"resuming from the checkpoint after epoch {epochs}" in capsys.readouterr().out
    assert output.is_dir() and leftover_epochs(output) is None


def test_5_fresh_discards_the_checkpoint_and_says_so(chunks, tmp_path, capsys):
    output = tmp_path / "s0"
    (checkpoint_root(output) / "epoch-0004").mkdir(parents=True)
    assert (
        main(
            [
                "update",
                "--config",
                str(ER),
                "--data",
                str(chunks / "train_0.npz"),
                "--output-state",
                str(output),
                *QUIET,
                "--fresh",
            ]
        )
        == 0
    )
    assert "discarded the checkpoint after epoch 4" in capsys.readouterr().out
    assert not checkpoint_root(output).exists() and output.is_dir()


def test_5_a_second_chunk_without_input_state_is_refused_unless_from_scratch(chunks, tmp_path, capsys):
    common = ["update", "--config", str(ER), *QUIET]
    assert main([*common, "--data", str(chunks / "train_0.npz"), "--output-state", str(tmp_path / "chunk_0")]) == 0
    capsys.readouterr()
    second = [*common, "--data", str(chunks / "train_1.npz"), "--output-state", str(tmp_path / "chunk_1")]
    assert main(second) == 1
    line = _one_error_line(capsys, "update")
    assert f"pass --input-state '{tmp_path / 'chunk_0'}' to continue the pipeline, or --from-scratch" in line
    assert main([*second, "--from-scratch"]) == 0
    assert json.loads((tmp_path / "chunk_1" / "manifest.json").read_text())["updates_done"] == 1  # a new model


# ------------------------------------------------------------------ 6. messages in the user's terms
def test_6_errors_name_flags_and_files(chunks, tmp_path, capsys):
    common = ["update", "--config", str(ER), "--data", str(chunks / "train_0.npz"), *QUIET]
    (tmp_path / "taken").mkdir()
    assert main([*common, "--output-state", str(tmp_path / "taken"), "--from-scratch"]) == 1
    line = _one_error_line(capsys, "update")
    assert f"--output-state '{tmp_path / 'taken'}' already exists" in line and "output_state_folder" not in line
    # a label outside the model's outputs: the message names the file
    bad = tmp_path / "bad.npz"
    write_chunk(
        bad,
        __import__("retentive.data.tensors", fromlist=["TensorChunk"]).TensorChunk(
            torch.rand(8, 1, 28, 28), torch.full((8,), 12)
        ),
    )
    assert main(["update", "--config", str(ER), "--data", str(bad), "--output-state", str(tmp_path / "o"), *QUIET]) == 1
    line = _one_error_line(capsys, "update")
    assert f"{bad}: training label 12" in line


def test_6_set_without_equals_is_bad_usage(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["update", "--config", "c.yaml", "--data", "d", "--output-state", "o", "--set", "trainer.max_epochs"])
    assert caught.value.code == 2 and "expected KEY=VALUE" in capsys.readouterr().err


# ------------------------------------------------------------------ 8. noise and small confusions
def test_8_quiet_lightning_silences_the_banner_and_tip_in_one_place(split_small, tmp_path, capfd):
    from functools import partial

    from retentive import FineTuningModelUpdater
    from retentive.models import MLP
    from retentive.quiet import quiet_lightning

    train, _ = split_small
    updater = FineTuningModelUpdater(
        model=MLP(),
        loss_fn=torch.nn.CrossEntropyLoss(),
        optimizer=partial(torch.optim.SGD, lr=0.1),
        batch_size=64,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        log_every_n_steps=1000,
        output_state_folder=tmp_path / "s",
    )
    import logging

    level = logging.getLogger("pytorch_lightning.utilities.rank_zero").level
    with quiet_lightning():
        updater.update(train[0].subset(torch.arange(32)))
    captured = capfd.readouterr()
    text = captured.out + captured.err
    assert "GPU available" not in text and "litlogger" not in text and "logging interval" not in text
    assert logging.getLogger("pytorch_lightning.utilities.rank_zero").level == level  # put back
    # one place: no other module quiets a Lightning logger or filters warnings
    pattern = re.compile(r"""warnings\.filterwarnings\(|getLogger\(\s*["'](pytorch_lightning|lightning)""")
    sources = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "retentive").rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    )
    assert set(sources) == {"retentive/quiet.py"}


def test_8_load_model_returns_eval_mode(tmp_path, chunks, capsys):
    from retentive import load_model
    from retentive.models import MLP

    assert (
        main(
            [
                "update",
                "--config",
                str(ER),
                "--data",
                str(chunks / "train_0.npz"),
                "--output-state",
                str(tmp_path / "s"),
                *QUIET,
            ]
        )
        == 0
    )
    model = MLP().train()
    assert load_model(model, tmp_path / "s").training is False
    assert load_model(MLP().train(), tmp_path / "s", eval_mode=False).training is True


def test_8_readme_shows_how_to_reach_the_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up and run", 1)[1].split("\n## ", 1)[0]
    assert "source .venv/bin/activate" in setup  # `retentive` and `tensorboard` are then on PATH
    assert "--samples-per-chunk" in readme and "RETENTIVE_MNIST_MIRROR" in readme


def test_8_the_demo_validates_on_every_chunk_seen_so_far(tmp_path, monkeypatch, mnist_available):
    """The demo's val/accuracy covered only the current chunk's digits, hiding forgetting."""
    import retentive
    from retentive.models import MLP

    seen = {}

    class Recorder:
        def __init__(self, **kwargs):
            seen["output"] = kwargs["output_state_folder"]

        def update(self, train, val_dataset=None, task_id=None):
            seen["val"] = sorted(set(val_dataset.targets.tolist()))
            seen["train"] = sorted(set(train.targets.tolist()))
            return MLP()

    monkeypatch.setattr(retentive, "DarkExperienceReplayModelUpdater", Recorder)
    assert main(["demo", "--chunk", "2", "--output", str(tmp_path), "--samples-per-chunk", "20"]) == 0
    assert seen["train"] == [4, 5] and seen["val"] == [0, 1, 2, 3, 4, 5]


def test_4_a_method_in_the_update_config_form_is_checked_the_same_way(tmp_path):
    """One description of a method: the sections of an update config also serve as a benchmark method."""
    from retentive.benchmarking.methods import load_methods
    from retentive.cli.config import ConfigError

    methods = tmp_path / "methods.yaml"
    methods.write_text(
        "der:\n  updater: {class_path: retentive.DarkExperienceReplayModelUpdater, init_args: {memory_size: 50, beta: 0.5}}\n"
        "  optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.03}}\n  trainer: {max_epochs: 2}\n"
    )
    spec = load_methods(methods)["der"]
    assert spec.updater_class.__name__ == "DarkExperienceReplayModelUpdater" and spec.optimizer == "SGD"
    assert dict(spec.args) == {"memory_size": 50, "beta": 0.5, "max_epochs": 2} and dict(spec.optimizer_args) == {
        "lr": 0.03
    }
    methods.write_text(methods.read_text().replace("lr: 0.03", "lrr: 0.03"))
    with pytest.raises(
        ConfigError, match=r"der\.optimizer\.init_args\.lrr: unknown argument of SGD \(did you mean 'lr'\?\)"
    ):
        load_methods(methods)
    methods.write_text(
        "x:\n  updater: {class_path: retentive.ExperienceReplayModelUpdater}\n  trainer: {max_epochs: one}\n"
    )
    with pytest.raises(ConfigError, match=r"x\.updater\.init_args\.max_epochs: expected int"):
        load_methods(methods)
