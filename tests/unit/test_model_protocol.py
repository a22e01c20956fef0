"""The model contract: capabilities as protocols read through one helper each, and one feature rule
(the declared layer's output, else the input of the last ``nn.Linear`` called) for every caller."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from retentive.memory.update_end import candidate_features
from retentive.models import (
    MLP,
    ContinualModel,
    FeatureLayerModel,
    FeatureTap,
    GrowingModel,
    MultiHeadClassifier,
    PackedNetwork,
    ProgressiveNetwork,
    SmallCNN,
    TaskRoutedModel,
    adapt_model,
    can_adapt,
    feature_layer,
)
from retentive.models.protocol import clusters_per_task, has_hidden_layer, hidden_layers, prompt_query_loss
from retentive.shift import LayerFeatures

ROOT = Path(__file__).resolve().parents[2]


def _last_linear_input(model: nn.Module, *args: torch.Tensor) -> torch.Tensor:
    """The input of the last ``nn.Linear`` called, captured by hand with a forward pre-hook."""
    captured: list[torch.Tensor] = []
    handles = [
        m.register_forward_pre_hook(lambda module, a: captured.append(a[0]))
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]
    with torch.no_grad():
        model(*args)
    for handle in handles:
        handle.remove()
    return captured[-1]


class HeadFirst(nn.Module):
    """Registers its head before its trunk: the rule follows the call order, not the registration."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(6, 3)
        self.trunk = nn.Sequential(nn.Linear(5, 6), nn.Tanh())
        self.norm = nn.LayerNorm(3)  # parameters after the head: "last submodule with parameters" would pick it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.head(self.trunk(x)))


def test_the_features_of_a_plain_model_are_exactly_the_input_of_its_last_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    x = torch.randn(4, 3, 4)
    assert feature_layer(model) is None  # nothing declared: the default rule
    with FeatureTap(model) as tap, torch.no_grad():
        model(x)
        features = tap.features(4)
    hidden = torch.relu(model[3](torch.relu(model[1](x.flatten(1)))))  # by hand
    assert torch.equal(features, hidden) and features.shape == (4, 5) and tap.head == "5"
    assert torch.equal(features, _last_linear_input(model, x))
    model(x)  # the tap is gone: no capture after remove
    assert tap._handles == []


def test_the_rule_follows_the_call_order_and_a_declaration_or_a_name_overrides_it():
    torch.manual_seed(0)
    model = HeadFirst().eval()
    x = torch.randn(4, 5)
    with FeatureTap(model) as tap, torch.no_grad():
        model(x)
        assert tap.head == "head" and torch.equal(tap.features(), torch.tanh(model.trunk[0](x)))
    model.feature_layer = "trunk.0"  # declared: that layer's output
    with FeatureTap(model) as tap, torch.no_grad():
        model(x)
        assert tap.layer == "trunk.0" and torch.equal(tap.features(), model.trunk[0](x))
    with FeatureTap(model, "head") as tap, torch.no_grad():  # named by the caller: beats the declaration
        model(x)
        assert torch.equal(tap.features(), model.head(torch.tanh(model.trunk[0](x))))
    model.feature_layer = "nope"
    with pytest.raises(ValueError, match="feature_layer 'nope' is not a submodule of HeadFirst"):
        FeatureTap(model)
    with pytest.raises(ValueError, match="Hardtanh has no nn.Linear layer"):
        FeatureTap(nn.Hardtanh())


@pytest.mark.parametrize(
    "build, x",
    [
        (lambda: MLP(in_features=6, hidden=(5, 4), num_classes=3), torch.randn(7, 6)),
        (lambda: SmallCNN(image_size=8), torch.randn(7, 1, 8, 8)),
    ],
)
def test_the_reference_models_declare_the_tensor_their_classifier_reads(build, x):
    torch.manual_seed(0)
    model = build().eval()
    assert isinstance(model, FeatureLayerModel) and model.feature_layer == model.feature_layers[-1]
    with FeatureTap(model) as tap, torch.no_grad():
        model(x)
        declared = tap.features(7)
    assert tap.head == "classifier"
    assert torch.equal(declared, _last_linear_input(model, x).flatten(1))
    # the shift detectors and update-end selection read the same tensor
    assert torch.equal(LayerFeatures(model)(x), declared)


