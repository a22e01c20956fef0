"""A minimal PNG encoder (8-bit RGB or grayscale, no interlace): zlib and struct, no new dependency.

A PNG is a signature and chunks ``length | type | data | crc32``: IHDR (size and pixel format),
IDAT (the zlib-compressed rows, each prefixed by its filter type, 0 = none here) and IEND.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import torch
from torch import Tensor

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type (0 grayscale, 2 RGB)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: Tensor) -> bytes:
    """Encode ``(H, W, 3)`` RGB or ``(H, W)`` grayscale uint8 pixels as PNG bytes."""
    pixels = torch.as_tensor(pixels)
    if pixels.dtype != torch.uint8:
        raise ValueError(f"PNG pixels must be uint8, got {pixels.dtype}")
    if pixels.dim() == 2:
        pixels = pixels.unsqueeze(-1)
    if pixels.dim() != 3 or pixels.shape[-1] not in _COLOR_TYPES or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(f"PNG pixels must be (H, W), (H, W, 1) or (H, W, 3) and non-empty, got {tuple(pixels.shape)}")
    height, width, channels = (int(s) for s in pixels.shape)
    rows = torch.cat([torch.zeros(height, 1, dtype=torch.uint8), pixels.reshape(height, width * channels)], dim=1)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    raw = rows.contiguous().numpy().tobytes()
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def write_png(path: str | os.PathLike[str], pixels: Tensor) -> Path:
    """Write ``pixels`` (see :func:`encode_png`) to ``path``, creating its folder."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encode_png(pixels))
    return target
