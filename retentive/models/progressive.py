"""Progressive neural networks (Rusu et al., 2016): a new column per task, earlier columns frozen.

Column ``k``'s layer ``i`` computes, as in the paper's Eq. (1),

    h_i^(k) = f( W_i^(k) h_{i-1}^(k) + sum_{j<k} U_i^(k:j) h_{i-1}^(j) )

where the lateral connections ``U`` read the previous layer of every earlier column. Columns
``j < k`` are frozen when column ``k`` is added, so every earlier task's function is unchanged
bit for bit; only the new column (its own weights and its laterals) trains. Laterals into
convolutional layers are 1x1 convolutions, the paper's dimensionality-reducing choice.

The columns grow with :meth:`ProgressiveNetwork.adapt`; a state dict names how many columns it
holds (``column_tasks``), and loading it into a freshly built network first grows the columns it
needs, so a new process restores the network from a state folder alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from retentive.errors import DataError, StateError

KINDS = ("mlp", "cnn")


class ColumnLimitError(ValueError):
    """The network would need more columns than it was built to hold."""


class _Column(nn.Module):
    """One column: its own layers, the laterals from the ``index`` earlier columns, and a head."""

    def __init__(self, widths: Sequence[int], kind: str, outputs: int, index: int, in_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.kind = kind
        self.layers = nn.ModuleList()
        self.laterals = nn.ModuleList()
        if kind == "mlp":
            sizes = [in_shape[0], *widths]
            for i in range(len(widths)):
                self.layers.append(nn.Linear(sizes[i], sizes[i + 1]))
                # layer 0 reads the input, shared by all columns: no lateral there
                self.laterals.append(
                    nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1], bias=False) for _ in range(index if i else 0))
                )
            self.head = nn.Linear(sizes[-1], outputs)
            self.head_laterals = nn.ModuleList(nn.Linear(sizes[-1], outputs, bias=False) for _ in range(index))
        else:
            channels, size = [in_shape[0], *widths], in_shape[1]
            for i in range(len(widths)):
                self.layers.append(nn.Conv2d(channels[i], channels[i + 1], 3, padding=1))
                self.laterals.append(
                    nn.ModuleList(
                        nn.Conv2d(channels[i], channels[i + 1], 1, bias=False) for _ in range(index if i else 0)
                    )
                )
            flat = channels[-1] * (size // 2 ** len(widths)) ** 2
            self.head = nn.Linear(flat, outputs)
            self.head_laterals = nn.ModuleList(nn.Linear(flat, outputs, bias=False) for _ in range(index))

    def block(self, i: int, own: Tensor, earlier: Sequence[Tensor]) -> Tensor:
        """Layer ``i`` on this column's previous activation and the earlier columns' ones."""
        pre = self.layers[i](own)
        for lateral, h in zip(cast(nn.ModuleList, self.laterals[i]), earlier):
            pre = pre + lateral(h)
        out = torch.relu(pre)
        return nn.functional.max_pool2d(out, 2) if self.kind == "cnn" else out

    def output(self, own: Tensor, earlier: Sequence[Tensor]) -> Tensor:
        logits = self.head(own.flatten(1))
        for lateral, h in zip(self.head_laterals, earlier):
            logits = logits + lateral(h.flatten(1))
        return logits


class ProgressiveNetwork(nn.Module):
    """A progressive network of MLP or small-CNN columns, routed by task id.

    Args:
        kind: ``"mlp"`` (inputs flattened) or ``"cnn"`` (inputs ``(C, H, W)``).
        in_shape: the input shape of one sample: ``(784,)`` or ``(1, 28, 28)`` [by kind].
        hidden: the widths (MLP) or channels (CNN) of a column's layers [(100, 100) / (16, 32)].
        num_classes: the size of the global label space.
        class_groups: ``class_groups[k]`` are the labels of the ``k``-th task's classes: its column's
            head has one output per class and writes them there (``fill_value`` elsewhere). Without
            it every head has ``num_classes`` outputs.
        max_columns: the most columns the network may grow [``len(class_groups)``, else 10].
        fill_value: the logit of classes outside a sample's task.
    """

    #: buffers (add_state / register_buffer), declared for the type checker
    column_tasks: Tensor

    takes_task_ids = True

    def __init__(
        self,
        kind: str = "mlp",
        in_shape: Sequence[int] | None = None,
        hidden: Sequence[int] | None = None,
        num_classes: int = 10,
        class_groups: Sequence[Sequence[int]] | None = None,
        max_columns: int | None = None,
        fill_value: float = -1e4,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.in_shape = tuple(int(s) for s in (in_shape or ((784,) if kind == "mlp" else (1, 28, 28))))
        if kind == "cnn" and len(self.in_shape) != 3:
            raise ValueError(f"a CNN column needs in_shape (C, H, W), got {self.in_shape}")
        self.hidden = tuple(int(h) for h in (hidden or ((100, 100) if kind == "mlp" else (16, 32))))
        if kind == "cnn" and self.in_shape[1] % 2 ** len(self.hidden):
            raise ValueError(
                f"image size {self.in_shape[1]} must be divisible by 2**{len(self.hidden)} (one pooling per layer)"
            )
        self.num_classes = int(num_classes)
        self.class_groups = None if class_groups is None else [[int(c) for c in g] for g in class_groups]
        if self.class_groups is not None and any(
            not g or max(g) >= self.num_classes or min(g) < 0 for g in self.class_groups
        ):
            raise ValueError(f"class_groups {self.class_groups} do not fit num_classes={self.num_classes}")
        default = len(self.class_groups) if self.class_groups is not None else 10
        self.max_columns = int(max_columns if max_columns is not None else default)
        if self.class_groups is not None and self.max_columns > len(self.class_groups):
            raise ValueError(f"max_columns={self.max_columns} exceeds the {len(self.class_groups)} class groups")
        self.fill_value = float(fill_value)
        self.columns = nn.ModuleList()
        self.register_buffer("column_tasks", torch.zeros(0, dtype=torch.int64))

    # ---------------------------------------------------------------- growth
    @property
    def num_columns(self) -> int:
        return len(self.columns)

    def _classes(self, k: int) -> list[int]:
        return self.class_groups[k] if self.class_groups is not None else list(range(self.num_classes))

    def _grow(self, task: int) -> None:
        k = self.num_columns
        if k >= self.max_columns:
            raise ColumnLimitError(
                f"ProgressiveNetwork builds at most {self.max_columns} columns; task {task} would need column {k + 1}"
            )
        for parameter in self.parameters():  # every earlier column, laterals included, is frozen
            parameter.requires_grad_(False)
        column = _Column(self.hidden, self.kind, len(self._classes(k)), k, self.in_shape)
        device = self.column_tasks.device
        self.columns.append(column.to(device))
        self.register_buffer(
            f"classes_{k}", torch.tensor(self._classes(k), dtype=torch.long, device=device), persistent=False
        )
        self.column_tasks = torch.cat([self.column_tasks, self.column_tasks.new_tensor([task])])

    def _shrink(self, count: int) -> None:
        while self.num_columns > count:
            k = self.num_columns - 1
            del self.columns[k]
            delattr(self, f"classes_{k}")
        self.column_tasks = self.column_tasks[:count]
        if count:  # the newest remaining column trains again, as it did before the later ones came
            for parameter in self.columns[count - 1].parameters():
                parameter.requires_grad_(True)

    def adapt(self, task_id: int | str) -> None:
        """Add a column for a task not met before (idempotent for a known task)."""
        task = int(task_id)
        if not bool((self.column_tasks == task).any()):
            self._grow(task)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        saved = state_dict.get(prefix + "column_tasks")
        if torch.is_tensor(saved):
            if saved.numel() > self.max_columns:
                raise StateError(
                    f"the state holds {saved.numel()} progressive columns (tasks {saved.tolist()}) but this "
                    f"ProgressiveNetwork builds at most {self.max_columns}"
                )
            common = min(saved.numel(), self.num_columns)
            if not torch.equal(self.column_tasks[:common], saved[:common].to(self.column_tasks.device)):
                raise StateError(
                    f"the state's columns are for tasks {saved.tolist()} but this network has columns for "
                    f"{self.column_tasks.tolist()}"
                )
            if saved.numel() < self.num_columns:  # a rollback to fewer columns: drop the later ones
                self._shrink(saved.numel())
            for task in saved[self.num_columns :].tolist():
                self._grow(int(task))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def parameter_counts(self) -> list[int]:
        """The number of parameters of each column (its laterals included): the growth per task."""
        return [sum(p.numel() for p in column.parameters()) for column in self.columns]

    # ---------------------------------------------------------------- forward
    def forward(self, x: Tensor, task_ids: Tensor | None = None) -> Tensor:
        n = int(x.shape[0])
        expected = self.in_shape if self.kind == "cnn" else (math.prod(self.in_shape),)
        got = tuple(x.shape[1:]) if self.kind == "cnn" else (math.prod(x.shape[1:]),)
        if got != expected:
            raise ValueError(
                f"ProgressiveNetwork ({self.kind}) takes inputs of shape {self.in_shape}, got {tuple(x.shape[1:])}"
            )
        if self.num_columns == 0:  # before any task: no column, every class at fill_value
            return x.new_full((n, self.num_classes), self.fill_value)
        columns = cast("Sequence[_Column]", self.columns)
        h = [x.flatten(1) if self.kind == "mlp" else x] * self.num_columns
        for i in range(len(self.hidden)):
            h = [column.block(i, h[k], h[:k]) for k, column in enumerate(columns)]
        logits = [column.output(h[k], h[:k]) for k, column in enumerate(columns)]
        if task_ids is None:  # no task given: the newest column
            chosen = torch.full((n,), self.num_columns - 1, dtype=torch.long, device=x.device)
        else:
            task_ids = task_ids.long().to(x.device)
            if task_ids.shape != (n,):
                raise DataError(f"need one task id per sample ({n}), got task ids of shape {tuple(task_ids.shape)}")
            match = task_ids.unsqueeze(1) == self.column_tasks.unsqueeze(0)
            if not bool(match.any(dim=1).all()):
                unknown = task_ids[~match.any(dim=1)][0]
                raise DataError(
                    f"task id {int(unknown)} has no column; the columns are for tasks {self.column_tasks.tolist()}"
                )
            chosen = match.float().argmax(dim=1)
        out = logits[0].new_full((n, self.num_classes), self.fill_value)
        for k, values in enumerate(logits):
            rows = chosen == k
            classes = getattr(self, f"classes_{k}")
            full = values.new_full((n, self.num_classes), self.fill_value).index_copy(1, classes, values)
            out = torch.where(rows.unsqueeze(1), full, out)
        return out
