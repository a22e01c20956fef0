"""benchmarks/der_cifar_diagnose.py: BatchNorm statistics recomputed exactly, and both checks end to
end on a few real CIFAR-10 images (the shared JPEG copy)."""

from __future__ import annotations

import json

import pytest
import torch
from script_modules import load_script


@pytest.fixture(scope="module")
def diagnose():
    return load_script("benchmarks/der_cifar_diagnose.py", "der_cifar_diagnose")


def test_recomputed_batchnorm_statistics_are_the_plain_mean_and_variance_of_the_images(diagnose):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten())
    model[1].running_mean.fill_(5.0)  # stale statistics, far from the data's
    images = torch.randn(1500, 3, 6, 6) * 3 + 1
    fresh = diagnose.with_recomputed_batchnorm(model, images, batch=500)  # three equal batches
    with torch.no_grad():
        features = model[0](images)
    expected_mean = features.mean(dim=(0, 2, 3))
    # the running variance is the mean of the batches' unbiased variances: within 1 % of the whole set's
    expected_var = features.var(dim=(0, 2, 3))
    bn = fresh[1]
    assert torch.allclose(bn.running_mean, expected_mean, atol=1e-4)
    assert torch.allclose(bn.running_var, expected_var, rtol=0.01)
    assert not fresh.training and float(model[1].running_mean[0]) == 5.0  # a copy; the original is untouched


@pytest.mark.slow
def test_joint_trace_records_each_epoch_as_saved_and_with_batchnorm_recomputed(diagnose, tmp_path):
    out = tmp_path / "trace.json"
    diagnose.main(
        ["joint-trace", "--epochs", "2", "--nf", "4", "--subset", "6", "--test-subset", "3", "--out", str(out)]
    )
    report = json.loads(out.read_text())
    assert report["settings"]["check"] == "joint-trace" and [r["epoch"] for r in report["results"]] == [1, 2]
    for row in report["results"]:
        for view in ("saved", "batchnorm_recomputed"):
            assert sum(row[view]["predicted_per_class"]) == 30  # 3 test images of each of 10 classes
            assert len(row[view]["class_il_per_task"]) == 5 and 0 <= row[view]["class_il"] <= row[view]["task_il"]


@pytest.mark.slow
def test_memory_targets_scores_the_stored_logits_and_the_final_model_on_the_memory(diagnose, tmp_path):
    out = tmp_path / "targets.json"
    diagnose.main(
        ["memory-targets", "--method", "der", "--epochs", "1", "--nf", "4", "--subset", "30", "--test-subset", "3",
         "--out", str(out)]
    )  # fmt: skip
    report = json.loads(out.read_text())["results"]
    assert report["samples_per_task"] == [60] * 5  # 300 images offered to a memory of 500: all kept
    for key in ("final_model_correct", "stored_logits_correct", "final_model_agrees_with_stored"):
        assert 0 <= report[key] <= 100
    assert report["final_model_mse_to_stored"] > 0
    with pytest.raises(SystemExit):
        diagnose.main(["memory-targets", "--epochs", "0", "--out", str(out)])
