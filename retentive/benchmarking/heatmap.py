"""Accuracy-matrix heatmaps as RGB pixel tensors: one panel per method, written as PNG.

Row ``i`` is "after update i", column ``j`` is "test chunk j"; each cell shows the accuracy in
percent on a viridis-like scale (dark = 0 %, yellow = 100 %). Cells never measured (NaN) are grey.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from retentive.benchmarking.font import draw_text, text_size
from retentive.benchmarking.png import write_png

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (200, 200, 200)
INK = (40, 40, 40)
#: viridis at 0, 1/4, 1/2, 3/4 and 1
_ANCHORS = torch.tensor(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=torch.float64
)


def colormap(values: Tensor) -> Tensor:
    """Map values in [0, 1] (clamped) to uint8 RGB, shape ``values.shape + (3,)``."""
    v = torch.as_tensor(values, dtype=torch.float64).clamp(0.0, 1.0) * (len(_ANCHORS) - 1)
    low = v.floor().long().clamp(max=len(_ANCHORS) - 2)
    frac = (v - low).unsqueeze(-1)
    rgb = _ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac
    return rgb.round().to(torch.uint8)


def _text_colour(rgb: Tensor) -> tuple[int, int, int]:
    luminance = 0.299 * float(rgb[0]) + 0.587 * float(rgb[1]) + 0.114 * float(rgb[2])
    return BLACK if luminance > 140 else WHITE


def render_matrix(matrix: Tensor, title: str = "", cell: int | None = None) -> Tensor:
    """One panel: ``title`` above the cells, chunk indices along the top and the left side."""
    a = torch.as_tensor(matrix, dtype=torch.float64)
    if a.dim() != 2 or a.numel() == 0:
        raise ValueError(f"a heatmap needs a non-empty 2-d matrix, got shape {tuple(a.shape)}")
    rows, cols = a.shape
    cell = cell or (40 if max(rows, cols) <= 10 else 24)
    text_scale = 2 if cell >= 26 else 1
    label_w = text_size(str(rows - 1), text_scale)[0] + 8
    title_h = text_size(title, 2)[1] + 10 if title else 0
    header_h = text_size("0", text_scale)[1] + 6
    height = title_h + header_h + rows * cell + 2
    width = max(label_w + cols * cell + 2, text_size(title, 2)[0] + 4)
    canvas = torch.full((height, width, 3), 255, dtype=torch.uint8)
    if title:
        draw_text(canvas, title, 2, 2, INK, scale=2)
    top = title_h + header_h
    for j in range(cols):
        w, _ = text_size(str(j), text_scale)
        draw_text(canvas, str(j), label_w + j * cell + (cell - w) // 2, title_h, INK, text_scale)
    for i in range(rows):
        w, h = text_size(str(i), text_scale)
        draw_text(canvas, str(i), label_w - w - 4, top + i * cell + (cell - h) // 2, INK, text_scale)
    colours = colormap(torch.nan_to_num(a, nan=0.0))
    for i in range(rows):
        for j in range(cols):
            y, x = top + i * cell, label_w + j * cell
            value = float(a[i, j])
            rgb = colours[i, j] if not math.isnan(value) else torch.tensor(GREY, dtype=torch.uint8)
            canvas[y + 1 : y + cell, x + 1 : x + cell] = rgb
            if math.isnan(value):
                continue
            text = str(int(round(100 * value)))
            scale = text_scale if text_size(text, text_scale)[0] <= cell - 4 else 1
            w, h = text_size(text, scale)
            draw_text(canvas, text, x + 1 + (cell - 1 - w) // 2, y + 1 + (cell - 1 - h) // 2, _text_colour(rgb), scale)
    return canvas


def compose(panels: Sequence[Tensor], gap: int = 16, caption: str = "") -> Tensor:
    """Panels side by side on white, top-aligned, with an optional caption underneath."""
    if not panels:
        raise ValueError("nothing to compose")
    panels_w = sum(p.shape[1] for p in panels) + gap * (len(panels) + 1)
    cap_scale = 2 if text_size(caption, 2)[0] + 2 * gap <= panels_w else 1
    cap_w, cap_h = text_size(caption, cap_scale)
    height = max(p.shape[0] for p in panels) + (cap_h + 12 if caption else 0) + gap
    width = max(panels_w, cap_w + 2 * gap)
    canvas = torch.full((height, width, 3), 255, dtype=torch.uint8)
    x = gap
    for panel in panels:
        canvas[gap // 2 : gap // 2 + panel.shape[0], x : x + panel.shape[1]] = panel
        x += panel.shape[1] + gap
    if caption:
        draw_text(canvas, caption, gap, height - cap_h - 8, INK, cap_scale)
    return canvas


CAPTION = "ROW I: AFTER UPDATE I  COLUMN J: TEST DATA OF CHUNK J  CELL: ACCURACY %"


def heatmap_image(matrices: dict[str, Tensor], caption: str = CAPTION) -> Tensor:
    """One panel per entry (``label -> matrix``), labelled with the label and the final average."""
    panels = []
    for label, matrix in matrices.items():
        a = torch.as_tensor(matrix, dtype=torch.float64)
        panels.append(render_matrix(a, f"{label}  ACC {100 * float(a[-1].nanmean()):.1f}%"))
    return compose(panels, caption=caption)


def write_heatmap(path: str | os.PathLike[str], matrices: dict[str, Tensor], caption: str = CAPTION) -> Path:
    """Render :func:`heatmap_image` and write it as a PNG."""
    return write_png(path, heatmap_image(matrices, caption))
