"""A 3x5 pixel font (digits, letters, a few symbols) to label heatmaps without a plotting library."""

from __future__ import annotations

import torch
from torch import Tensor

GLYPH_WIDTH, GLYPH_HEIGHT = 3, 5

_GLYPHS: dict[str, str] = {
    "0": "111 101 101 101 111", "1": "010 110 010 010 111", "2": "111 001 111 100 111",
    "3": "111 001 111 001 111", "4": "101 101 111 001 001", "5": "111 100 111 001 111",
    "6": "111 100 111 101 111", "7": "111 001 001 010 010", "8": "111 101 111 101 111",
    "9": "111 101 111 001 111",
    "A": "010 101 111 101 101", "B": "110 101 110 101 110", "C": "011 100 100 100 011",
    "D": "110 101 101 101 110", "E": "111 100 110 100 111", "F": "111 100 110 100 100",
    "G": "011 100 101 101 011", "H": "101 101 111 101 101", "I": "111 010 010 010 111",
    "J": "001 001 001 101 010", "K": "101 101 110 101 101", "L": "100 100 100 100 111",
    "M": "101 111 111 101 101", "N": "110 101 101 101 101", "O": "010 101 101 101 010",
    "P": "110 101 110 100 100", "Q": "010 101 101 110 011", "R": "110 101 110 101 101",
    "S": "011 100 010 001 110", "T": "111 010 010 010 010", "U": "101 101 101 101 111",
    "V": "101 101 101 101 010", "W": "101 101 111 111 101", "X": "101 101 010 101 101",
    "Y": "101 101 010 010 010", "Z": "111 001 010 100 111",
    " ": "000 000 000 000 000", ".": "000 000 000 000 010", ",": "000 000 000 010 100",
    "-": "000 000 111 000 000", "+": "000 010 111 010 000", "%": "101 001 010 100 101",
    ":": "000 010 000 010 000", "(": "001 010 010 010 001", ")": "100 010 010 010 100",
    "/": "001 001 010 100 100", "_": "000 000 000 000 111", "=": "000 111 000 111 000",
    ">": "100 010 001 010 100", "<": "001 010 100 010 001", "#": "101 111 101 111 101",
    "±": "010 111 010 000 111", "?": "111 001 010 000 010",
}


def glyph(char: str) -> Tensor:
    """The ``(5, 3)`` bool bitmap of ``char`` (lower case drawn as upper case; unknown as '?')."""
    rows = _GLYPHS.get(char.upper(), _GLYPHS["?"]).split()
    return torch.tensor([[bit == "1" for bit in row] for row in rows], dtype=torch.bool)


def text_size(text: str, scale: int = 1) -> tuple[int, int]:
    """``(width, height)`` in pixels of ``text`` drawn at ``scale`` (one pixel column between glyphs)."""
    if not text:
        return 0, GLYPH_HEIGHT * scale
    return (len(text) * (GLYPH_WIDTH + 1) - 1) * scale, GLYPH_HEIGHT * scale


def draw_text(canvas: Tensor, text: str, x: int, y: int, color: tuple[int, int, int], scale: int = 1) -> None:
    """Draw ``text`` into the ``(H, W, 3)`` uint8 ``canvas`` with its top-left corner at ``(x, y)``;
    pixels falling outside the canvas are clipped."""
    colour = torch.tensor(color, dtype=torch.uint8)
    height, width = canvas.shape[0], canvas.shape[1]
    for k, char in enumerate(text):
        bitmap = glyph(char).repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        left = x + k * (GLYPH_WIDTH + 1) * scale
        top = y
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + bitmap.shape[0], height), min(left + bitmap.shape[1], width)
        if y0 >= y1 or x0 >= x1:
            continue
        mask = bitmap[y0 - top : y1 - top, x0 - left : x1 - left]
        region = canvas[y0:y1, x0:x1]
        region[mask] = colour
