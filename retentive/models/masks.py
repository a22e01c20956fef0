"""PackNet's weight ownership (Mallya & Lazebnik, CVPR 2018): one network, one binary mask per task.

Every prunable weight (a parameter with two or more dimensions: linear and convolution kernels)
carries the number of the task that owns it: ``0`` while free, ``k`` once task ``k - 1`` (in
training order) kept it after pruning. Task ``s`` sees the weights owned by tasks ``0..s``
(``1 <= owner <= s + 1``): later tasks only ever train weights that were free, so the function
an earlier task computes is unchanged, bit for bit. Biases and other one-dimensional parameters
are trained with the first task and fixed afterwards, as in the authors' code, and so are the
running statistics of batch norms (a ResNet's): later tasks train with them in eval mode.

The ownership lives in the model's buffers (``model.pt`` of the state folder), so task-incremental
inference from a state folder (:func:`retentive.load_model`) applies the right mask by task id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from retentive.errors import DataError
from retentive.models.protocol import takes_task_ids

_SEP = "__"


def prune_by_magnitude(weight: Tensor, free: Tensor, prune_ratio: float) -> Tensor:
    """Of the ``free`` entries of ``weight``, the ones to keep: all but the ``prune_ratio`` fraction
    of smallest magnitude (``floor(prune_ratio * n_free)`` are released; ties broken by position).
    """
    if not 0.0 <= prune_ratio < 1.0:
        raise ValueError(f"prune_ratio must lie in [0, 1), got {prune_ratio}")
    n_free = int(free.sum())
    release = int(prune_ratio * n_free)
    keep = free.clone()
    if release == 0:
        return keep
    magnitude = weight.detach().abs().flatten().masked_fill(~free.flatten(), float("inf"))
    smallest = torch.sort(magnitude, stable=True).indices[:release]
    keep.view(-1)[smallest] = False
    return keep


def tasks_that_fit(n_weights: int, prune_ratio: float) -> int:
    """How many tasks can each keep at least one of ``n_weights`` free weights under ``prune_ratio``."""
    free, tasks = n_weights, 0
    while free >= 1 and tasks < 10_000:
        free = int(prune_ratio * free)  # released for the tasks after this one
        tasks += 1
    return tasks


class PackedNetwork(nn.Module):
    """A model whose prunable weights are shared out between tasks by PackNet.

    Args:
        model: the network; a task-routed model (``takes_task_ids``, e.g. a
            :class:`~retentive.models.MultiHeadClassifier`) is called with the task ids.
        task_specific: name prefixes of parameters that belong to a single task and are neither
            pruned nor masked (the per-task heads: only their task's samples reach them)
            [``("heads",)``].
        max_tasks: the most tasks the ownership counter (int16) can number.
    """

    #: buffers (add_state / register_buffer), declared for the type checker
    task_slots: Tensor
    pruned: Tensor

    takes_task_ids = True

    def __init__(self, model: nn.Module, task_specific: Sequence[str] = ("heads",), max_tasks: int = 32767) -> None:
        super().__init__()
        self.model = model
        self.task_specific = tuple(task_specific)
        self.max_tasks = int(max_tasks)
        self._prunable = [n for n, p in model.named_parameters() if p.dim() >= 2 and not self._specific(n)]
        self._shared = [n for n, p in model.named_parameters() if p.dim() < 2 and not self._specific(n)]
        if not self._prunable:
            raise ValueError(f"{type(model).__name__} has no prunable weights (parameters with 2+ dimensions)")
        for name in self._prunable:
            parameter = model.get_parameter(name)
            self.register_buffer(self._owner_key(name), torch.zeros(parameter.shape, dtype=torch.int16))
        #: the task id of each slot, in training order; ``pruned[s]``: slot ``s`` has been pruned
        self.register_buffer("task_slots", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("pruned", torch.zeros(0, dtype=torch.bool))

    @property
    def feature_layer(self) -> str | None:
        """The wrapped model's declared feature layer, under this wrapper's name for it."""
        from retentive.models.protocol import feature_layer

        inner = feature_layer(self.model)
        return None if inner is None else f"model.{inner}"

    # ---------------------------------------------------------------- bookkeeping
    def _specific(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.task_specific)

    @staticmethod
    def _owner_key(name: str) -> str:
        return "owner" + _SEP + name.replace(".", _SEP)

    def owner(self, name: str) -> Tensor:
        """The owning task number (0: free, ``s + 1``: slot ``s``) of each entry of weight ``name``."""
        return getattr(self, self._owner_key(name))

    def prunable(self) -> Iterator[tuple[str, nn.Parameter, Tensor]]:
        """``(name, parameter, owner)`` of every prunable weight."""
        for name in self._prunable:
            yield name, self.model.get_parameter(name), self.owner(name)

    def shared(self) -> list[nn.Parameter]:
        """The non-prunable shared parameters (biases, norms): trained with the first task only."""
        return [self.model.get_parameter(n) for n in self._shared]

    @property
    def num_tasks(self) -> int:
        return int(self.task_slots.numel())

    def slot(self, task_id: int | str) -> int | None:
        """The training-order slot of ``task_id``, or ``None`` if the network has not met it."""
        hits = (self.task_slots == int(task_id)).nonzero()
        return int(hits[0, 0]) if hits.numel() else None

    @property
    def current_slot(self) -> int:
        return self.num_tasks - 1

    def free_counts(self) -> dict[str, int]:
        """The number of free weights left in each prunable weight tensor."""
        return {name: int((owner == 0).sum()) for name, _, owner in self.prunable()}

    def owned_counts(self) -> list[int]:
        """The number of weights each slot owns (over all prunable weights)."""
        return [sum(int((owner == s + 1).sum()) for _, _, owner in self.prunable()) for s in range(self.num_tasks)]

    # ---------------------------------------------------------------- growth
    def adapt(self, task_id: int | str, prune_ratio: float | None = None) -> None:
        """Open a slot for a task not met before (idempotent for a known task).

        Raises ``ValueError`` naming the layer and how many tasks fit when a prunable weight tensor
        has no free entries left for the new task. Freezes the shared parameters after the first
        task (``requires_grad=False``: the optimizer, built after this call, leaves them alone).
        """
        task = int(task_id)
        if self.slot(task) is None:
            if self.num_tasks and not bool(self.pruned[-1]):
                # an unpruned slot owns no weight yet (an update that failed, or a fresh model being
                # rebuilt before its saved registry loads): the new task takes its place
                self.task_slots, self.pruned = self.task_slots[:-1], self.pruned[:-1]
            if self.num_tasks >= self.max_tasks:
                raise ValueError(f"PackedNetwork numbers at most {self.max_tasks} tasks; task {task} would be one more")
            empty = {name: count for name, count in self.free_counts().items() if count == 0}
            if empty:
                name = next(iter(empty))
                size = self.model.get_parameter(name).numel()
                fit = (
                    ""
                    if prune_ratio is None
                    else (
                        f"; with prune_ratio={prune_ratio}, {tasks_that_fit(size, prune_ratio)} tasks fit in its {size} weights"
                    )
                )
                raise ValueError(
                    f"PackNet has no free weights left in {name!r} for task {task} after {self.num_tasks} tasks{fit}"
                )
            self.task_slots = torch.cat([self.task_slots, self.task_slots.new_tensor([task])])
            self.pruned = torch.cat([self.pruned, self.pruned.new_tensor([False])])
        for parameter in self.shared():
            parameter.requires_grad_(self.slot(task) == 0)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # the slot registry grows with the tasks: take the saved length before loading
        for key in ("task_slots", "pruned"):
            saved = state_dict.get(prefix + key)
            if torch.is_tensor(saved) and saved.shape != getattr(self, key).shape:
                setattr(self, key, torch.zeros_like(saved))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.num_tasks:
            for parameter in self.shared():
                parameter.requires_grad_(self.num_tasks == 1)

    # ---------------------------------------------------------------- the masks
    def visible(self, slot: int) -> dict[str, Tensor]:
        """The boolean mask of the weights task ``slot`` computes with (owners ``1..slot+1``; an
        unpruned slot also uses the weights still free, which it is training)."""
        unpruned = slot == self.current_slot and not bool(self.pruned[slot])
        return {
            name: (owner <= slot + 1) if unpruned else ((owner >= 1) & (owner <= slot + 1))
            for name, _, owner in self.prunable()
        }

    def trainable(self) -> dict[str, Tensor]:
        """The weights the current slot may change: the free ones before its pruning, its own after."""
        s = self.current_slot
        value = s + 1 if bool(self.pruned[s]) else 0
        return {name: owner == value for name, _, owner in self.prunable()}

    @torch.no_grad()
    def prune(self, prune_ratio: float) -> dict[str, int]:
        """Prune the current slot: keep the largest free weights, zero and release the rest.

        Returns the number of weights the slot kept per weight tensor.
        """
        s = self.current_slot
        if s < 0 or bool(self.pruned[s]):
            raise ValueError("there is no unpruned task to prune")
        kept: dict[str, int] = {}
        for name, parameter, owner in self.prunable():
            keep = prune_by_magnitude(parameter, owner == 0, prune_ratio)
            owner[keep] = s + 1
            parameter[owner == 0] = 0.0
            kept[name] = int(keep.sum())
        self.pruned[s] = True
        return kept

    # ---------------------------------------------------------------- forward
    def _call(self, x: Any, task_ids: Tensor | None) -> Tensor:
        return self.model(x, task_ids) if takes_task_ids(self.model) else self.model(x)

    def _masked(self, x: Any, task_ids: Tensor, slot: int) -> Tensor:
        weights = {
            name: parameter * mask.to(parameter.dtype)
            for (name, parameter, _), mask in zip(self.prunable(), self.visible(slot).values())
        }
        args = (x, task_ids) if takes_task_ids(self.model) else (x,)
        return functional_call(self.model, weights, args, strict=False)

    def _freeze_statistics(self) -> None:
        """Normalisation layers in eval mode while a task after the first trains (as the authors'
        code does): their affine parameters are fixed after the first task, and so must be their
        running statistics, or every later task's batches would shift an earlier task's function.
        Set lazily at the first training forward (Lightning warns of modules found in eval mode
        when a fit starts); :class:`~retentive.updaters.architectures.PackNetMasking` puts the
        mode back at the end of each fit."""
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase) and module.training:
                module.eval()

    def forward(self, x: Any, task_ids: Tensor | None = None) -> Tensor:
        if self.training and self.num_tasks > 1:
            self._freeze_statistics()
        if self.num_tasks == 0:
            return self._call(x, task_ids)
        if task_ids is None:  # no task given: the newest task's mask (every weight packed so far)
            task_ids = torch.full((_batch_size(x),), int(self.task_slots[-1]), dtype=torch.long)
        task_ids = task_ids.long().to(self.task_slots.device)
        match = task_ids.unsqueeze(1) == self.task_slots.unsqueeze(0)
        known = match.any(dim=1)
        if not bool(known.all()):
            raise DataError(
                f"task id {int(task_ids[~known][0])} has no PackNet mask; the network knows tasks "
                f"{self.task_slots.tolist()}"
            )
        slots = match.float().argmax(dim=1)
        present = torch.unique(slots).tolist()
        newest = self.current_slot
        if present == [newest]:
            # the newest task computes with the plain network: before its pruning it uses every
            # weight, after it the released weights are exactly zero and no later task exists
            return self._call(x, task_ids)
        outputs: Tensor | None = None
        for slot in present:
            rows = (slots == slot).nonzero().squeeze(1)
            part = self._masked(_index(x, rows), task_ids[rows], slot)
            if outputs is None:
                outputs = part.new_empty((int(task_ids.shape[0]),) + tuple(part.shape[1:]))
            outputs[rows] = part
        assert outputs is not None
        return outputs


def _batch_size(x: Any) -> int:
    if torch.is_tensor(x):
        return int(x.shape[0])
    from retentive.data import nested

    return nested.batch_size(x)


def _index(x: Any, rows: Tensor) -> Any:
    if torch.is_tensor(x):
        return x[rows]
    from retentive.data import nested

    return nested.index(x, rows)
