"""Sample identity under 2-process DDP: a DDP-written memory's ids are those of its chunk's rows;
after a deletion, a DDP update from the new state keeps identical replicas without the samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import run_support_script

from retentive.governance import delete_samples, list_memory
from retentive.memory.identity import derive_ids

pytestmark = [pytest.mark.slow, pytest.mark.ddp]


def _ddp_update(out: Path, output: str, chunk: int, source: str | None = None) -> list[dict]:
    source_args = ["--input", str(out / source)] if source else []
    run_support_script(
        "memory_ddp_worker.py", "--output", str(out / output), "--chunk", str(chunk), *source_args, cwd=out, timeout=300
    )
    return [torch.load(out / f"{output}.rank{r}.pt", weights_only=True) for r in range(2)]


def _same(a: dict, b: dict) -> bool:
    return a["sources"] == b["sources"] and all(torch.equal(a["storage"][k], b["storage"][k]) for k in a["storage"])


def test_ddp_ids_then_deletion_then_a_ddp_update_with_identical_replicas(tmp_path):
    first = _ddp_update(tmp_path, "s0", 0)
    assert _same(*first)
    rows = list_memory(str(tmp_path / "s0"))
    ids = [r["sample_id"] for r in rows]
    assert len(set(ids)) == len(ids) > 0  # both ranks' samples, no id twice
    assert ids == [int(derive_ids(r["source"], torch.tensor([r["row"]]))[0]) for r in rows]
    assert len({r["row"] for r in rows}) == len(rows)  # rows of the one chunk, whichever rank read them
    doomed = ids[:7]
    delete_samples(tmp_path / "s0", ids=doomed, output=tmp_path / "deleted")
    second = _ddp_update(tmp_path, "s1", 1, source="deleted")
    assert _same(*second)
    kept = {r["sample_id"] for r in list_memory(str(tmp_path / "s1"))}
    assert not kept & set(doomed) and {0, 1} == {r["stored_in_update"] for r in list_memory(str(tmp_path / "s1"))}
