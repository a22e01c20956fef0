"""The four prompt-era updaters as the end-to-end tests build them (shared with their worker process)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import nn

import retentive

#: a tiny ViT for 28x28 MNIST: 16 patches of 7x7, 2 layers, 4 heads, width 32
ARCH = dict(
    image_size=28,
    patch_size=7,
    num_channels=1,
    hidden_dim=32,
    num_layers=2,
    num_heads=4,
    mlp_dim=64,
    dropout=0.0,
    attention_dropout=0.0,
)
FIRST, SECOND = 320, 160  # training samples of the two chunks (10 and 5 steps of 32)
#: updater -> (model builder, its own arguments)
CASES = {
    # the [CLS] pooler: on a random backbone the prompt tokens' mean barely depends on the input
    "LearningToPromptModelUpdater": (partial(retentive.LearningToPromptTransformer, **ARCH, patch_pooler="cls"), {}),
    "LearningToPromptReplayModelUpdater": (
        partial(retentive.LearningToPromptTransformer, **ARCH, patch_pooler="cls"),
        dict(memory_size=40),
    ),
    "SPeftModelUpdater": (partial(retentive.SPromptTransformer, **ARCH, clusters_per_task=3), {}),
    "RepeatedDistillationModelUpdater": (partial(retentive.VisionTransformer, **ARCH), dict(memory_size=40)),
}


def build(name: str, input_state: Path | None, output_state: Path) -> retentive.ModelUpdater:
    model_fn, arguments = CASES[name]
    torch.manual_seed(0)  # the same random backbone in every process
    return getattr(retentive, name)(
        model_fn(),
        nn.CrossEntropyLoss(reduction="none"),
        partial(torch.optim.Adam, lr=3e-3),
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        input_state_folder=input_state,
        output_state_folder=output_state,
        **arguments,
    )


def second_update(root: Path) -> None:
    """The worker's part: the second chunk from the first's state folder, then a fresh model
    restored from the result (what the parent compares bit for bit)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (conftest)
    from conftest import small_split

    from retentive.data import load_mnist

    torch.set_num_threads(1)
    chunks = small_split(load_mnist("train"), SECOND)
    for name, (model_fn, _) in CASES.items():
        build(name, root / name / "s0", root / name / "s1").update(chunks[1], task_id="second_task")
        restored = retentive.load_model(model_fn(), root / name / "s1")
        torch.save(restored.state_dict(), root / name / "restored.pt")


if __name__ == "__main__":
    import sys

    second_update(Path(sys.argv[1]))
