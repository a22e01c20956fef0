"""Shared fixtures for every test folder (unit/, e2e/, ddp/): one torch thread (2-core CI), real MNIST
subsets, quiet Lightning. The helper modules and subprocess workers live in support/, put on the
import path here so tests import them by name (``from helpers import QUIET``).

MNIST is found the way the library finds it (``--data``/``RETENTIVE_DATA``, the project's
``../shared``, the cache) and, on a machine that has none, fetched once into the cache from the
mirrors (``RETENTIVE_MNIST_MIRROR``), as the commands do: the README's test command passes on a
fresh clone that can reach a mirror.
"""

from __future__ import annotations

import logging
import signal
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

SUPPORT = Path(__file__).resolve().parent / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

torch.set_num_threads(1)
# A suite started in the background (`nohup pytest &`, a CI step without job control) inherits
# SIGINT ignored, and so would every process it starts: the interrupt tests send real SIGINTs, so
# the suite takes Python's default handler back, as an interactive run has it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(name).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (the suite's addopts) with the tests/ddp files as one unit: each DDP run
    is two processes that keep both cores busy, so they run one after another on one worker
    instead of two at a time stretching each other's collectives."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class DDPTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "tests/ddp" if scope.startswith("tests/ddp/") else scope

    return DDPTogether(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the local S3 server ``s3`` (select or skip them with ``-m s3``)."""
    for item in items:
        if "s3" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.s3)


@pytest.fixture(scope="session")
def mnist_available() -> None:
    from retentive.data.mnist import ensure_mnist

    ensure_mnist()


@pytest.fixture(scope="session")
def mnist_train(mnist_available):
    from retentive.data import load_mnist

    return load_mnist("train")


@pytest.fixture(scope="session")
def mnist_test(mnist_available):
    from retentive.data import load_mnist

    return load_mnist("test")


def small_split(dataset, per_chunk: int, seed: int = 0):
    """Split-MNIST with the first ``per_chunk`` samples of each two-digit chunk (fast tests)."""
    from retentive.data import split_mnist

    g = torch.Generator().manual_seed(seed)
    chunks = split_mnist(dataset)
    return [c.subset(torch.randperm(len(c), generator=g)[:per_chunk]) for c in chunks]


@pytest.fixture(scope="session")
def split_small(mnist_train, mnist_test):
    """(train chunks of 1000, test chunks of 300) for end-to-end tests on real data."""
    return small_split(mnist_train, 1000), small_split(mnist_test, 300)


@pytest.fixture(scope="module")
def chunks(split_small):
    """The first 64 samples of the first two Split-MNIST chunks (a module may define its own)."""
    train, _ = split_small
    return train[0].subset(torch.arange(64)), train[1].subset(torch.arange(64))


@pytest.fixture(scope="module")
def state1(tmp_path_factory, chunks):
    """A DER state folder after one update on ``chunks[0]`` (a module may define its own)."""
    from state_helpers import der

    folder = tmp_path_factory.mktemp("state1") / "s"
    der(folder).update(chunks[0], task_id=0)
    return folder


@pytest.fixture(scope="session")
def mlflow_session_uri(tmp_path_factory):
    """One MLflow tracking server for the session (tests/support/mlflow_server.py's ``mlflow_uri``
    hands it to a module), started when a test first needs it."""
    from mlflow_server import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


# the docs tests' block counts, summed over the pytest-xdist workers that ran doc pages
_WORKER_COUNTS: Counter[str] = Counter()


def _doc_block_counts() -> dict[str, Any]:
    doc_blocks = sys.modules.get("test_doc_blocks")
    return dict(getattr(doc_blocks, "COUNTS", None) or {})


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: hand this worker's doc-block counts to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["doc_blocks"] = _doc_block_counts()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the pytest-xdist controller: add up what each worker's doc pages counted."""
    _WORKER_COUNTS.update(getattr(node, "workeroutput", {}).get("doc_blocks", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The docs tests' summary: how many blocks the doc pages ran and checked (one line).

    Here rather than in tests/docs/conftest.py: a second module named ``conftest`` would replace
    this one in ``sys.modules``, and the tests that ``from conftest import ...`` would break."""
    counts = _doc_block_counts() or dict(_WORKER_COUNTS)
    if not counts or not counts.get("pages"):
        return
    slowest = sorted(((v, k[8:]) for k, v in counts.items() if k.startswith("seconds ")), reverse=True)[:3]
    terminalreporter.write_line(
        f"doc blocks: {counts['python']} python blocks run, {counts['commands']} command lines parsed, "
        f"{counts['data']} data blocks parsed, {counts['text']} text blocks, over {counts['pages']} pages; "
        f"slowest: {', '.join(f'{page} {seconds} s' for seconds, page in slowest)}"
    )
