"""The experience-replay family: ER and DER/DER++ (Renate's names and defaults)."""

from __future__ import annotations

from typing import Any

from retentive.components.replay import LogitMSE, MemoryCrossEntropy
from retentive.updaters.base import ModelUpdater


class ExperienceReplayModelUpdater(ModelUpdater):
    """ER: the task loss on new data plus ``alpha`` times the task loss on replayed memory.

    Args:
        alpha: weight of the memory cross-entropy [1].
        memory_size: replay memory capacity [500 in most benchmarks; required here].
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument.
    """

    def __init__(self, model: Any, loss_fn: Any, optimizer: Any, memory_size: int, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(
            model, loss_fn, optimizer, components=[MemoryCrossEntropy(alpha)], memory_size=memory_size, **kwargs
        )
        self.hyperparameters["alpha"] = alpha


class DarkExperienceReplayModelUpdater(ModelUpdater):
    """DER / DER++: match the logits stored with each memory sample (``alpha``), plus, for
    DER++ (``beta > 0``), the task loss on the same memory batch (``beta``).

    Args:
        alpha: weight of the logit MSE [1].
        beta: weight of the memory cross-entropy [1]; 0 gives DER.
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument.
    """

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        optimizer: Any,
        memory_size: int,
        alpha: float = 1.0,
        beta: float = 1.0,
        **kwargs: Any,
    ) -> None:
        components = [LogitMSE(alpha)] + ([MemoryCrossEntropy(beta)] if beta > 0 else [])
        super().__init__(model, loss_fn, optimizer, components=components, memory_size=memory_size, **kwargs)
        self.hyperparameters.update(alpha=alpha, beta=beta)
