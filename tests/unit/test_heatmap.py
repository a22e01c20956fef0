"""The accuracy-matrix figure (matplotlib): a colour scale, labels, one rounding everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retentive.benchmarking.heatmap import cell_label, heatmap_figure, heatmap_image, write_heatmap


def _texts(figure) -> list[str]:
    return [text.get_text() for ax in figure.axes for text in ax.texts]


def test_cell_label_rounds_half_up_the_same_everywhere():
    """Finding 8 of issue 16: 0.665 showed as 67 in the PNG and 66 in TensorBoard."""
    assert cell_label(0.665) == "67" and cell_label(0.6649) == "66" and cell_label(0.125, 1) == "12.5"
    assert cell_label(0.9055, 1) == "90.6" and cell_label(1.0) == "100" and cell_label(float("nan")) == ""


def test_figure_has_a_colour_scale_labels_and_the_rounded_cells():
    figure = heatmap_figure({"er": torch.tensor([[0.665, float("nan")], [0.3, 0.9]])})
    panel, bar = figure.axes  # one panel and its colour bar
    assert bar.get_ylabel() == "accuracy %" and [t.get_text() for t in bar.get_yticklabels()][-1] == "100"
    assert panel.get_xlabel() == "test data of chunk" and panel.get_ylabel() == "after update"
    assert sorted(_texts(figure)) == ["30", "67", "90"]  # the NaN cell has no text
    assert "ACC over all 2 chunks: 60.0%" in panel.get_title()  # mean of the last row


def test_title_names_the_acc_it_shows():
    """Finding 7 of issue 16: the heatmap showed the all-chunks ACC beside a seen-chunks text."""
    matrix = torch.tensor([[0.9, 0.1, 0.0]])
    assert "ACC over the 1 chunks seen: 90.0%" in heatmap_figure({"er": matrix}, seen=1).axes[0].get_title()
    assert "ACC over all 3 chunks: 33.3%" in heatmap_figure({"er": matrix}).axes[0].get_title()


def test_one_panel_per_method_and_the_png_is_the_tensorboard_image(tmp_path):
    a = torch.eye(3)
    one, two = heatmap_image({"er": a}), heatmap_image({"er": a, "der++": a})
    assert one.dtype == torch.uint8 and one.shape[-1] == 3 and two.shape[1] > 1.5 * one.shape[1]
    path = write_heatmap(tmp_path / "sub" / "h.png", {"er": a})
    from matplotlib.image import imread

    png = torch.from_numpy((imread(path)[..., :3] * 255).round().astype(np.uint8))
    assert png.shape == one.shape and torch.equal(png, one)  # the same figure in both places


def test_bad_matrices_are_refused():
    with pytest.raises(ValueError, match="2-d"):
        heatmap_figure({"er": torch.zeros(3)})
    with pytest.raises(ValueError, match="nothing to draw"):
        heatmap_figure({})
