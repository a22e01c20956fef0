"""accuracy(): the tensor fast path agrees with the DataLoader path on real data."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from retentive.data import subsample
from retentive.evaluation import accuracy, accuracy_row, chunk_classes
from retentive.models import MLP


class Plain(Dataset):
    def __init__(self, chunk):
        self.chunk = chunk

    def __len__(self):
        return len(self.chunk)

    def __getitem__(self, i):
        return self.chunk.inputs[i], int(self.chunk.targets[i])


def test_tensor_and_loader_paths_agree(mnist_test):
    torch.manual_seed(0)
    model = MLP()
    chunk = subsample(mnist_test, 700, seed=0)
    fast = accuracy(model, chunk, batch_size=256)
    slow = accuracy(model, Plain(chunk), batch_size=256)
    manual = float((model(chunk.inputs).argmax(-1) == chunk.targets).double().mean())
    assert fast == slow == manual
    assert model.training  # evaluation puts the mode back


def test_task_aware_row_masks_each_chunk_to_its_own_classes(split_small):
    _, test = split_small
    torch.manual_seed(1)
    model = MLP()
    aware = accuracy_row(model, test, task_aware=True)
    for j, chunk in enumerate(test):
        classes = chunk_classes(chunk)
        logits = model(chunk.inputs)
        masked = torch.full_like(logits, float("-inf"))
        masked[:, classes] = logits[:, classes]
        assert aware[j] == float((masked.argmax(-1) == chunk.targets).double().mean())
    assert bool((aware >= accuracy_row(model, test)).all())
