"""Architecture methods: PackNet (Mallya & Lazebnik, 2018) and progressive networks (Rusu et al., 2016).

Both leave earlier tasks' functions exactly unchanged, so they need task ids at inference
(task-incremental learning) and no memory. PackNet shares one network out between tasks by
pruning; a progressive network grows a column per task.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn
from torch.utils.data import Dataset

from retentive.components.base import Component, StepContext, UpdateContext
from retentive.learner import OptimizerFactory
from retentive.models.masks import PackedNetwork
from retentive.models.progressive import ProgressiveNetwork
from retentive.models.protocol import adapt_model
from retentive.updaters.arguments import check_count
from retentive.updaters.base import ModelUpdater
from retentive.updaters.hooks import Fit
from retentive.updaters.settings import AllSettings, LossFunction, OwnComponentsSettings
from retentive.updaters.signature import refusing

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+
else:
    from typing import Unpack


class PackNetMasking(Component):
    """PackNet's gradient rule: only the current task's trainable weights change.

    Before the pruning the current task trains the free weights; after it, during the
    post-pruning retraining, only the weights it kept. Gradients of every other prunable weight are
    masked after backward (the paper's rule), and, because an optimizer may still move a weight
    whose gradient is zero (weight decay, AdamW), the frozen values are written back after each
    step: earlier tasks' weights stay bit-identical whatever the optimizer.
    """

    def __init__(self) -> None:
        super().__init__(weight=0.0)
        self.phase = "train"  # "retrain" during the post-pruning epochs (set by the updater)
        self._trainable: dict[str, Tensor] = {}
        self._frozen_values: dict[str, Tensor] = {}

    def on_update_start(self, ctx: UpdateContext) -> None:
        model = ctx.model
        if not isinstance(model, PackedNetwork):
            raise TypeError(f"PackNetMasking needs a PackedNetwork, got {type(model).__name__}")
        slot = model.slot(ctx.task_id)
        if self.phase == "train" and (slot != model.current_slot or bool(model.pruned[model.current_slot])):
            raise ValueError(
                f"PackNet trains each task once; task {ctx.task_id} was packed already (its weights are frozen)"
            )
        self._trainable = {name: mask.to(ctx.device) for name, mask in model.trainable().items()}
        self._frozen_values = {name: p.detach().clone() for name, p, _ in model.prunable()}

    def on_update_end(self, ctx: UpdateContext) -> None:
        model = ctx.model
        model.train(model.training)  # the batch norms the network froze for this fit (PackedNetwork)

    def on_before_optimizer_step(self, ctx: StepContext) -> None:
        model = ctx.model
        assert isinstance(model, PackedNetwork)
        for name, parameter, _ in model.prunable():
            if parameter.grad is not None:
                parameter.grad.mul_(self._trainable[name])

    def on_after_step(self, ctx: StepContext) -> None:
        model = ctx.model
        assert isinstance(model, PackedNetwork)
        for name, parameter, _ in model.prunable():
            parameter.data = parameter.data.where(self._trainable[name], self._frozen_values[name])


def packed(model: Any) -> PackedNetwork:
    """``model`` if it is a :class:`PackedNetwork`, else a network of layers wrapped in one.

    A single layer (a module without submodules, e.g. one ``nn.Linear``) is refused: wrap it by
    hand if a one-layer network is really meant to be shared out between tasks.
    """
    if isinstance(model, PackedNetwork):
        return model
    if not isinstance(model, nn.Module) or next(model.children(), None) is None:
        raise TypeError(
            f"PackNetModelUpdater needs a retentive.models.PackedNetwork or a network of layers to wrap in one; "
            f"got {type(model).__name__} (a single layer: wrap it by hand, PackedNetwork(model))"
        )
    return PackedNetwork(model)


class PackNetModelUpdater(ModelUpdater):
    """PackNet: train a task on the free weights, prune ``prune_ratio`` of them by magnitude,
    retrain the kept ones for ``post_prune_epochs``, and freeze them for good.

    The model is a :class:`~retentive.models.PackedNetwork` (per-task masks in its buffers, so in
    ``model.pt``); a plain network (an ``MLP``, an ``nn.Sequential``) is wrapped in one, and
    ``update()`` returns that wrapper (load a state folder into ``PackedNetwork(net)``). At
    inference ``model(x, task_ids)`` applies each task's mask. Each task is trained once, in one
    update; biases are trained with the first task only (the authors' code).

    Args:
        model: a :class:`~retentive.models.PackedNetwork`, or a network of layers to wrap in one.
        prune_ratio: the fraction of the task's free weights released for later tasks [0.5]; with
            ``p`` the ``k``-th task keeps ``(1 - p) p^(k-1)`` of each layer.
        post_prune_epochs: epochs of retraining after the pruning [1].
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but ``components``.
    """

    refused_arguments = refusing(
        ("components",), "masks the gradients with its own component; drop the argument {name!r}"
    )
    refit_refusal = "its gradient mask keeps earlier tasks' weights frozen, and a refit trains without it"

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        prune_ratio: float = 0.5,
        post_prune_epochs: int = 1,
        **kwargs: Unpack[OwnComponentsSettings],
    ) -> None:
        model = packed(model)
        if not 0.0 <= float(prune_ratio) < 1.0:
            raise ValueError(f"prune_ratio must lie in [0, 1), got {prune_ratio}")
        self.prune_ratio = float(prune_ratio)
        self.post_prune_epochs = check_count("post_prune_epochs", post_prune_epochs, 0)
        self.masking = PackNetMasking()
        super().__init__(model, loss_fn, optimizer, [self.masking], **kwargs)

    def adapt_model(self, tasks: Sequence[int | str]) -> None:
        for task in tasks:
            adapt_model(self.model, task, prune_ratio=self.prune_ratio)

    def fits(self, train_dataset: Dataset, val_dataset: Dataset | None, task_id: int) -> Iterator[Fit]:
        """The task's fit on the free weights; then the pruning and the retraining of the kept
        ones (the same step, with the update's validation data for the best epoch)."""
        yield from super().fits(train_dataset, val_dataset, task_id)
        model = self.model
        assert isinstance(model, PackedNetwork)
        if not bool(model.pruned[model.current_slot]):  # idempotent: a resumed update pruned already
            model.prune(self.prune_ratio)
        if self.post_prune_epochs:
            self.masking.phase = "retrain"
            try:
                yield Fit(self.training_data(train_dataset, task_id), val_dataset, self.post_prune_epochs)
            finally:
                self.masking.phase = "train"

    def manifest_entries(self) -> dict[str, Any]:
        model = self.model
        assert isinstance(model, PackedNetwork)
        return {
            "architecture": {
                "packnet_tasks": model.task_slots.tolist(),
                "weights_per_task": model.owned_counts(),
                "free_weights": sum(model.free_counts().values()),
            }
        }


class ProgressiveNetworkModelUpdater(ModelUpdater):
    """Progressive networks: a new column per task, laterals from the frozen earlier columns.

    The model is a :class:`~retentive.models.ProgressiveNetwork`; the updater adds the task's
    column before training (``adapt``), rebuilds every column from the state folder in a new
    process, and reports the parameter growth in the manifest (``architecture``) and the log.

    Args:
        model: a :class:`~retentive.models.ProgressiveNetwork`.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        **kwargs: Unpack[AllSettings],
    ) -> None:
        if not isinstance(model, ProgressiveNetwork):
            raise TypeError(
                f"ProgressiveNetworkModelUpdater needs a retentive.models.ProgressiveNetwork, got {type(model).__name__}"
            )
        super().__init__(model, loss_fn, optimizer, **kwargs)

    def after_fit(self, train_dataset: Dataset, task_id: int) -> None:
        super().after_fit(train_dataset, task_id)
        if self.logger is not None:
            model = self.model
            assert isinstance(model, ProgressiveNetwork)
            self.logger.log_metrics(
                {"model/columns": model.num_columns, "model/parameters": sum(model.parameter_counts())},
                step=self.learner.total_steps,
            )

    def manifest_entries(self) -> dict[str, Any]:
        model = self.model
        assert isinstance(model, ProgressiveNetwork)
        counts = model.parameter_counts()
        return {
            "architecture": {
                "column_tasks": model.column_tasks.tolist(),
                "parameters_per_column": counts,
                "parameters": sum(counts),
            }
        }
