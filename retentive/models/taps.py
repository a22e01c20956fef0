"""Feature taps: capture named submodules' outputs with forward hooks.

Any ``nn.Module`` works; a component that needs hidden features names the layers (dotted names as
in ``model.named_modules()``), and the taps hold the latest output of each after a forward pass.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


class FeatureTaps:
    """Forward hooks on ``layers`` of ``model``; ``outputs[name]`` is that layer's latest output."""

    def __init__(self, model: nn.Module, layers: Iterable[str]) -> None:
        modules = dict(model.named_modules())
        self.layers = tuple(dict.fromkeys(layers))
        missing = [name for name in self.layers if name not in modules]
        if missing:
            available = [name for name in modules if name]
            raise ValueError(f"feature layers {missing} are not submodules of the model; it has {available}")
        self.outputs: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = [
            modules[name].register_forward_hook(self._hook(name)) for name in self.layers
        ]

    def _hook(self, name: str):  # noqa: ANN202 - a closure handed to torch
        def store(module: nn.Module, args: object, output: Tensor) -> None:
            if not isinstance(output, Tensor):
                raise TypeError(f"feature layer {name!r} returned {type(output).__name__}, expected a Tensor")
            self.outputs[name] = output

        return store

    def remove(self) -> None:
        """Detach the hooks (the learner does this when an update ends)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.outputs.clear()
