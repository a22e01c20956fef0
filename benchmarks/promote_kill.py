"""Kill test of a model home's promote: SIGKILL at any moment leaves exactly the old or the new current version.

A local home holds version A (current) and a candidate B (also with a challenger kept, so the
pointer carries every field). Each trial forks a worker that promotes B and is killed, cycling
through: a random moment of the promote (uniform over a clean worker's time from fork to exit), and a
self-kill right after each step of the commit (``verified``: B's checksums checked;
``written``: the new pointer written to its temporary file; ``renamed``: the temporary file
renamed over ``current.json``; ``synced``: the folder synced). After each kill the home must
read (its pointer validates), its current version must be A or B, whole (fetched and verified,
bit for bit equal to the folder it came from), and with B current A must be the previous one.
The home is then put back to A (a rollback) for the next trial. Run from ``kill_test.py --promote``.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import torch

from retentive.state import State, save_state
from retentive.state.home import ModelHome

#: the steps of a local promote after which a worker kills itself
PROMOTE_STEPS = ("verified", "written", "renamed", "synced")


def _state(folder: Path, value: float, size: int) -> Path:
    learner = {"updater": {"updates_done": int(value), "tasks_seen": {}, "task_order": []}}
    save_state(folder, State({"w": torch.full((size,), value)}, learner, {}, {"updates_done": int(value)}))
    return folder


def _self_kill_after(step: str) -> None:
    """In a worker: SIGKILL itself right after ``step`` of the promote."""
    import retentive.state.home as home_module
    import retentive.state.remote.pointer as pointer_module

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    verify, replace, fsync_dir = home_module.ModelHome._verify, pointer_module.os.replace, None

    def verified(self: Any, target: Any) -> None:
        verify(self, target)
        if step == "verified":
            die()

    def renamed(src: Any, dst: Any) -> None:
        if step == "written":
            die()
        replace(src, dst)
        if step == "renamed":
            die()

    import retentive.state.format as format_module

    fsync_dir = format_module._fsync_dir

    def synced(path: Any) -> None:
        fsync_dir(path)
        if step == "synced" and Path(path).name == "home":
            die()

    home_module.ModelHome._verify = verified  # type: ignore[method-assign]
    pointer_module.os.replace = renamed  # type: ignore[attr-defined]
    format_module._fsync_dir = synced


def _fork_promote(location: str, version: str, step: str | None) -> int:
    pid = os.fork()
    if pid == 0:  # the worker: promote, then exit
        code = 1
        try:
            if step is not None:
                _self_kill_after(step)
            ModelHome(location).promote(version)
            code = 0
        finally:
            os._exit(code)
    return pid


def _files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def run_promote_kill_test(kills: int, seed: int, workdir: Path, size: int = 200_000) -> dict[str, Any]:
    """``kills`` trials (see the module docstring); returns the counts, ``problems`` listing any violation."""
    rng = random.Random(seed)
    a, b, c = (_state(workdir / name, value, size) for name, value in (("a", 1.0), ("b", 2.0), ("c", 3.0)))
    home = ModelHome(workdir / "home").create()
    first = home.promote(home.write_candidate(a), expect=None)
    candidate = home.write_candidate(b)
    home.mark_challenger(home.write_candidate(c), {"passed": False})
    home.promote(candidate)  # recorded (rolled back, B is a rejected version): a worker promotes it by id
    home.rollback()
    begun = time.perf_counter()  # a clean promote in a worker, timed from the fork to its exit
    os.waitpid(_fork_promote(home.location, candidate.id, None), 0)
    window = time.perf_counter() - begun
    home.rollback()
    counts: dict[str, Any] = {"old": 0, "new": 0, "problems": [], "steps": {}, "window_ms": round(1e3 * window, 2)}
    for trial in range(kills):
        step = None if trial % 2 == 0 else PROMOTE_STEPS[(trial // 2) % len(PROMOTE_STEPS)]
        pid = _fork_promote(home.location, candidate.id, step)
        if step is None:
            time.sleep(rng.uniform(0, window))
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        problem, outcome = _check(
            home, first.id, candidate.id, {first.id: a, candidate.id: b}, workdir / f"check{trial}"
        )
        if problem:
            counts["problems"].append(f"trial {trial} ({step or 'random'}): {problem}")
            continue
        counts[outcome] += 1
        counts["steps"].setdefault(step or "random", []).append(outcome)
        if outcome == "new":
            home.rollback()
    return counts


def _check(home: ModelHome, old: str, new: str, sources: dict[str, Path], scratch: Path) -> tuple[str | None, str]:
    try:
        current = home.current()
        if current is None or current.id not in (old, new):
            return f"current is {current}", ""
        copy = home.fetch(scratch)  # every checksum verified
        if _files(copy) != _files(sources[current.id]):
            return f"version {current.id} differs from its source", ""
        history = home.history()
        if current.id == new and history[1].id != old:
            return f"the new current's previous is {history[1].id}, not {old}", ""
        if home.challenger() is None:
            return "the challenger was lost", ""
    except Exception as error:  # any failure to read the home is a corrupt outcome
        return f"{type(error).__name__}: {error}", ""
    return None, "new" if current.id == new else "old"
