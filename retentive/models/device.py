"""Opt-in speed settings of a model for the training device: ``channels_last`` and ``torch.compile``.

Both change how the model runs, never what it computes or how it saves: the state dict keeps its
keys (the model is compiled in place, :meth:`torch.nn.Module.compile`, not wrapped in an
``OptimizedModule`` whose keys carry an ``_orig_mod.`` prefix), so a state folder written by a
prepared model loads into a plain one and back. Forward hooks still fire, so the feature taps
(iCaRL, selection, shift detection, POD) work on a compiled model.

Neither is on by default, because neither has been measured on a GPU yet, where they are meant
to pay (a ResNet's convolutions on tensor cores in channels-last under bf16 autocast; compilation
fusing the batch-norm and activation kernels). What was measured, on this project's CPU, is in
docs/how-to/ddp-and-gpus.md.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def prepare_model(model: nn.Module, channels_last: bool = False, compile: bool | dict[str, Any] = False) -> nn.Module:
    """``model`` itself, its parameters in ``channels_last`` layout and/or compiled in place.

    Args:
        model: the model, before an updater is built on it.
        channels_last: store 4-d parameters (convolution kernels) channels-last; the convolutions
            then produce channels-last activations from ordinary NCHW inputs.
        compile: ``True`` compiles the forward with ``torch.compile``'s defaults; a dict passes
            its options (``{"mode": "reduce-overhead"}`` adds CUDA-graph capture on a GPU,
            ``{"backend": "eager"}`` only traces, for tests).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"prepare_model takes an nn.Module, got {type(model).__name__}")
    if not isinstance(compile, (bool, dict)):
        raise TypeError(f"compile must be a bool or a dict of torch.compile options, got {type(compile).__name__}")
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # nn.Module.to takes it at run time
    if compile is not False:
        model.compile(**({} if compile is True else compile))
    return model
