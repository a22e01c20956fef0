"""benchmarks/step_speed.py's device and precision options on the ResNet-18 workload, on the CPU:
gpu.sh passes ``--device`` and ``--precision`` on every run, so both must work and report what ran."""

from __future__ import annotations

import re
import sys

import pytest
from script_modules import load_script

TINY = ["--model", "resnet18", "--nf", "4", "--rounds", "1", "--steps", "4"]


@pytest.fixture(scope="module")
def step_speed():
    saved = list(sys.path)  # the script puts its own folder on the path to import step_plain
    try:
        module = load_script("benchmarks/step_speed.py", "step_speed")
    finally:
        sys.path[:] = saved
    return module


def run(step_speed, monkeypatch, capsys, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["step_speed.py", *args])
    step_speed.main()
    return capsys.readouterr().out


def ratio(out: str, method: str) -> float:
    found = re.search(
        rf"^{re.escape(method)}\s+plain loop [\d.]+ ms \| retentive steady step [\d.]+ ms \(([\d.]+)x\)", out, re.M
    )
    assert found, out
    return float(found.group(1))


def test_device_cpu_times_both_sides_step_by_step(step_speed, monkeypatch, capsys):
    out = run(step_speed, monkeypatch, capsys, *TINY, "--device", "cpu", "--methods", "er")
    assert "device cpu, precision 32, timed in step by step" in out
    assert ratio(out, "ER") > 0
    assert "fastest step over fastest step" in out and "DER++" not in out


def test_window_timing_and_bf16_run_on_both_sides(step_speed, monkeypatch, capsys):
    out = run(
        step_speed,
        monkeypatch,
        capsys,
        *TINY,
        "--device",
        "cpu",
        "--precision",
        "bf16-mixed",
        "--window-timing",
        "--methods",
        "der++",
    )
    assert "device cpu, precision bf16-mixed, timed in synchronised windows" in out
    assert ratio(out, "DER++") > 0
    assert "per-step figures left out" in out and "fastest step over fastest step" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "cuda"], "apply to the --model resnet18 step comparison only"),
        (["--model", "resnet18", "--device", "tpu"], "--device 'tpu'"),
        (["--model", "resnet18", "--device", "meta"], "must be cpu, cuda or cuda:N"),
    ],
)
def test_bad_device_is_refused_before_any_work(step_speed, monkeypatch, capsys, args, message):
    monkeypatch.setattr(sys, "argv", ["step_speed.py", *args])
    with pytest.raises(SystemExit) as stopped:
        step_speed.parse_args()
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
