"""The command line's layout: retentive/cli is one module per command, the config
code is split by stage, and nothing heavy is imported before a command runs."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from retentive.cli import COMMANDS, build_parser

if sys.version_info >= (3, 11):
    import tomllib
else:  # the dev extra installs tomli on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_one_module_per_command_and_the_entry_point():
    assert sorted(COMMANDS) == [
        "benchmark",
        "demo",
        "evaluate",
        "import-renate",
        "inspect",
        "memory",
        "promote",
        "rollback",
        "shift",
        "tune",
        "update",
    ]
    for name, (module, _) in COMMANDS.items():
        assert module == f"retentive.cli.{name.replace('-', '_')}"
        command = importlib.import_module(module)
        assert callable(command.configure) and callable(command.run)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"retentive": "retentive.cli:main"}
    assert not (ROOT / "retentive" / "commands").exists() and not (ROOT / "retentive" / "cli.py").exists()
    build_parser()  # every command's options at once still build


def test_the_choices_mirror_the_registries():
    from retentive.benchmarking.orders import ORDERS
    from retentive.benchmarking.runner import KEEP_STATES
    from retentive.benchmarking.scenarios import SCENARIOS
    from retentive.cli import names

    assert tuple(sorted(SCENARIOS)) == names.SCENARIOS and names.ORDERS == ORDERS and names.KEEP_STATES == KEEP_STATES


def test_the_config_code_is_split_by_stage_and_the_old_import_still_works():
    folder = ROOT / "retentive" / "cli" / "config"
    modules = sorted(p.stem for p in folder.glob("*.py"))
    assert modules == ["__init__", "building", "checking", "gate", "hints", "parsing", "schema", "signatures"]
    assert all(len(p.read_text().splitlines()) <= 400 for p in folder.glob("*.py"))
    import retentive.cli.config as new
    import retentive.config as old

    assert old.load_config is new.load_config and old.build_updater is new.build_updater


def test_importing_retentive_and_the_cli_imports_neither_torch_nor_lightning():
    probe = (
        "import sys, retentive, retentive.cli, retentive.cli.config, retentive.quiet\n"
        "print(sorted(m for m in ('torch', 'pytorch_lightning', 'lightning', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "name", ["DarkExperienceReplayModelUpdater", "load_model", "RetentiveError", "Learner", "accuracy_row"]
)
def test_public_names_load_on_first_use(name):
    import retentive

    assert name in retentive.__all__ and getattr(retentive, name) is not None
    assert name in dir(retentive)


def test_an_unknown_name_is_an_attribute_error():
    import retentive

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        retentive.Nope  # noqa: B018
