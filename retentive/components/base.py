"""The Component contract: one weighted loss term with its own state.

A component is an ``nn.Module`` so that everything it owns (counters, statistics, teacher models)
follows ``.to(device)`` with the learner and saves through ``state_dict`` without extra code.
State is declared once with :meth:`Component.add_state`, as in torchmetrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor, nn

from retentive.memory.buffer import MemoryBatch

if TYPE_CHECKING:
    from retentive.learner import Learner


@dataclass
class StepContext:
    """Everything one training step computed that a loss term may read.

    ``memory`` is ``None`` while the memory is empty; ``memory_outputs`` are the model's logits on
    ``memory.inputs``, from the same forward pass as ``outputs`` (one forward per step).
    """

    inputs: Tensor
    targets: Tensor
    task_ids: Tensor
    outputs: Tensor
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    model: nn.Module
    step: int
    features: dict[str, Tensor] = field(default_factory=dict)
    memory: MemoryBatch | None = None
    memory_outputs: Tensor | None = None
    memory_features: dict[str, Tensor] = field(default_factory=dict)
    #: the step's loss terms by name (``loss/new``, ``loss/<i>_<Component>``, ``loss/total``),
    #: filled in once they are computed
    losses: dict[str, Tensor] = field(default_factory=dict)


class Component(nn.Module):
    """A weighted loss term.

    Subclasses implement :meth:`loss` (return ``None`` when the term does not apply this step, e.g.
    while the memory is empty) and may override the hooks, named for when they run.

    Attributes:
        memory_keys: metadata this component needs stored with each memory sample, e.g.
            ``("logits",)`` or ``("features.layer3",)``.
    """

    memory_keys: tuple[str, ...] = ()

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        weight = float(weight)
        if weight < 0:
            raise ValueError(f"{type(self).__name__} weight must be >= 0, got {weight}")
        self.weight = weight

    def add_state(self, name: str, default: Tensor) -> None:
        """Declare a tensor of state: it moves with the module, saves, loads and resets with it."""
        self.register_buffer(name, default.clone(), persistent=True)

    def loss(self, ctx: StepContext) -> Tensor | None:
        """The weighted loss term for this step (weight already applied), or ``None``."""
        return None

    def on_update_start(self, learner: Learner) -> None:
        """Before the first step of an update (e.g. shrink-and-perturb acts here)."""

    def on_after_step(self, ctx: StepContext) -> None:
        """After the optimizer step (e.g. EMA teachers and path integrals update here)."""

    def on_update_end(self, learner: Learner) -> None:
        """After the last step of an update, before the state is saved."""

    def extra_repr(self) -> str:
        return f"weight={self.weight}"
