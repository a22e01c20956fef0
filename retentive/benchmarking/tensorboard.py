"""TensorBoard output of a run's evaluation: accuracy per chunk after each update, the metrics,
update cost, and the accuracy-matrix heatmap as an image."""

from __future__ import annotations

import os

import torch

from retentive.benchmarking.heatmap import heatmap_image
from retentive.benchmarking.results import RunResult


def write_run(log_dir: str | os.PathLike[str], run: RunResult) -> None:
    """Write ``run`` to ``log_dir/evaluation`` (the updates' curves are in ``log_dir/training``)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=os.path.join(str(log_dir), "evaluation"))
    try:
        for view, result in run.views.items():
            matrix = torch.tensor(result.matrix, dtype=torch.float64)
            for i in range(matrix.shape[0]):
                for j in range(matrix.shape[1]):
                    writer.add_scalar(f"{view}/accuracy_chunk_{j:02d}", float(matrix[i, j]), i)
                writer.add_scalar(f"{view}/average_accuracy_seen", float(matrix[i, : i + 1].mean()), i)
                writer.add_scalar(f"{view}/average_accuracy_all", float(matrix[i].mean()), i)
            last = matrix.shape[0] - 1
            for name, value in result.metrics.items():
                writer.add_scalar(f"{view}/final/{name}", value, last)
            image = heatmap_image({f"{run.method} {view}": matrix})
            writer.add_image(f"{view}/accuracy_matrix", image.numpy(), last, dataformats="HWC")
        for i, (seconds, rate, peak) in enumerate(zip(run.update_seconds, run.samples_per_second, run.peak_rss_bytes)):
            writer.add_scalar("cost/update_seconds", seconds, i)
            writer.add_scalar("cost/samples_per_second", rate, i)
            writer.add_scalar("cost/peak_rss_mb", peak / 2**20, i)
    finally:
        writer.close()
