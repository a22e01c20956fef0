"""A streamed chunk under 2-process DDP (gloo, CPU): each sample trained on once per epoch across
the ranks, the ranks' steps evened by one repeated sample, and the replicas identical."""

from __future__ import annotations

import pytest
import torch
from helpers import run_support_script

pytestmark = [pytest.mark.slow, pytest.mark.ddp]


def test_a_stream_is_sharded_by_rank_and_the_replicas_agree(tmp_path, mnist_available):
    run_support_script("stream_ddp_worker.py", "--out", str(tmp_path), cwd=tmp_path, timeout=300)
    ranks = [torch.load(tmp_path / f"stream.rank{r}.pt", weights_only=True) for r in range(2)]
    from retentive.data import load_mnist

    chunk = load_mnist("test").subset(torch.arange(201))
    expected = sorted([*chunk.inputs.flatten(1).sum(1).tolist(), float(chunk.inputs[0].sum())])  # one repeat
    assert len(ranks[0]["sums"]) == len(ranks[1]["sums"]) == 101
    assert sorted(torch.cat([r["sums"] for r in ranks]).tolist()) == pytest.approx(expected)
    for key, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][key]), key
    for key, value in ranks[0]["memory"].items():
        if torch.is_tensor(value):
            assert torch.equal(value, ranks[1]["memory"][key]), key
    assert ranks[0]["tasks_seen"] == ranks[1]["tasks_seen"] == {"0": 202}  # counted as trained, the repeat too
