"""Accuracy-matrix heatmaps drawn with matplotlib: one panel per method, a colour scale, PNG out.

Row ``i`` is "after update i", column ``j`` is "test data of chunk j"; each cell shows the accuracy
in percent (:func:`cell_label`, the one rounding used in the PNG, in TensorBoard and in the text)
on the viridis scale from 0 % to 100 %, with a colour bar. Cells never measured (NaN) are grey.
Each panel's title names which average it shows: over every chunk, or over the chunks seen.
The same figure goes to a PNG (:func:`write_heatmap`) and to TensorBoard (:func:`heatmap_image`,
its pixels). matplotlib is driven through its object API with the Agg canvas: no pyplot state,
no display needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

CAPTION = "row i: after update i, column j: test data of chunk j, cell: accuracy %"
COLOURS = "viridis"
#: where the text in a cell turns from white to black (the colour's luminance, 0..1)
_DARK = 0.5


def cell_label(value: float, digits: int = 0) -> str:
    """An accuracy in [0, 1] as the percent a cell shows, rounded half up (0.665 -> "67").

    Half-up on the decimal text of ``100 * value`` so that the PNG, TensorBoard and any text agree,
    whatever binary rounding ``round()`` would do.
    """
    if math.isnan(value):
        return ""
    exponent = Decimal(1).scaleb(-digits)
    return str(Decimal(repr(100 * float(value))).quantize(exponent, rounding=ROUND_HALF_UP))


def _title(label: str, matrix: np.ndarray, seen: int | None) -> str:
    last = matrix[-1]
    cols = matrix.shape[1]
    if seen is None or seen >= cols:
        return f"{label}\nACC over all {cols} chunks: {cell_label(float(np.nanmean(last)), 1)}%"
    return f"{label}\nACC over the {seen} chunks seen: {cell_label(float(np.nanmean(last[:seen])), 1)}%"


def heatmap_figure(matrices: Mapping[str, Any], caption: str = CAPTION, seen: int | None = None) -> Any:
    """A matplotlib ``Figure``: one panel per ``label -> matrix`` (values in [0, 1]) and one colour bar.

    ``seen``: the panels' ACC is over the first ``seen`` chunks (an evaluation before the last
    update), else over all of them.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not matrices:
        raise ValueError("nothing to draw: no matrices")
    arrays = {}
    for label, matrix in matrices.items():
        a = torch.as_tensor(matrix, dtype=torch.float64).numpy()
        if a.ndim != 2 or a.size == 0:
            raise ValueError(f"a heatmap needs a non-empty 2-d matrix, got shape {tuple(a.shape)} for {label!r}")
        arrays[label] = a
    largest = max(max(a.shape) for a in arrays.values())
    side = min(max(3.2, 0.55 * largest + 1.4), 9.0)
    figure = Figure(figsize=(side * len(arrays) + 1.2, side + 0.9), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(arrays), squeeze=False)[0]
    colours = __import__("matplotlib").colormaps[COLOURS].with_extremes(bad="#c8c8c8")
    image = None
    for ax, (label, a) in zip(axes, arrays.items()):
        rows, cols = a.shape
        image = ax.imshow(np.ma.masked_invalid(a), cmap=colours, vmin=0.0, vmax=1.0, aspect="equal")
        ax.set_title(_title(label, a, seen), fontsize=10)
        ax.set_xlabel("test data of chunk")
        ax.set_ylabel("after update")
        step = 1 if max(rows, cols) <= 10 else 2
        ax.set_xticks(range(0, cols, step))
        ax.set_yticks(range(0, rows, step))
        size = 9 if largest <= 10 else 6
        for i in range(rows):
            for j in range(cols):
                if math.isnan(a[i, j]):
                    continue
                r, g, b, _ = colours(float(a[i, j]))
                ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > _DARK else "white"
                ax.text(j, i, cell_label(float(a[i, j])), ha="center", va="center", fontsize=size, color=ink)
    assert image is not None  # arrays is not empty: max() above would have raised
    bar = figure.colorbar(image, ax=list(axes), shrink=0.85)
    bar.set_label("accuracy %")
    bar.set_ticks([0, 0.25, 0.5, 0.75, 1.0], labels=["0", "25", "50", "75", "100"])
    if caption:
        figure.supxlabel(caption, fontsize=9)
    return figure


def heatmap_image(matrices: Mapping[str, Any], caption: str = CAPTION, seen: int | None = None) -> Tensor:
    """:func:`heatmap_figure` as RGB pixels, uint8 ``(H, W, 3)``: what TensorBoard shows."""
    figure = heatmap_figure(matrices, caption, seen)
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    return torch.from_numpy(pixels)


def write_heatmap(
    path: str | os.PathLike[str], matrices: Mapping[str, Any], caption: str = CAPTION, seen: int | None = None
) -> Path:
    """Write :func:`heatmap_figure` as a PNG (its parent folder is created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    heatmap_figure(matrices, caption, seen).savefig(path, format="png")
    return path
