"""The prompt methods' math against hand-computed values: L2P's selection and surrogate, S-Prompts'
k-means task choice, Repeated Distillation's loss; and the models' growth and errors."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn

from retentive.components.prompts import PromptKeyQueryLoss
from retentive.models import LearningToPromptTransformer, SPromptTransformer, VisionTransformer, kmeans
from retentive.models.l2p import cosine_similarity_matrix, key_query_loss, select_prompts
from retentive.models.sprompts import nearest_task
from retentive.updaters.repeated_distillation import double_distillation_loss

#: a tiny ViT for 28x28 MNIST: 16 patches of 7x7, 2 layers, 4 heads, width 32
ARCH = dict(
    image_size=28,
    patch_size=7,
    num_channels=1,
    hidden_dim=32,
    num_layers=2,
    num_heads=4,
    mlp_dim=64,
    dropout=0.0,
    attention_dropout=0.0,
)
R2 = 1 / math.sqrt(2)


def test_cosine_similarity_top_n_and_surrogate_by_hand():
    query = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    keys = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    s = cosine_similarity_matrix(query, keys)
    expected = torch.tensor([[1.0, R2, 0.0], [0.0, R2, -1.0], [R2, 1.0, -R2]])
    torch.testing.assert_close(s, expected)
    # each row's two most similar keys, most similar first
    assert select_prompts(s, 2, per_batch=False).tolist() == [[0, 1], [1, 0], [1, 0]]
    # batchwise: key 1 is chosen 3 times, key 0 3 times (tie: lower index first), key 2 never
    assert select_prompts(s, 2, per_batch=True).tolist() == [[0, 1]] * 3
    assert select_prompts(s, 1, per_batch=True).tolist() == [[1]] * 3  # key 1 wins 2 of the 3 rows
    # mean over rows of sum over the chosen keys of (1 - cos)
    idx = torch.tensor([[0, 1], [1, 0], [1, 0]])
    by_hand = ((0 + (1 - R2)) + ((1 - R2) + 1) + (0 + (1 - R2))) / 3
    assert key_query_loss(s, idx).item() == pytest.approx(by_hand)


def test_l2p_model_selects_by_cosine_to_the_frozen_query_and_only_prompts_keys_head_learn():
    torch.manual_seed(0)
    model = LearningToPromptTransformer(
        **ARCH, pool_size=4, pool_selection_size=2, prompt_size=3, per_batch_prompt=False
    )
    x = torch.rand(5, 1, 28, 28)
    query = model.transformer.tokens(x)[:, 0]
    torch.testing.assert_close(model.query(x), query)
    with torch.no_grad():  # key 3 is the query of sample 0, key 1 that of sample 1
        model.prompt_keys[3] = query[0]
        model.prompt_keys[1] = query[1]
    logits = model(x)
    similarity = nn.functional.cosine_similarity(query.unsqueeze(1), model.prompt_keys.unsqueeze(0), dim=2)
    chosen = similarity.topk(2, dim=1).indices
    assert chosen[0, 0] == 3 and chosen[1, 0] == 1
    expected = (1 - similarity.gather(1, chosen)).sum(1).mean()
    torch.testing.assert_close(model.key_query_loss, expected)
    # the logits are the head on the mean of the prompt tokens' outputs, prompts as chosen
    tokens = model.transformer.tokens(x, model.prompt_pool[chosen].flatten(1, 2))
    torch.testing.assert_close(logits, model.head(tokens[:, 1:7].mean(1)))
    (logits.sum() + model.key_query_loss).backward()
    assert all(p.grad is None for p in model.transformer.parameters())
    assert model.prompt_pool.grad is not None and model.head.weight.grad is not None
    assert model.prompt_keys.grad is not None and model.prompt_keys.grad[chosen.unique()].abs().sum() > 0
    unused = sorted(set(range(4)) - set(chosen.flatten().tolist()))
    assert all(model.prompt_keys.grad[i].abs().sum() == 0 for i in unused)


def test_l2p_updater_loss_is_ce_plus_weight_times_surrogate(mnist_train):
    import retentive

    torch.manual_seed(0)
    model = LearningToPromptTransformer(**ARCH, pool_size=4, pool_selection_size=2, prompt_size=2)
    updater = retentive.LearningToPromptModelUpdater(
        model,
        nn.CrossEntropyLoss(reduction="none"),
        partial(torch.optim.SGD, lr=0.1),
        prompt_sim_loss_weight=0.25,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
    )
    x, y = mnist_train.inputs[:8], mnist_train.targets[:8]
    total, ctx = updater.learner.step_loss((x, y))
    ce = nn.functional.cross_entropy(ctx.outputs, y)
    torch.testing.assert_close(total, ce + 0.25 * model.key_query_loss)
    assert isinstance(updater.learner.components[0], PromptKeyQueryLoss) and not PromptKeyQueryLoss.normalized


def test_kmeans_and_nearest_task_by_hand():
    points = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 10.0], [10.0, 11.0], [0.0, 0.5]])
    centers = kmeans(points, 2, torch.Generator().manual_seed(0))
    centers = centers[centers[:, 0].argsort()]
    torch.testing.assert_close(centers, torch.tensor([[0.0, 0.5], [10.0, 10.5]]))
    # a sample's task is that of the center nearest its normalised feature
    task_centers = torch.tensor([[1.0, 0.0], [R2, R2], [0.0, 1.0]])
    tasks = torch.tensor([0, 1, 1])
    features = torch.tensor([[5.0, 0.5], [0.1, 3.0], [2.0, 2.1]])
    assert nearest_task(features, task_centers, tasks).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="k <= N"):
        kmeans(points, 6)


def test_sprompt_inference_uses_the_prompt_of_the_nearest_center():
    torch.manual_seed(0)
    model = SPromptTransformer(**ARCH, prompt_size=2, clusters_per_task=1, per_task_classifier=True)
    model.adapt(0)
    model.adapt(1)
    model.adapt(1)  # idempotent
    assert model.num_tasks == 2 and len(model.heads) == 2
    assert not model.prompts[0].requires_grad and model.prompts[1].requires_grad
    a, b = torch.rand(1, 1, 28, 28), torch.rand(1, 1, 28, 28) * 0.1
    with torch.no_grad():  # task 0's center at a's feature, task 1's at b's
        model.centers = nn.functional.normalize(torch.cat([model.features(a), model.features(b)]), dim=1)
        model.center_tasks = torch.tensor([0, 1])
    model.eval()
    x = torch.cat([b, a])
    assert model.infer_task(x).tolist() == [1, 0]
    by_hand = torch.cat(
        [
            model.heads[1](model.transformer.tokens(b, model.prompts[1])[:, 0]),
            model.heads[0](model.transformer.tokens(a, model.prompts[0])[:, 0]),
        ]
    )
    torch.testing.assert_close(model(x), by_hand)
    model.train()  # training: the newest task's prompt and head for every sample
    torch.testing.assert_close(model(a), model.heads[1](model.transformer.tokens(a, model.prompts[1])[:, 0]))


def test_sprompt_rebuilds_from_its_state_dict_and_clusters_the_newest_task():
    torch.manual_seed(0)
    model = SPromptTransformer(**ARCH, prompt_size=2, clusters_per_task=3)
    model.adapt(0)
    model.add_task_centers(torch.randn(20, 32), torch.Generator().manual_seed(1))
    model.adapt(1)
    model.add_task_centers(torch.randn(20, 32), torch.Generator().manual_seed(2))
    assert model.centers.shape == (6, 32) and model.center_tasks.tolist() == [0, 0, 0, 1, 1, 1]
    fresh = SPromptTransformer(**ARCH, prompt_size=2, clusters_per_task=3)
    fresh.load_state_dict(model.state_dict())
    assert fresh.num_tasks == 2
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    earlier = SPromptTransformer(**ARCH, prompt_size=2, clusters_per_task=3)
    earlier.adapt(0)
    fresh.load_state_dict(earlier.state_dict())  # a rollback shrinks it again
    assert fresh.num_tasks == 1 and fresh.centers.shape == (0, 32)


def test_double_distillation_loss_by_hand():
    predicted = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[3.0, 5.0], [1.0, 1.0]])
    # targets centred per sample: [-1, 1] and [0, 0]; 0.5 * mean of squared differences
    torch.testing.assert_close(double_distillation_loss(predicted, target), torch.tensor([0.5 * (4 + 1) / 2, 0.0]))


def test_bad_inputs_are_refused_with_clear_errors(tmp_path):
    import retentive

    loss, opt = nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1)
    with pytest.raises(TypeError, match="LearningToPromptTransformer"):
        retentive.LearningToPromptModelUpdater(VisionTransformer(**ARCH), loss, opt, logger=False)
    with pytest.raises(TypeError, match="SPromptTransformer"):
        retentive.SPeftModelUpdater(LearningToPromptTransformer(**ARCH), loss, opt, logger=False)
    with pytest.raises(ValueError, match="prompt_sim_loss_weight"):
        retentive.LearningToPromptReplayModelUpdater(
            LearningToPromptTransformer(**ARCH), loss, opt, 10, prompt_sim_loss_weight=-1
        )
    with pytest.raises(TypeError, match="learner_kwargs"):
        retentive.LearningToPromptModelUpdater(LearningToPromptTransformer(**ARCH), loss, opt, learner_kwargs={"x": 1})
    with pytest.raises(TypeError, match="by name"):  # Renate's fourth positional is batch_size; here, by name
        retentive.SPeftModelUpdater(SPromptTransformer(**ARCH), loss, opt, 32)
    with pytest.raises(TypeError, match="keeps no memory"):
        retentive.SPeftModelUpdater(SPromptTransformer(**ARCH), loss, opt, memory_size=10)
    with pytest.raises(ValueError, match="memory_size must be >= 1"):
        retentive.RepeatedDistillationModelUpdater(VisionTransformer(**ARCH), loss, opt, memory_size=0)
    with pytest.raises(ValueError, match="pool_selection_size 6 exceeds pool_size 5"):
        LearningToPromptTransformer(**ARCH, pool_size=5, pool_selection_size=6)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        VisionTransformer(image_size=28, patch_size=5, num_channels=1)
    with pytest.raises(ValueError, match=r"images of shape \(1, 28, 28\)"):
        VisionTransformer(**ARCH)(torch.rand(2, 3, 28, 28))
    # a chunk too small to cluster is refused before anything is written
    from retentive.data import TensorChunk
    from retentive.errors import DataError

    updater = retentive.SPeftModelUpdater(
        SPromptTransformer(**ARCH, clusters_per_task=5),
        loss,
        opt,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        output_state_folder=tmp_path / "s",
    )
    with pytest.raises(DataError, match="clusters_per_task=5"):
        updater.update(TensorChunk(torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 0])))
    assert not (tmp_path / "s").exists() and updater.model.num_tasks == 1 and updater.updates_done == 0


def test_l2p_replay_loss_is_offline_er_mix_plus_weight_times_surrogate(mnist_train):
    import retentive
    from retentive.data import TensorChunk

    torch.manual_seed(0)
    model = LearningToPromptTransformer(**ARCH, pool_size=4, pool_selection_size=2, prompt_size=2)
    updater = retentive.LearningToPromptReplayModelUpdater(
        model,
        nn.CrossEntropyLoss(reduction="none"),
        partial(torch.optim.SGD, lr=0.1),
        memory_size=8,
        loss_weight_new_data=0.3,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
    )
    x, y = mnist_train.inputs[:16], mnist_train.targets[:16]
    updater.memory.add({"inputs": x[:8], "targets": y[:8], "task_ids": torch.zeros(8, dtype=torch.long)})
    updater.training_data(TensorChunk(x[8:], y[8:]), 0)  # sets a = 0.3 for this update
    total, ctx = updater.learner.step_loss((x[8:], y[8:]))
    assert ctx.memory_outputs is not None and ctx.memory_outputs.shape == (8, 10)
    expected = (
        0.3 * nn.functional.cross_entropy(ctx.outputs, y[8:])
        + 0.7 * nn.functional.cross_entropy(ctx.memory_outputs, ctx.memory.targets)
        + 0.5 * model.key_query_loss
    )
    torch.testing.assert_close(total, expected)
