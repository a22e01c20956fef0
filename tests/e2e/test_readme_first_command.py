"""The README's first command, on a fresh clone with no ../shared beside it.

MNIST comes from a local HTTP server through ``RETENTIVE_MNIST_MIRROR``, as it would from a public
mirror. The demo runs with the README's documented quick option (``--samples-per-chunk``) to keep
the suite short; ``benchmarks/first_run.py`` runs it in full.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from first_run_support import (
    build_mirror,
    closed_port_url,
    fresh_clone,
    newcomer_env,
    readme_first_command,
    run_retentive,
    serve,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    try:
        return fresh_clone(tmp_path_factory.mktemp("newcomer"))
    except (FileNotFoundError, subprocess.CalledProcessError) as error:
        pytest.skip(f"no git checkout to clone: {error}")


def test_fresh_clone_runs_the_readme_demo_fetching_mnist_from_a_mirror(clone, tmp_path):
    args = readme_first_command(clone)
    assert args[0] == "demo"
    mirror = build_mirror(tmp_path / "mirror")
    with serve(mirror) as url:
        env = newcomer_env(tmp_path / "home", url)
        where = subprocess.run(
            [sys.executable, "-c", "import retentive; print(retentive.__file__)"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert where.startswith(str(clone))  # the clone's code runs, not this checkout's
        result = run_retentive(clone, [*args, "--samples-per-chunk", "200", "--threads", "1"], env)
    assert result.returncode == 0, result.stderr
    assert "Accuracy (%) on each chunk's test digits after each update" in result.stdout
    assert sum(line.strip().startswith(("0 |", "1 |", "2 |", "3 |", "4 |")) for line in result.stdout.splitlines()) == 5
    # one line says where MNIST came from and went; nothing else reaches stderr (no Lightning banner)
    assert result.stderr.splitlines() == [
        f"retentive: fetching MNIST from {url} into {tmp_path / 'home' / '.cache' / 'retentive' / 'mnist'}"
    ]
    cached = sorted(p.name for p in (tmp_path / "home" / ".cache" / "retentive" / "mnist").iterdir())
    assert cached == sorted(
        f"{name}.gz"
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    )
    assert (clone / "demo_output" / "state" / "chunk_004" / "manifest.json").is_file()


def test_fresh_clone_with_an_unreachable_mirror_fails_in_one_line(clone, tmp_path):
    url = closed_port_url()
    result = run_retentive(
        clone,
        [*readme_first_command(clone), "--output", "offline_output"],
        newcomer_env(tmp_path / "home", url),
        timeout=120,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("retentive: fetching MNIST from")  # where from, then why not
    assert lines[1].startswith("retentive demo: error: MNIST is not on this machine and could not be fetched")
    assert url in lines[1] and "--data" in lines[1] and "RETENTIVE_DATA" in lines[1]
    assert "Traceback" not in result.stderr
    assert not (clone / "offline_output").exists()  # nothing left behind
    assert not any((tmp_path / "home").rglob("*.gz"))


def test_4_the_pipeline_example_without_data_is_one_line(clone, tmp_path):
    """Finding 4 of issue 16: examples/split_mnist_pipeline.sh without data ended in a traceback."""
    env = newcomer_env(tmp_path / "home", closed_port_url())
    env.update(PYTHON=sys.executable, PYTHONPATH=str(clone))  # the clone's code, even for the export script
    result = subprocess.run(
        ["bash", "examples/split_mnist_pipeline.sh", "--output", str(tmp_path / "out")],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("export_split_mnist.py: error: MNIST is not on this machine")
