"""State-folder size for a 500-sample MNIST memory, when the dataset yields views of one big tensor.

Renate 0.5.2 wrote 7.4 GB here: each stored sample pickled the whole storage its view pointed
into. retentive saves only the memory's own filled rows. The bound checked: folder bytes <=
model bytes + memory tensor bytes + 64 KiB.

    python benchmarks/state_size.py
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import torch
from quiet_cpu import QUIET_CPU
from torch.utils.data import Dataset

from retentive import DarkExperienceReplayModelUpdater
from retentive.data import load_mnist
from retentive.models import MLP


class MNISTViews(Dataset):
    """Every sample is a view into the one 188 MB tensor of all training images."""

    def __init__(self) -> None:
        data = load_mnist("train")
        self.images, self.labels = data.inputs, data.targets

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


def main() -> None:
    torch.set_num_threads(1)
    dataset = MNISTViews()
    model = MLP()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "state"
        updater = DarkExperienceReplayModelUpdater(
            model,
            torch.nn.CrossEntropyLoss(),
            partial(torch.optim.SGD, lr=0.03),
            memory_size=500,
            batch_size=64,
            output_state_folder=folder,
            **QUIET_CPU,
            max_epochs=1,
        )
        updater.update(dataset)
        files = {p.name: p.stat().st_size for p in sorted(folder.iterdir())}
    model_bytes = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    memory_bytes = updater.memory.nbytes()
    total = sum(files.values())
    bound = model_bytes + memory_bytes + 64 * 1024
    print("files: " + ", ".join(f"{name} {size:,} B" for name, size in files.items()))
    print(
        f"total {total:,} B; model {model_bytes:,} B + memory tensors {memory_bytes:,} B + 64 KiB = {bound:,} B; "
        f"overhead {total - model_bytes - memory_bytes:,} B; within bound: {total <= bound}"
    )


if __name__ == "__main__":
    main()
