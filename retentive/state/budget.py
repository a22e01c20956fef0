"""Bounds on what reading a payload may allocate, checked before it is deserialised.

``torch.save`` writes a zip archive of *stored* (uncompressed) entries, and ``torch.load`` checks
each tensor's storage against the size of its entry. So a payload whose entries are all stored
and declare no more bytes, together, than the file holds cannot make the load allocate more than
about its own size. :func:`check_archive` refuses anything else before ``torch.load`` sees it (a
deflated entry of zeros expands a thousandfold before torch refuses it).

A tensor can still *declare* more elements than its storage holds (zero strides), which costs
nothing until something copies it. :func:`check_declared` refuses any tensor declaring more bytes
than its file holds, and a memory payload whose rows, together, do: the rows a memory restores
are never more than the bytes its file holds (4x for inputs stored as uint8 and restored as
float32).
"""

from __future__ import annotations

import io
import mmap
import struct
import zipfile
from typing import Any

import torch

from retentive.errors import StateError

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_SIGNATURE = b"PK\x03\x04"


def check_archive(data: bytes | mmap.mmap, where: str) -> None:
    """Refuse a payload that is not a zip of stored entries declaring at most ``len(data)`` bytes.

    Reads only the zip directory and the entries' local headers (no entry is decompressed);
    ``data`` may be a read-only map of the file, of which only those pages are read.
    Raises :class:`StateError` naming ``where`` (the file) and the offending entry.
    """
    try:
        infos = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data).infolist()  # type: ignore[arg-type]  # an mmap reads like a file
    except Exception as error:  # BadZipFile, or any malformed directory field
        raise StateError(f"state file {where!r} could not be read safely: not a torch zip archive ({error})") from error
    names: set[str] = set()
    total = 0
    for info in infos:
        if info.filename in names:
            raise StateError(
                f"state file {where!r} could not be read safely: it holds the entry {info.filename!r} twice"
            )
        names.add(info.filename)
        method = _local_method(data, info, where)
        if info.compress_type != zipfile.ZIP_STORED or method != zipfile.ZIP_STORED:
            raise StateError(
                f"state file {where!r} could not be read safely: it has the compressed entry {info.filename!r} (zip method "
                f"{max(info.compress_type, method)}); torch.save writes stored entries only, and a compressed "
                "one could expand to any size"
            )
        if info.compress_size != info.file_size:
            raise StateError(
                f"state file {where!r} could not be read safely: the stored entry {info.filename!r} declares {info.file_size} bytes "
                f"but occupies {info.compress_size}"
            )
        total += info.file_size
    if total > len(data):
        raise StateError(
            f"state file {where!r} could not be read safely: its entries declare {total} bytes in a file of "
            f"{len(data)} bytes"
        )


def _local_method(data: bytes | mmap.mmap, info: zipfile.ZipInfo, where: str) -> int:
    """The compression method in an entry's local header (the one a zip reader may trust instead)."""
    start = info.header_offset
    header = data[start : start + _LOCAL_HEADER.size]
    if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
        raise StateError(
            f"state file {where!r} could not be read safely: the zip entry {info.filename!r} has no local header "
            f"at offset {start}"
        )
    return int(_LOCAL_HEADER.unpack(header)[3])


def check_declared(payload: Any, file_bytes: int, where: str, memory: bool = False) -> None:
    """Refuse tensors in ``payload`` that declare more bytes than the file's ``file_bytes``.

    With ``memory`` (the memory payload), the rows under ``payload["storage"]`` must also fit the
    file together: they are copied when the memory is restored.
    """
    largest = max(_tensor_sizes(payload), default=(0, ()))
    if largest[0] > file_bytes:
        raise StateError(
            f"state file {where!r} could not be read safely: it declares a tensor of shape {largest[1]} ({largest[0]} bytes) in a file of "
            f"{file_bytes} bytes; a saved tensor's data is in its file"
        )
    storage = payload.get("storage") if memory and isinstance(payload, dict) else None
    if isinstance(storage, dict):
        rows = sum(_nbytes(value) for value in storage.values() if torch.is_tensor(value))
        if rows > file_bytes:
            raise StateError(
                f"state file {where!r} could not be read safely: it declares {rows} bytes of memory rows in a file of {file_bytes} bytes; "
                "saved rows are in their file"
            )


def _nbytes(tensor: torch.Tensor) -> int:
    return int(tensor.numel()) * tensor.element_size()


def _tensor_sizes(value: Any) -> list[tuple[int, tuple[int, ...]]]:
    """Every tensor's declared bytes and shape; each container is visited once (a pickle may
    reference one container many times, which a plain walk would follow exponentially often)."""
    sizes: list[tuple[int, tuple[int, ...]]] = []
    seen: set[int] = set()
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if torch.is_tensor(item):
            sizes.append((_nbytes(item), tuple(item.shape)))
            continue
        if not isinstance(item, (dict, list, tuple)) or id(item) in seen:
            continue
        seen.add(id(item))
        children = item.values() if isinstance(item, dict) else item
        stack.extend(children)
    return sizes
