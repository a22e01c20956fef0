"""Reference models."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class MLP(nn.Module):
    """A ReLU MLP on flattened inputs; ``MLP()`` is the DER paper's MNIST net, 784-100-100-10.

    ``feature_layers`` names the hidden ReLU outputs (``features.2``, ``features.4``, ...) for the
    components that distil hidden features (POD); ``feature_layer``, the last of them, is the
    feature vector (iCaRL, selection, shift): the very tensor the classifier reads.

    ``init="xavier"`` initialises every linear layer as Mammoth's MNIST MLP does (Xavier-uniform
    weights, zero biases), for benchmarks that follow the DER paper's protocol; ``"torch"`` keeps
    PyTorch's default.
    """

    def __init__(
        self, in_features: int = 784, hidden: Sequence[int] = (100, 100), num_classes: int = 10, init: str = "torch"
    ) -> None:
        super().__init__()
        if init not in ("torch", "xavier"):
            raise ValueError(f"init must be 'torch' or 'xavier', got {init!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        if init == "xavier":
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)
        self.feature_layers: tuple[str, ...] = tuple(f"features.{2 * (i + 1)}" for i in range(len(hidden)))
        self.feature_layer: str | None = self.feature_layers[-1] if self.feature_layers else None

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
