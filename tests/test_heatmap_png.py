"""The PNG encoder (checked by decoding it by hand) and the heatmap renderer."""

from __future__ import annotations

import struct
import zlib

import pytest
import torch

from retentive.benchmarking.font import draw_text, glyph, text_size
from retentive.benchmarking.heatmap import colormap, heatmap_image, render_matrix, write_heatmap
from retentive.benchmarking.png import SIGNATURE, encode_png


def decode_png(data: bytes) -> torch.Tensor:
    """A reference decoder for what encode_png writes: 8-bit, filter type 0 on every row."""
    assert data[:8] == SIGNATURE
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.setdefault(kind, b"")
        chunks[kind] += body
        pos += 12 + length
    assert list(chunks)[-1] == b"IEND"
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    channels = {0: 1, 2: 3}[colour]
    assert depth == 8
    raw = torch.frombuffer(bytearray(zlib.decompress(chunks[b"IDAT"])), dtype=torch.uint8)
    rows = raw.reshape(height, 1 + width * channels)
    assert bool((rows[:, 0] == 0).all())
    return rows[:, 1:].reshape(height, width, channels)


def test_png_round_trip_rgb_and_grayscale():
    rgb = torch.randint(0, 256, (7, 5, 3), dtype=torch.uint8)
    assert torch.equal(decode_png(encode_png(rgb)), rgb)
    gray = torch.randint(0, 256, (3, 9), dtype=torch.uint8)
    assert torch.equal(decode_png(encode_png(gray)).squeeze(-1), gray)


def test_png_refuses_bad_pixels():
    with pytest.raises(ValueError, match="uint8"):
        encode_png(torch.zeros(2, 2, 3))
    with pytest.raises(ValueError, match="non-empty"):
        encode_png(torch.zeros(2, 2, 4, dtype=torch.uint8))


def test_colormap_ends_and_clamping():
    rgb = colormap(torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5]))
    assert rgb[0].tolist() == [68, 1, 84] and rgb[1].tolist() == [253, 231, 37]
    assert torch.equal(rgb[2], rgb[0]) and torch.equal(rgb[3], rgb[1]) and rgb[4].tolist() == [33, 145, 140]


def test_font_draws_its_bitmap():
    canvas = torch.zeros(5, 3, 3, dtype=torch.uint8)
    draw_text(canvas, "7", 0, 0, (255, 255, 255))
    assert torch.equal(canvas[..., 0] > 0, glyph("7"))
    assert text_size("10", 2) == (14, 10)
    draw_text(canvas, "88", 2, 3, (1, 2, 3))  # clipped at the border, no error


def test_cells_are_coloured_by_accuracy_and_nan_is_grey():
    matrix = torch.tensor([[1.0, float("nan")], [0.0, 0.5]])
    image = render_matrix(matrix, cell=30)
    assert image.dtype == torch.uint8 and image.shape[-1] == 3
    # find the cells by their exact colours
    def has(colour):
        return bool((image == torch.tensor(colour, dtype=torch.uint8)).all(-1).any())

    assert has([253, 231, 37]) and has([68, 1, 84]) and has([200, 200, 200]) and has([33, 145, 140])


def test_heatmap_png_has_one_panel_per_method(tmp_path):
    a = torch.eye(3)
    one = heatmap_image({"er": a}, caption="")
    two = heatmap_image({"er": a, "der++": a}, caption="")
    assert two.shape[1] > 1.8 * one.shape[1] and two.shape[0] == one.shape[0]
    path = write_heatmap(tmp_path / "h.png", {"er": a})
    assert torch.equal(decode_png(path.read_bytes()), heatmap_image({"er": a}))
