"""A disk-backed memory under a real 2-process DDP update: every rank writes the same rows into its
own scratch files, so the replicas stay bit-identical, the state loads in one process with the
default backend, and that process keeps what the two ranks kept."""

from __future__ import annotations

import pytest
import torch
from ddp_worker import chunks, make_updater
from helpers import run_support_script
from state_helpers import same_snapshot

from retentive.state import load_state

pytestmark = [pytest.mark.slow, pytest.mark.ddp]


def test_disk_backed_replicas_are_identical_and_their_state_loads_in_one_process(tmp_path):
    run_support_script("disk_ddp_worker.py", "--out", str(tmp_path), cwd=tmp_path, timeout=600)
    for name in ("disk0", "disk1"):
        ranks = [torch.load(tmp_path / f"{name}.rank{r}.pt", weights_only=True) for r in (0, 1)]
        assert ranks[0]["world_size"] == 2 and len(ranks[0]["memory"]["storage"]["inputs"]) == 500
        assert same_snapshot(ranks[0]["memory"], ranks[1]["memory"]), f"{name}: the memory replicas differ"
        assert same_snapshot(ranks[0]["model"], ranks[1]["model"]), f"{name}: the models differ"
        assert same_snapshot(load_state(tmp_path / name).memory, ranks[0]["memory"]), name
    assert list((tmp_path / "scratch").iterdir()) == []
    single = make_updater(tmp_path / "disk1", tmp_path / "next", devices=1)  # the default backend
    assert same_snapshot(single.memory.state_dict(), load_state(tmp_path / "disk1").memory)
    single.update(chunks()[2], task_id=2)
    assert load_state(tmp_path / "next").manifest["world_size"] == 1
