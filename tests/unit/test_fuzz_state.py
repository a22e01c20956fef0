"""Property-based fuzzing of the state loader: truncated, flipped, swapped and deleted files, with and
without a manifest that vouches for the damage. Whatever the damage, loading ends in the library's
own StateError with a message, or in a state that loads (when the damage is in tensor values and
the manifest was rewritten to match): never another exception, never a hang."""

from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from state_helpers import der, rehash

from retentive import StateError, load_model
from retentive.models import MLP
from retentive.state import load_state
from retentive.state.inspection import inspect_state

PAYLOADS = ["model.pt", "learner.pt", "memory.pt"]
FILES = ["manifest.json", *PAYLOADS]

# Where in a file: anywhere, or near either end, where a torch zip keeps data.pkl and its directory.
_where = st.one_of(
    st.floats(0.0, 1.0, exclude_max=True),
    st.integers(0, 2047).map(lambda i: -(i + 1)),
    st.integers(0, 2047),
)


def _mutations(names, swap_with) -> st.SearchStrategy:
    return st.one_of(
        st.tuples(st.just("truncate"), st.sampled_from(names), _where),
        st.tuples(st.just("flip"), st.sampled_from(names), _where, st.integers(1, 255)),
        st.tuples(st.just("swap"), st.sampled_from(names), st.sampled_from(swap_with)).filter(lambda m: m[1] != m[2]),
        st.tuples(st.just("delete"), st.sampled_from(names)),
        st.tuples(st.just("append"), st.sampled_from(names), st.binary(min_size=1, max_size=64)),
    )


# Mostly payload damage (which reaches torch.load and the restore when the manifest vouches for
# it); the manifest itself is damaged in about one example in five.
_payload_damage = st.lists(_mutations(PAYLOADS, PAYLOADS), min_size=0, max_size=3)
_manifest_damage = st.one_of(
    st.just([]),
    st.just([]),
    st.just([]),
    st.just([]),
    st.lists(_mutations(["manifest.json"], PAYLOADS), min_size=1, max_size=1),
)


def _offset(where, size: int) -> int:
    if size == 0:
        return 0
    if isinstance(where, float):
        return min(int(where * size), size - 1)
    return where % size


def _apply(folder: Path, mutation) -> None:
    kind, name = mutation[0], mutation[1]
    path = folder / name
    if not path.exists() and kind != "swap":
        return
    if kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: _offset(mutation[2], len(data))])
    elif kind == "flip":
        data = bytearray(path.read_bytes())
        if data:
            data[_offset(mutation[2], len(data))] ^= mutation[3]
            path.write_bytes(bytes(data))
    elif kind == "swap":
        other = folder / mutation[2]
        if path.exists() and other.exists():
            a, b = path.read_bytes(), other.read_bytes()
            path.write_bytes(b)
            other.write_bytes(a)
    elif kind == "delete":
        path.unlink()
    elif kind == "append":
        path.write_bytes(path.read_bytes() + mutation[2])


def _digest(folder: Path, names) -> dict[str, str | None]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() if (folder / n).exists() else None for n in names}


@pytest.fixture(scope="module")
def pristine(split_small, tmp_path_factory):
    train, _ = split_small
    folder = tmp_path_factory.mktemp("fuzz") / "s0"
    der(folder).update(train[0].subset(torch.arange(64)), task_id=0)
    return folder


@settings(
    max_examples=150, deadline=5000, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload_damage=_payload_damage, vouch=st.booleans(), manifest_damage=_manifest_damage)
@pytest.mark.slow
def test_damaged_state_folders_fail_with_a_state_error_only(pristine, payload_damage, vouch, manifest_damage):
    faulthandler.dump_traceback_later(60, exit=True)  # a hang fails the run loudly instead of stalling it
    workdir = Path(tempfile.mkdtemp(prefix="retentive-fuzz-"))
    try:
        folder = workdir / "s0"
        shutil.copytree(pristine, folder)
        for mutation in payload_damage:
            _apply(folder, mutation)
        if vouch and (folder / "manifest.json").exists():
            # an attacker with write access: the checksums match the damage (unless the manifest itself
            # was swapped away or deleted: nothing to vouch with)
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
                rehash(folder)
        for mutation in manifest_damage:
            _apply(folder, mutation)
        damaged_payloads = _digest(folder, PAYLOADS) != _digest(pristine, PAYLOADS)
        manifest_intact = _digest(folder, ["manifest.json"]) == _digest(pristine, ["manifest.json"])

        try:
            load_state(folder)
            loaded = True
        except StateError as error:
            assert str(error), "a StateError must say what is wrong"
            loaded = False
        if damaged_payloads and manifest_intact:
            assert not loaded, "a payload changed behind an intact manifest must fail its checksum"
        for attempt in (lambda: der(None, folder), lambda: load_model(MLP(), folder)):
            try:
                attempt()
            except StateError as error:
                assert str(error)
        report = inspect_state(folder)  # never raises
        assert report.verified == loaded
        assert report.verified or report.error
    finally:
        faulthandler.cancel_dump_traceback_later()
        shutil.rmtree(workdir, ignore_errors=True)
