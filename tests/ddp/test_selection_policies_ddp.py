"""Every selection policy under a real 2-process DDP update: the replicas stay bit-identical."""

from __future__ import annotations

import pytest
import torch
from helpers import run_support_script
from selection_ddp_worker import MEMORY, POLICIES

pytestmark = [pytest.mark.slow, pytest.mark.ddp]


def _equal(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def test_replicas_identical_under_two_process_ddp(tmp_path):
    run_support_script("selection_ddp_worker.py", "--out", str(tmp_path), cwd=tmp_path, timeout=600)
    for policy in POLICIES:
        for update in (0, 1):
            ranks = [torch.load(tmp_path / f"{policy}_{update}.rank{r}.pt", weights_only=True) for r in (0, 1)]
            assert ranks[0]["size"] == MEMORY, policy
            assert _equal(ranks[0], ranks[1]), f"{policy} update {update}: the replicas differ"
            saved = torch.load(tmp_path / f"{policy}_{update}" / "memory.pt", weights_only=True)
            assert _equal(saved, ranks[0]), policy
            # the whole chunk was seen by every replica's policy (not one rank's shard)
            assert ranks[0]["seen"] == 301 * (update + 1)
            if policy in ("class_balanced_reservoir", "ring_buffer", "herding", "forgetting"):
                counts = torch.bincount(ranks[0]["storage"]["targets"])
                assert int(counts[counts > 0].max() - counts[counts > 0].min()) <= 1, (policy, counts)
