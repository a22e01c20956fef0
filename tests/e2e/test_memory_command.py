"""``retentive memory`` on real MNIST states: listing, deleting by id / source / predicate as a new
version (model home and state folder), the deleted samples absent from memory.pt's bytes, an
update (interrupted and resumed) from a state after a deletion, and exporting for a person."""

from __future__ import annotations

import csv
import json
from functools import partial

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from state_helpers import der, memory_bytes_hold, same_snapshot

from retentive.cli import main
from retentive.errors import SampleNotFoundError
from retentive.governance import delete_samples, export_memory, list_memory
from retentive.memory.identity import derive_ids
from retentive.state import load_state
from retentive.state.home import ModelHome

pytestmark = pytest.mark.slow


class Interrupt(Exception):
    """Stands in for a crash."""


class CrashAfterEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0:
            raise Interrupt("crash after epoch 0")


@pytest.fixture(scope="module")
def states(split_small, tmp_path_factory):
    """A model home whose current version is two DER updates (chunks 0 and 1) with a memory of 40."""
    train, _ = split_small
    chunk0, chunk1 = train[0].subset(torch.arange(96)), train[1].subset(torch.arange(96))
    root = tmp_path_factory.mktemp("memory")
    der(root / "s0", memory_size=40).update(chunk0, task_id=0)
    der(root / "s1", root / "s0", memory_size=40).update(chunk1, task_id=1)
    home = ModelHome(root / "home").create()
    home.promote(home.write_candidate(root / "s1"), expect=None)
    return root, home, (chunk0, chunk1)


