"""The README's first command, on a fresh clone with no ../shared beside it.

MNIST comes from a local HTTP server through ``RETENTIVE_MNIST_MIRROR``, as it would from a public
mirror. The demo runs with the README's documented quick option (``--samples-per-chunk``) to keep
the suite short; ``benchmarks/first_run.py`` runs it in full.
"""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

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
from side_by_side import side_by_side

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    try:
        return fresh_clone(tmp_path_factory.mktemp("newcomer"))
    except (FileNotFoundError, subprocess.CalledProcessError) as error:
        pytest.skip(f"no git checkout to clone: {error}")


def _demo(clone: Path, work: Path) -> tuple[str, str, subprocess.CompletedProcess]:
    """The README's demo in the clone, MNIST served from a local mirror: (mirror URL, where the
    clone's Python found retentive, the demo's result)."""
    args = readme_first_command(clone)
    assert args[0] == "demo"
    mirror = build_mirror(work / "mirror")
    with serve(mirror) as url:
        env = newcomer_env(work / "home", url)
        where = subprocess.run(
            [sys.executable, "-c", "import retentive; print(retentive.__file__)"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return url, where, run_retentive(clone, [*args, "--samples-per-chunk", "200", "--threads", "1"], env)


def _offline(clone: Path, work: Path) -> tuple[str, subprocess.CompletedProcess]:
    url = closed_port_url()
    return url, run_retentive(
        clone,
        [*readme_first_command(clone), "--output", "offline_output"],
        newcomer_env(work / "home", url),
        timeout=120,
    )


def _pipeline(clone: Path, work: Path) -> subprocess.CompletedProcess:
    env = newcomer_env(work / "home", closed_port_url())
    env.update(PYTHON=sys.executable, PYTHONPATH=str(clone))  # the clone's code, even for the export script
    return subprocess.run(
        ["bash", "examples/split_mnist_pipeline.sh", "--output", str(work / "out")],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def runs(request, clone, tmp_path_factory):
    """The selected tests' commands, started together (tests/support/side_by_side.py), each with a
    home folder of its own: ``{name: (its folder, future of its result)}``. The demo's long run
    leaves a core idle; the failing commands' checks do not depend on timing."""
    jobs = {
        "demo": (_demo, "test_fresh_clone_runs_the_readme_demo_fetching_mnist_from_a_mirror"),
        "offline": (_offline, "test_fresh_clone_with_an_unreachable_mirror_fails_in_one_line"),
        "pipeline": (_pipeline, "test_4_the_pipeline_example_without_data_is_one_line"),
    }
    work = {name: tmp_path_factory.mktemp(name) for name in jobs}
    started = {name: (partial(run, clone, work[name]), (test,)) for name, (run, test) in jobs.items()}
    with side_by_side(request, started) as futures:
        yield {name: (work[name], future) for name, future in futures.items()}


def test_fresh_clone_runs_the_readme_demo_fetching_mnist_from_a_mirror(clone, runs):
    work, running = runs["demo"]
    url, where, result = running.result()
    assert where.startswith(str(clone))  # the clone's code runs, not this checkout's
    assert result.returncode == 0, result.stderr
    assert "Accuracy (%) on each chunk's test digits after each update" in result.stdout
    assert sum(line.strip().startswith(("0 |", "1 |", "2 |", "3 |", "4 |")) for line in result.stdout.splitlines()) == 5
    # one line says where MNIST came from and went; nothing else reaches stderr (no Lightning banner)
    assert result.stderr.splitlines() == [
        f"retentive: fetching MNIST from {url} into {work / 'home' / '.cache' / 'retentive' / 'mnist'}"
    ]
    cached = sorted(p.name for p in (work / "home" / ".cache" / "retentive" / "mnist").iterdir())
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


def test_fresh_clone_with_an_unreachable_mirror_fails_in_one_line(clone, runs):
    work, running = runs["offline"]
    url, result = running.result()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("retentive: fetching MNIST from")  # where from, then why not
    assert lines[1].startswith("retentive demo: error: MNIST is not on this machine and could not be fetched")
    assert url in lines[1] and "--data" in lines[1] and "RETENTIVE_DATA" in lines[1]
    assert "Traceback" not in result.stderr
    assert not (clone / "offline_output").exists()  # nothing left behind
    assert not any((work / "home").rglob("*.gz"))


def test_4_the_pipeline_example_without_data_is_one_line(runs):
    """Finding 4 of issue 16: examples/split_mnist_pipeline.sh without data ended in a traceback."""
    result = runs["pipeline"][1].result()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("export_split_mnist.py: error: MNIST is not on this machine")
