"""Running a model in eval mode for a pass that must not change it, then restoring its mode.

Update-end passes, evaluation, probes and selection all need the same guard: dropout off and
batch-norm statistics frozen for the pass, and the caller's mode back afterwards even on error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn


@contextmanager
def evaluating(model: nn.Module, no_grad: bool = True) -> Iterator[nn.Module]:
    """``model`` in eval mode (and without autograd unless ``no_grad=False``) for the block."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad() if no_grad else nullcontext():
            yield model
    finally:
        model.train(was_training)