def test_list_names_each_sample_its_chunk_row_and_update(states, capsys):
    root, home, _ = states
    rows = list_memory(str(root / "s1"))
    assert len(rows) == 40 and len({r["sample_id"] for r in rows}) == 40
    lineage = [load_state(root / s).manifest["lineage"]["data"]["sha256"] for s in ("s0", "s1")]
    for r in rows:  # every id is the one derived from its chunk's fingerprint and its row there
        assert r["source"] == lineage[r["stored_in_update"]]
        assert r["sample_id"] == int(derive_ids(r["source"], torch.tensor([r["row"]]))[0])
    assert {r["stored_in_update"] for r in rows} == {0, 1}
    assert main(["memory", "list", home.location, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["samples"]
    assert [r["sample_id"] for r in listed] == [r["sample_id"] for r in rows]


def test_delete_by_ids_in_a_home_is_a_new_version_and_gone_from_the_bytes(states, capsys):
    root, home, _ = states
    before = home.current()
    rows = list_memory(home.location)
    doomed = [rows[0]["sample_id"], rows[5]["sample_id"]]
    assert all(memory_bytes_hold(root / "s1", doomed))
    assert main(["memory", "delete", home.location, "--ids", f"{doomed[0]},{doomed[1]}"]) == 0
    assert "may still reflect" in capsys.readouterr().out
    after = home.current()
    assert after.id != before.id and before.id in [v.id for v in home.history()]
    folder = home.fetch(root / "fetched", after.id)
    assert not any(memory_bytes_hold(folder, doomed))
    remaining = list_memory(home.location)
    assert [r["sample_id"] for r in remaining] == [r["sample_id"] for r in rows if r["sample_id"] not in doomed]
    record = load_state(folder).manifest["memory_deletions"][-1]
    assert record["removed_ids"] == sorted(doomed) and record["rows_removed"] == 2
    # an id no longer held: one clear error, nothing committed
    assert main(["memory", "delete", home.location, "--ids", str(doomed[0])]) == 1
    assert str(doomed[0]) in capsys.readouterr().err and home.current().id == after.id
    assert main(["memory", "delete", home.location, "--ids", "-3"]) == 1
    with pytest.raises(SystemExit) as usage:  # two selectors: bad usage
        main(["memory", "delete", home.location, "--ids", "12", "--where", "label=1"])
    assert usage.value.code == 2
    assert home.current().id == after.id
    capsys.readouterr()


def test_delete_by_source_and_by_predicate_into_new_folders(states, tmp_path):
    root, _, _ = states
    rows = list_memory(str(root / "s1"))
    first_chunk = rows[[r["stored_in_update"] for r in rows].index(0)]["source"]
    done = delete_samples(root / "s1", source=first_chunk[:12], output=tmp_path / "no0")
    from0 = [r["sample_id"] for r in rows if r["source"] == first_chunk]
    assert sorted(done.removed_ids) == sorted(from0) and not any(memory_bytes_hold(tmp_path / "no0", from0))
    assert {r["stored_in_update"] for r in list_memory(str(tmp_path / "no0"))} == {1}
    done = delete_samples(root / "s1", where=["label=3"], output=tmp_path / "no3")
    assert done.rows_removed == sum(r["label"] == 3 for r in rows) > 0
    assert {r["label"] for r in list_memory(str(tmp_path / "no3"))} == {r["label"] for r in rows} - {3}
    with pytest.raises(SampleNotFoundError, match="label=7"):
        delete_samples(root / "s1", where=["label=7"], output=tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_in_place_then_an_interrupted_update_resumes_and_matches(states, split_small, tmp_path):
    root, _, (chunk0, _) = states
    train, _ = split_small
    chunk2 = train[2].subset(torch.arange(96))
    folder = tmp_path / "s"
    der(folder, memory_size=40).update(chunk0, task_id=0)
    doomed = [r["sample_id"] for r in list_memory(str(folder))[:3]]
    assert main(["memory", "delete", str(folder), "--ids", *map(str, doomed)]) == 0
    assert not any(memory_bytes_hold(folder, doomed)) and len(list_memory(str(folder))) == 37
    settings = dict(memory_size=40, max_epochs=2, optimizer=partial(torch.optim.SGD, lr=0.03, momentum=0.9))
    der(tmp_path / "clean", folder, **settings).update(chunk2, task_id=2)
    with pytest.raises(Interrupt):
        der(tmp_path / "resumed", folder, resume=True, callbacks=[CrashAfterEpoch()], **settings).update(
            chunk2, task_id=2
        )
    der(tmp_path / "resumed", folder, resume=True, **settings).update(chunk2, task_id=2)
    a, b = load_state(tmp_path / "clean"), load_state(tmp_path / "resumed")
    assert same_snapshot({"mem": a.memory, "m": a.model}, {"mem": b.memory, "m": b.model})
    kept = list_memory(str(tmp_path / "resumed"))
    assert len(kept) == 40 and not set(doomed) & {r["sample_id"] for r in kept}


def test_export_writes_an_index_arrays_and_images(states, tmp_path, capsys):
    root, home, _ = states
    assert main(["memory", "export", home.location, str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "index.csv").read_text().splitlines()))
    arrays = np.load(tmp_path / "out" / "samples.npz")
    assert len(rows) == len(arrays["sample_ids"]) == len(list_memory(home.location))
    assert [int(r["sample_id"]) for r in rows] == arrays["sample_ids"].tolist()
    assert arrays["inputs"].shape[1:] == (1, 28, 28) and (tmp_path / "out" / rows[0]["image"]).is_file()
    with pytest.raises(FileExistsError):
        export_memory(home.location, tmp_path / "out")
    capsys.readouterr()


def test_import_renate_gives_the_same_ids_on_every_import(tmp_path):
    from test_renate_import import renate_folder

    from retentive.state.renate import import_renate

    source, *_ = renate_folder(tmp_path)
    import_renate(source, tmp_path / "a")
    import_renate(source, tmp_path / "b")
    a, b = list_memory(str(tmp_path / "a")), list_memory(str(tmp_path / "b"))
    assert a == b and [r["row"] for r in a] == list(range(30)) and len({r["sample_id"] for r in a}) == 30
    assert a[0]["source"].startswith("renate-") and {r["stored_in_update"] for r in a} == {-1}
