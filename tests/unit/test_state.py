"""The state folder: round trips, verification, refusal of anything unsafe or malformed."""

from __future__ import annotations

import json

import pytest
import torch

from retentive.errors import StateError
from retentive.state import FORMAT_VERSION, State, check_output_folder, load_state, read_manifest, save_state


def _state() -> State:
    return State(
        model={"w": torch.arange(6.0).reshape(2, 3)},
        learner={"learner": {"total_steps": 7, "components": []}, "updater": {"updates_done": 1}},
        memory={"size": 2, "storage": {"inputs": torch.ones(2, 3)}, "generator": torch.Generator().get_state()},
        manifest={"updater": "X", "tasks_seen": {"0": 5}},
    )


def test_round_trip_and_manifest(tmp_path):
    folder = save_state(tmp_path / "s", _state())
    assert sorted(p.name for p in folder.iterdir()) == ["learner.pt", "manifest.json", "memory.pt", "model.pt"]
    loaded = load_state(folder)
    assert torch.equal(loaded.model["w"], _state().model["w"])
    assert loaded.learner["learner"]["total_steps"] == 7
    assert loaded.manifest["format_version"] == FORMAT_VERSION and loaded.manifest["tasks_seen"] == {"0": 5}
    assert set(loaded.manifest["files"]) == {"model.pt", "learner.pt", "memory.pt"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".retentive-staging-")]


def test_never_overwrites(tmp_path):
    save_state(tmp_path / "s", _state())
    with pytest.raises(StateError, match="already exists"):
        save_state(tmp_path / "s", _state())
    with pytest.raises(StateError, match="is the input_state_folder"):
        check_output_folder(tmp_path / "s", tmp_path / "s")


def test_tampered_file_is_refused_naming_it(tmp_path):
    folder = save_state(tmp_path / "s", _state())
    data = bytearray((folder / "memory.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "memory.pt").write_bytes(bytes(data))
    with pytest.raises(StateError, match="memory.pt.*checksum"):
        load_state(folder)


def test_missing_and_foreign_folders(tmp_path):
    with pytest.raises(StateError, match="does not exist"):
        load_state(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StateError, match="manifest.json is missing"):
        load_state(tmp_path / "plain")
    (tmp_path / "plain" / "manifest.json").write_text("{not json")
    with pytest.raises(StateError, match="not valid JSON"):
        load_state(tmp_path / "plain")


def test_newer_format_asks_for_an_upgrade(tmp_path):
    folder = save_state(tmp_path / "s", _state())
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StateError, match="upgrade retentive"):
        read_manifest(folder)


def test_pickled_code_never_runs(tmp_path):
    """A payload that would run code on unpickling, with a checksum that matches: refused, not run."""
    import hashlib

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    folder = save_state(tmp_path / "s", _state())
    torch.save({"w": Exploit()}, folder / "model.pt")
    manifest = json.loads((folder / "manifest.json").read_text())
    data = (folder / "model.pt").read_bytes()
    manifest["files"]["model.pt"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StateError, match="could not be read safely"):
        load_state(folder)
    assert not marker.exists()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("retentive.state.format._write_payload", boom)
    with pytest.raises(StateError, match="No space left on device.*nothing was written"):
        save_state(tmp_path / "s", _state())
    assert list(tmp_path.iterdir()) == []