def test_a_multi_head_model_declares_its_backbone_and_an_undeclared_one_is_refused_on_mixed_tasks():
    torch.manual_seed(0)
    model = MultiHeadClassifier.mlp([[0, 1], [2, 3]], in_features=6, hidden=(5,), num_classes=4).eval()
    x, t = torch.randn(6, 6), torch.tensor([0, 1, 0, 1, 1, 0])
    with FeatureTap(model) as tap, torch.no_grad():
        model(x, t)
        assert torch.equal(tap.features(6), model.backbone(x))  # every sample, whatever its head
    model.feature_layer = None  # undeclared: the last head called saw only its task's samples
    with FeatureTap(model) as tap, torch.no_grad():
        model(x, t)
        with pytest.raises(ValueError, match="have 3 rows for 6 samples .* declare model.feature_layer"):
            tap.features(6)
    assert PackedNetwork(MLP(4, (3,), 2)).feature_layer == "model.features.2"
    assert PackedNetwork(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))).feature_layer is None


def test_update_end_selection_reads_the_rule_on_a_plain_model():
    from retentive.data import TensorChunk
    from retentive.memory.buffer import ReplayBuffer
    from retentive.memory.update_end import ChunkContext

    torch.manual_seed(0)
    model = HeadFirst().eval()
    chunk = TensorChunk(torch.randn(10, 5), torch.randint(0, 3, (10,)))
    features, targets, m = candidate_features(ChunkContext(model, ReplayBuffer(4), chunk), None, 4)
    with torch.no_grad():
        assert torch.equal(features, torch.tanh(model.trunk[0](chunk.inputs))) and m == 0


def test_has_hidden_layer():
    assert has_hidden_layer(MLP(4, (3,), 2)) and has_hidden_layer(HeadFirst())
    assert has_hidden_layer(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)))
    assert not has_hidden_layer(nn.Linear(4, 2))
    assert not has_hidden_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    assert has_hidden_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), "0")  # a named layer


def test_capabilities_are_protocols_that_no_model_inherits():
    progressive = ProgressiveNetwork(num_classes=4, max_columns=2)
    multihead = MultiHeadClassifier.mlp([[0, 1]], in_features=4, hidden=(3,))
    assert isinstance(MLP(), ContinualModel) and isinstance(nn.Linear(2, 2), ContinualModel)
    assert isinstance(multihead, TaskRoutedModel) and isinstance(PackedNetwork(MLP()), TaskRoutedModel)
    assert not isinstance(MLP(), TaskRoutedModel)
    assert isinstance(progressive, GrowingModel) and can_adapt(progressive) and not can_adapt(MLP())
    adapt_model(progressive, 0)
    adapt_model(progressive, 0)  # idempotent per task
    assert progressive.num_columns == 1
    adapt_model(MLP(), 0)  # a model that does not grow is left alone
    assert hidden_layers(MLP()) == ("features.2", "features.4") and hidden_layers(nn.Linear(2, 2)) is None
    assert prompt_query_loss(MLP()) is None
    with pytest.raises(TypeError, match="MLP has no clusters_per_task"):
        clusters_per_task(MLP())


CAPABILITIES = "takes_task_ids|adapt|feature_layers?|reset_parameters|key_query_loss|clusters_per_task"


def test_only_the_protocol_module_probes_model_capabilities():
    probe = re.compile(rf"""(getattr|hasattr)\([^,()]+,\s*["']({CAPABILITIES})["']""")
    allowed = {
        "retentive/models/protocol.py",  # the helpers
        "retentive/models/reinit.py",  # reset_parameters of each layer, not of the model
    }
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "retentive").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if probe.search(line) and str(path.relative_to(ROOT)) not in allowed
    ]
    assert found == []
