"""Independent subprocess jobs of one test module, started together so they run side by side.

A job here is a chain of single-threaded processes (a demo, updates each in a new process): while
one runs, the other core of a 2-core machine idles, and pytest itself only waits. A module-scoped
fixture starts the jobs its selected tests need at once; each test waits for its own job's result
(a job's exception is raised in the test that needs it, not in its neighbours). Only for jobs
whose assertions do not depend on timing: signal, kill and race tests run alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def side_by_side(
    request: pytest.FixtureRequest, jobs: Mapping[str, tuple[Callable[[], Any], tuple[str, ...]]]
) -> Iterator[dict[str, Future]]:
    """Start each job ``name: (run, tests)`` whose ``tests`` (names of tests in the fixture's
    module, ``test_x`` or one parametrization ``test_x[id]``) this session runs; give
    ``{name: future}``, and wait for them all on leaving."""
    items = [item for item in request.session.items if item.module is request.module]
    selected = {name for item in items for name in (item.name, item.originalname)}
    wanted = {name: run for name, (run, tests) in jobs.items() if selected.intersection(tests)}
    pool = ThreadPoolExecutor(max_workers=max(1, len(wanted)))
    try:
        yield {name: pool.submit(run) for name, run in wanted.items()}
    finally:
        pool.shutdown(wait=True)
