"""The regularisation, distillation and projection updaters under a real 2-process DDP run (gloo):
both ranks end every update with bit-identical models, component state and memories (A-GEM's
reference gradient is all-reduced; GEM, EWC's Fisher, iCaRL's herding and class means are
computed alike on every rank)."""

from __future__ import annotations

import pytest
import torch
from helpers import run_support_script
from methods_ddp_worker import METHODS
from test_ddp_update import _assert_equal, _dumps

pytestmark = [pytest.mark.slow, pytest.mark.ddp]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("methods_ddp")
    run_support_script("methods_ddp_worker.py", "--out", str(out), cwd=out, timeout=600)
    return out


@pytest.mark.parametrize("name", [f"{m}{i}" for m in METHODS for i in range(2)])
def test_both_ranks_hold_identical_models_components_and_memories(run, name):
    rank0, rank1 = _dumps(run, name)
    assert rank0["world_size"] == rank1["world_size"] == 2
    for part in ("model", "learner", "memory"):
        _assert_equal(rank0[part], rank1[part], f"{name}.{part}")
    assert (run / name / "manifest.json").exists()


def test_the_second_update_used_the_first_ones_state(run):
    ewc = _dumps(run, "ewc_er1")[0]["learner"]["components"][1]
    assert bool(ewc["consolidated"]) and any(
        k.startswith("fisher__") and bool(v.abs().sum() > 0) for k, v in ewc.items()
    )
    icarl = _dumps(run, "icarl1")[0]
    assert icarl["learner"]["components"][0]["has_mean"].sum() == 4
    assert torch.bincount(icarl["memory"]["storage"]["targets"]).tolist() == [25, 25, 25, 25]
    agem = _dumps(run, "agem1")[0]["memory"]["storage"]["task_ids"]
    assert torch.bincount(agem).tolist() == [50, 50]
