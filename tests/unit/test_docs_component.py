"""The "Writing a component" guide's component (docs/how-to/writing-a-component.md) runs as written,
added to a replay updater, and saves its state."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from third_party import QUIET, chunks

import retentive as R
from retentive.models import MLP

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "writing-a-component.md"


def _example() -> str:
    text = GUIDE.read_text()
    return text[text.index("```python") + len("```python") : text.index("```\n", text.index("```python") + 9)]


def test_the_guide_component_trains_and_saves_its_state(tmp_path):
    namespace: dict = {}
    exec(compile(_example(), str(GUIDE), "exec"), namespace)
    component = namespace["GradientNormPenalty"](0.1)
    torch.manual_seed(0)
    updater = R.ExperienceReplayModelUpdater(
        MLP(hidden=(16,)),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        memory_size=30,
        batch_size=16,
        components=[component],
        output_state_folder=tmp_path / "s0",
        **QUIET,
    )
    updater.update(chunks()[0])
    assert int(component.steps) == updater.learner.total_steps > 0
    squares = component.parameter_state("grad_sq", updater.model)
    assert all(v.sum() > 0 for v in squares.values())
    saved = R.state.load_state(tmp_path / "s0").learner["learner"]["components"][1]
    assert torch.equal(saved["steps"], component.steps)
