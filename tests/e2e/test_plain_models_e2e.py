"""iCaRL and PackNet on a plain MLP without extra arguments, end to end on real MNIST: two chunks,
the second by a fresh updater that reads the first state folder and writes it in place."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

import retentive as R
from retentive.components.distillation import icarl_classifier
from retentive.data import split_mnist
from retentive.evaluation import accuracy
from retentive.models import MLP, PackedNetwork
from retentive.state import load_state

pytestmark = pytest.mark.slow

QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1, batch_size=32, seed=0)


def plain() -> nn.Module:
    """A plain network: no declared feature layer, no wrapper."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


MODELS = {"mlp": MLP, "sequential": plain}


@pytest.fixture(scope="module")
def chunks(mnist_train, mnist_test):
    train = [c.subset(torch.arange(400)) for c in split_mnist(mnist_train, with_task_ids=True)[:2]]
    test = [c.subset(torch.arange(300)) for c in split_mnist(mnist_test, with_task_ids=True)[:2]]
    return train, test


def _sgd() -> partial:
    return partial(torch.optim.SGD, lr=0.05)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_icarl_runs_on_a_plain_model_and_its_class_means_are_the_last_linear_inputs(name, chunks, tmp_path):
    train, test = chunks
    folder = tmp_path / "state"
    torch.manual_seed(0)
    first = R.ICaRLModelUpdater(
        MODELS[name](), nn.CrossEntropyLoss(), _sgd(), memory_size=40, output_state_folder=folder, **QUIET
    )
    first.update(train[0], task_id=0)
    torch.manual_seed(1)  # any fresh weights: the folder's replace them
    second = R.ICaRLModelUpdater(
        MODELS[name](),
        nn.CrossEntropyLoss(),
        _sgd(),
        memory_size=40,
        input_state_folder=folder,
        output_state_folder=folder,
        **QUIET,
    )
    model = second.update(train[1], task_id=1)
    assert second.memory.class_counts(4).tolist() == [10, 10, 10, 10]
    icarl = second.learner.components[0]
    width = 100 if name == "mlp" else 32  # the width of the last linear layer's input
    assert icarl.class_means.shape == (4, width) and icarl.has_mean.all()
    recorded = load_state(folder).manifest["hyperparameters"]["feature_layer"]
    assert recorded == ("features.4" if name == "mlp" else None)  # declared by MLP; the default rule otherwise
    # the class means are the normalised mean input of the last nn.Linear over each class's exemplars
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured = []
    handle = head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    exemplars = second.memory.decoded("inputs")[: len(second.memory)]
    labels = second.memory.storage["targets"][: len(second.memory)]
    model.eval()
    with torch.no_grad():
        model(exemplars)
    handle.remove()
    f = nn.functional.normalize(captured[0], dim=-1)
    mean0 = nn.functional.normalize(f[labels == 0].mean(0), dim=-1)
    torch.testing.assert_close(icarl.class_means[0], mean0, atol=1e-5, rtol=1e-5)
    nme = icarl_classifier(MODELS[name](), folder)
    both = torch.utils.data.ConcatDataset(test)
    assert accuracy(nme, both) > 0.6  # four classes: chance is 0.25


@pytest.mark.parametrize("name", sorted(MODELS))
def test_packnet_wraps_a_plain_model_and_keeps_the_first_task_bit_identical(name, chunks, tmp_path):
    train, test = chunks
    folder = tmp_path / "state"
    torch.manual_seed(0)
    first = R.PackNetModelUpdater(MODELS[name](), nn.CrossEntropyLoss(), _sgd(), output_state_folder=folder, **QUIET)
    assert isinstance(first.model, PackedNetwork)
    model = first.update(train[0], task_id=0)
    assert isinstance(model, PackedNetwork)
    model.eval()
    with torch.no_grad():
        before = model(test[0].inputs, test[0].task_ids)
    torch.manual_seed(1)
    second = R.PackNetModelUpdater(
        MODELS[name](), nn.CrossEntropyLoss(), _sgd(), input_state_folder=folder, output_state_folder=folder, **QUIET
    )
    model = second.update(train[1], task_id=1)
    manifest = load_state(folder).manifest
    assert manifest["architecture"]["packnet_tasks"] == [0, 1]
    reloaded = R.load_model(PackedNetwork(MODELS[name]()), folder)  # the folder holds the wrapper's state
    for net in (model.eval(), reloaded):
        with torch.no_grad():
            assert torch.equal(net(test[0].inputs, test[0].task_ids), before)  # task 0's function, bit for bit
    assert accuracy(reloaded, test[0]) > 0.9 and accuracy(reloaded, test[1]) > 0.6  # a shared 10-way head


def test_packnet_retrains_through_the_updaters_fit_with_the_validation_data(chunks, tmp_path):
    import pytorch_lightning as pl

    class Count(pl.Callback):
        def __init__(self) -> None:
            self.validations, self.fits = 0, 0

        def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.fits += 1

        def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self.validations += 1

    train, test = chunks
    count = Count()
    torch.manual_seed(0)
    updater = R.PackNetModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        _sgd(),
        post_prune_epochs=2,
        metric="val_loss",
        mode="min",
        callbacks=[count],
        output_state_folder=tmp_path / "s0",
        **QUIET,
    )
    updater.update(train[0], val_dataset=test[0], task_id=0)
    assert (count.fits, count.validations) == (2, 1 + 2)  # the first fit's epoch, then the two retraining epochs
    assert all(value is not test[0] for value in vars(updater).values())  # not kept past the update
