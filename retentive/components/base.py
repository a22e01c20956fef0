"""The Component contract (v2): one loss term or one gradient/weight rule, with its own state.

A component is an ``nn.Module`` so that everything it owns (statistics, teacher models) follows
``.to(device)`` with the learner and saves through ``state_dict``. Its tensor state is declared
once with :meth:`Component.add_state`, as in torchmetrics, so reset, save/load, device moves, the
rollback snapshot and the data-parallel replica check all iterate one registry.

``loss(ctx)`` returns the *raw* term; the Learner multiplies it by ``weight`` and, when
``normalized`` is true, counts the weight in Renate's normaliser
``(w*L_new + sum_i w_i*L_i) / (w + sum_i w_i)``. A penalty that must not be divided by the weights
(EWC's quadratic term, SI's surrogate) sets ``normalized = False`` and is added after the division.

The hooks run in this order within one update (see the Learner's module docstring):
``on_update_start(UpdateContext)`` → per step: ``loss(StepContext)`` → backward →
``on_before_optimizer_step(StepContext)`` (gradients present; may modify them) → optimizer step →
memory insert → ``on_after_step(StepContext)`` → per epoch: ``on_train_epoch_end(UpdateContext)``
→ ``on_update_end(UpdateContext)`` (can iterate the chunk and the memory), before the state is
saved.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from retentive.memory.buffer import MemoryBatch

# the one update context, shared with the memory policies (re-exported here for components)
from retentive.memory.context import Batch, UpdateContext

__all__ = ["Batch", "Component", "StepContext", "UpdateContext", "reduce_task_loss"]

#: the separator of per-parameter state buffers: ``<state>__<parameter name with . as __>``
_PER_PARAMETER_SEP = "__"


def reduce_task_loss(values: Tensor, n: int, what: str = "loss_fn") -> tuple[Tensor, Tensor | None]:
    """A task loss as ``(mean, per-sample or None)``: ``loss_fn`` may be mean- or un-reduced.

    A per-sample loss must hold one value per sample (``reduction="none"``, Renate's form); it is
    reduced by its mean, which equals the mean-reduced loss.
    """
    if values.dim() == 0:
        return values, None
    if values.shape != (n,):
        raise ValueError(
            f"{what} must return a scalar or one value per sample (shape ({n},)), got shape {tuple(values.shape)}"
        )
    return values.mean(), values


def positive(name: str, value: float, why: str = "") -> float:
    """``value`` as a float if it is > 0, else a ValueError naming ``name`` (``why`` says what the
    bound protects) -- the one check of a positive hyperparameter (a temperature, a step size, a
    damping term)."""
    if not float(value) > 0:
        raise ValueError(f"{name} must be > 0{why}, got {value}")
    return float(value)


@dataclass
class StepContext:
    """Everything one training step computed that a loss term or a gradient rule may read.

    ``inputs`` are the new samples as the model saw them (after ``train_transform``);
    ``raw_inputs`` as the chunk gave them (what the memory stores). ``memory`` is ``None`` while
    the memory is empty; ``memory_outputs`` are the model's logits on the replayed (buffer-
    transformed) samples, from the same forward pass as ``outputs``.
    """

    inputs: Any
    targets: Tensor
    task_ids: Tensor
    outputs: Tensor
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    model: nn.Module
    step: int
    features: dict[str, Tensor] = field(default_factory=dict)
    memory: MemoryBatch | None = None
    memory_inputs: Any = None
    memory_outputs: Tensor | None = None
    memory_features: dict[str, Tensor] = field(default_factory=dict)
    raw_inputs: Any = None
    raw_targets: Tensor | None = None
    #: the new-data loss per sample when ``loss_fn`` is un-reduced, else ``None``
    new_loss_per_sample: Tensor | None = None
    #: the step's loss terms by name (``loss/new``, ``loss/<i>_<Component>``, ``loss/total``)
    losses: dict[str, Tensor] = field(default_factory=dict)
    #: component randomness (CPU): a torch generator for tensors, a Python RNG for coin flips
    generator: torch.Generator | None = None
    rng: random.Random | None = None
    rank: int = 0
    world_size: int = 1
    #: averages a tensor over the data-parallel ranks (the identity in one process)
    all_reduce_mean: Callable[[Tensor], Tensor] = staticmethod(lambda t: t)

    def task_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``loss_fn`` on other logits (e.g. the memory's), mean-reduced whatever its reduction."""
        return reduce_task_loss(self.loss_fn(logits, targets), int(targets.shape[0]))[0]

    def parameters(self) -> list[nn.Parameter]:
        """The trainable parameters, in the model's order (their ``.grad`` is set after backward)."""
        return [p for p in self.model.parameters() if p.requires_grad]


