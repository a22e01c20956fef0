"""Feature taps: capture named submodules' outputs with forward hooks.

Any ``nn.Module`` works; a component that needs hidden features names the layers (dotted names as
in ``model.named_modules()``), and the taps hold the latest output of each after a forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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

    def _hook(self, name: str) -> Callable[[nn.Module, object, Tensor], None]:
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


class FeatureTap:
    """The feature vector of each forward pass, by the one rule of :func:`~retentive.models.protocol.feature_layer`.

    The output of ``layer`` (or of the layer the model declares), else the input of the last
    ``nn.Linear`` the forward pass calls. Without an explicit ``layer`` every ``nn.Linear`` is
    watched too, so :attr:`head` names the last one called (the layer that reads the features).
    Use as a context manager, or call :meth:`remove`.
    """

    def __init__(self, model: nn.Module, layer: str | None = None) -> None:
        from retentive.models.protocol import feature_layer, linear_layers

        self.model = model
        self.layer = feature_layer(model, layer)
        linear = {} if layer is not None else linear_layers(model)
        if self.layer is None and not linear:
            raise ValueError(
                f"{type(model).__name__} has no nn.Linear layer, so it has no default feature layer; name one "
                f"(one of {[name for name, _ in model.named_modules() if name][:10]}) or declare model.feature_layer"
            )
        self.head: str | None = None
        self._declared: Tensor | None = None
        self._head_input: Tensor | None = None
        self._handles: list[RemovableHandle] = [model.register_forward_pre_hook(self._start)]
        self._handles += [module.register_forward_pre_hook(self._linear(name)) for name, module in linear.items()]
        if self.layer is not None:
            module = dict(model.named_modules())[self.layer]
            self._handles.append(module.register_forward_hook(self._output))

    def _start(self, module: nn.Module, args: object) -> None:
        self.head, self._declared, self._head_input = None, None, None

    def _linear(self, name: str) -> Callable[[nn.Module, tuple[object, ...]], None]:
        def store(module: nn.Module, args: tuple[object, ...]) -> None:
            self.head = name
            self._head_input = args[0] if args and isinstance(args[0], Tensor) else None

        return store

    def _output(self, module: nn.Module, args: object, output: object) -> None:
        if not isinstance(output, Tensor):
            raise TypeError(f"feature layer {self.layer!r} returned {type(output).__name__}, expected a Tensor")
        self._declared = output

    def value(self) -> Tensor:
        """The latest forward pass's features, as captured (not flattened)."""
        value = self._head_input if self.layer is None else self._declared
        if value is None:
            what = (
                f"the feature layer {self.layer!r} did not run"
                if self.layer is not None
                else "no nn.Linear ran on a tensor"
            )
            raise RuntimeError(f"{what} in the latest forward pass of {type(self.model).__name__}")
        return value

    def features(self, rows: int | None = None) -> Tensor:
        """``(N, D)`` float32 features of the latest forward pass; ``rows`` checks ``N``.

        A task-routed model whose heads each see only their task's samples gives the last head's
        samples only; such a model declares its ``feature_layer`` (as ``MultiHeadClassifier`` does).
        """
        value = self.value()
        if rows is not None and int(value.shape[0]) != rows:
            raise ValueError(
                f"the features of {type(self.model).__name__} have {int(value.shape[0])} rows for {rows} samples "
                f"(the head {self.head!r} saw only some of them); declare model.feature_layer, the layer whose output "
                "holds every sample's features"
            )
        return value.reshape(value.shape[0], -1).float()

    def remove(self) -> None:
        """Detach the hooks and drop the captured tensors."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._declared, self._head_input = None, None

    def __enter__(self) -> FeatureTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