class Component(nn.Module):
    """A loss term or a gradient/weight rule of continual learning.

    Subclasses implement :meth:`loss` (return the raw term, or ``None`` when it does not apply this
    step, e.g. while the memory is empty) and/or override the hooks, named for when they run.

    Attributes:
        memory_keys: metadata this component needs stored with each memory sample, e.g.
            ``("logits",)`` or ``("features.layer3",)``; produced by :meth:`metadata`.
        normalized: whether ``weight`` counts in Renate's loss normaliser.
    """

    memory_keys: tuple[str, ...] = ()
    normalized: bool = True

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        weight = float(weight)
        if not weight >= 0:
            raise ValueError(f"{type(self).__name__} weight must be >= 0, got {weight}")
        self.weight = weight
        self._defaults: dict[str, Tensor] = {}
        # ordered (declaration order on every process): DDP's buffer broadcast pairs buffers by order
        self._per_parameter: dict[str, None] = {}

    # ---------------------------------------------------------------- declared state
    def add_state(self, name: str, default: Tensor | None = None, per_parameter: bool = False) -> None:
        """Declare state once: it moves, saves, loads, resets and is checked across replicas.

        ``per_parameter=True`` declares one tensor per trainable model parameter (a Fisher
        diagonal, a path integral), created as zeros like the parameters by
        :meth:`init_parameter_state` and read with :meth:`parameter_state`.
        """
        if per_parameter:
            if default is not None:
                raise ValueError("a per-parameter state starts as zeros like each parameter; pass no default")
            self._per_parameter[name] = None
            return
        if default is None or not torch.is_tensor(default):
            raise TypeError(f"state {name!r} needs a tensor default, got {type(default).__name__}")
        self._defaults[name] = default.detach().clone()
        self.register_buffer(name, default.detach().clone(), persistent=True)

    def _buffer_name(self, state: str, parameter: str) -> str:
        return f"{state}{_PER_PARAMETER_SEP}{parameter.replace('.', _PER_PARAMETER_SEP)}"

    def init_parameter_state(self, model: nn.Module) -> None:
        """Create the per-parameter states that do not exist yet (zeros like each parameter)."""
        for state in self._per_parameter:
            for name, parameter in model.named_parameters():
                if parameter.requires_grad and not hasattr(self, self._buffer_name(state, name)):
                    self.register_buffer(
                        self._buffer_name(state, name), torch.zeros_like(parameter.detach()), persistent=True
                    )

    def parameter_state(self, state: str, model: nn.Module) -> dict[str, Tensor]:
        """``{parameter name: tensor}`` of the per-parameter state ``state`` for ``model``."""
        if state not in self._per_parameter:
            raise KeyError(f"{type(self).__name__} declares no per-parameter state {state!r}")
        self.init_parameter_state(model)
        return {
            name: getattr(self, self._buffer_name(state, name))
            for name, parameter in model.named_parameters()
            if parameter.requires_grad
        }

    def reset_state(self) -> None:
        """Every declared state back to its default (per-parameter states back to zeros)."""
        for name, default in self._defaults.items():
            setattr(self, name, default.clone().to(getattr(self, name).device))
        prefixes = tuple(f"{s}{_PER_PARAMETER_SEP}" for s in self._per_parameter)
        for name, buffer in self.named_buffers(recurse=False):
            if name.startswith(prefixes):
                buffer.zero_()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # the per-parameter buffers follow the state loaded: those it lacks (a rollback to before
        # they existed) are dropped, those it holds (saved by an earlier update) are created
        local_prefixes = tuple(f"{s}{_PER_PARAMETER_SEP}" for s in self._per_parameter)
        for name in [n for n in self._buffers if n.startswith(local_prefixes)]:
            if prefix + name not in state_dict:
                del self._buffers[name]
        prefixes = tuple(f"{prefix}{s}{_PER_PARAMETER_SEP}" for s in self._per_parameter)
        for key, value in state_dict.items():
            local = key[len(prefix) :]
            if (
                key.startswith(prefixes)
                and _PER_PARAMETER_SEP in local
                and "." not in local
                and not hasattr(self, local)
            ):
                self.register_buffer(local, torch.zeros_like(value), persistent=True)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---------------------------------------------------------------- the term and the hooks
    def loss(self, ctx: StepContext) -> Tensor | None:
        """The raw (unweighted) scalar term for this step, or ``None``."""
        return None

    def metadata(self, key: str, outputs: Tensor, features: dict[str, Tensor]) -> Tensor:
        """Produce the memory metadata ``key`` for a batch (``logits`` and ``features.<layer>``)."""
        if key == "logits":
            return outputs.detach().float()
        if key.startswith("features."):
            return features[key[len("features.") :]].detach().float()
        raise KeyError(
            f"{type(self).__name__} declares memory key {key!r} but does not produce it; "
            "override Component.metadata for keys other than 'logits' and 'features.<layer>'"
        )

    @property
    def feature_layers(self) -> tuple[str, ...]:
        """The model layers whose outputs this component reads (from ``memory_keys`` by default)."""
        return tuple(k[len("features.") :] for k in self.memory_keys if k.startswith("features."))

    def on_update_start(self, ctx: UpdateContext) -> None:
        """Before the first step of an update (shrink-and-perturb acts here)."""

    def on_before_optimizer_step(self, ctx: StepContext) -> None:
        """After backward, before the optimizer step: gradients are present and may be changed."""

    def on_after_step(self, ctx: StepContext) -> None:
        """After the optimizer step and the memory insert (EMA teachers, path integrals)."""

    def on_train_epoch_end(self, ctx: UpdateContext) -> None:
        """At the end of each training epoch."""

    def on_update_end(self, ctx: UpdateContext) -> None:
        """After the last step of an update, before the state is saved (Fisher, class means)."""

    def extra_repr(self) -> str:
        return f"weight={self.weight}"
