"""Data chunks on disk: the file formats ``retentive update --data`` reads, and a writer for them.

A chunk is one file, or a folder whose data files (sorted by name) are concatenated:

``.npz`` (NumPy) or ``.pt`` (a dict of tensors, read with ``torch.load(weights_only=True)``)
    ``inputs``   (N, ...) the samples
    ``targets``  (N,) integer class indices >= 0
    ``task_ids`` (N,) integer task ids >= 0, optional
    No other keys. Input dtypes: floating point -> float32; ``uint8`` means images -> float32
    divided by 255 (as torchvision's ``ToTensor``); other integers -> int64 (e.g. token ids);
    bool -> float32.

    Several input arrays (a model fed a dict, e.g. tokenised text) replace ``inputs`` by one
    key per array, ``inputs.<name>``: ``inputs.input_ids`` (N, L) and
    ``inputs.attention_mask`` (N, L) give each sample ``x = {"input_ids": ..., "attention_mask":
    ...}``; a dotted name nests further (``inputs.text.input_ids`` -> ``x["text"]["input_ids"]``).
    Every array has N rows and follows the dtype rules above, each on its own (store token ids
    and masks as integers, not ``uint8``, which means images). Text is padded to one fixed
    length per array (``padding="max_length"``): the memory stores one shape per input.
``.csv`` (tabular data)
    A header row; the column ``target`` holds the class index, the optional column ``task_id`` the
    task id, and every other column, in file order, is one float32 feature: inputs are (N, F).

Neither format can run code when read (NumPy with ``allow_pickle=False``, torch with
``weights_only=True``). Every problem is a :class:`~retentive.errors.DataError` naming the file.
"""

from __future__ import annotations

import csv
import io
import os
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from retentive.data import nested
from retentive.data.tensors import TensorChunk
from retentive.errors import DataError

SUFFIXES = (".npz", ".pt", ".csv")
KEYS = ("inputs", "targets", "task_ids")
INPUT_PREFIX = "inputs" + nested.SEPARATOR
TARGET_COLUMN = "target"
TASK_COLUMN = "task_id"


def convert_inputs(inputs: Tensor, source: str) -> Tensor:
    """Apply the documented input dtype rules (floats and uint8 images -> float32, ints -> int64)."""
    if inputs.dtype == torch.uint8:
        return inputs.float().div_(255.0)
    if inputs.dtype.is_floating_point or inputs.dtype == torch.bool:
        return inputs.float()
    if inputs.dtype.is_complex:
        raise DataError(f"{source}: inputs are {inputs.dtype}; expected a real (floating or integer) dtype")
    return inputs.long()


def _labels(values: Tensor, key: str, source: str, n: int) -> Tensor:
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise DataError(f"{source}: {key} are {values.dtype}; expected integer class indices")
    if values.dim() != 1 or values.shape[0] != n:
        raise DataError(f"{source}: {key} have shape {tuple(values.shape)}; expected ({n},), one per input")
    values = values.long()
    if n and int(values.min()) < 0:
        raise DataError(f"{source}: {key} hold {int(values.min())}; expected values >= 0")
    return values


def _unflatten_dicts(leaves: Mapping[str, Tensor]) -> dict[str, Any]:
    """``{"a.b": t, "c": u}`` -> ``{"a": {"b": t}, "c": u}`` (file keys name nested dict inputs)."""
    out: dict[str, Any] = {}
    for path, leaf in leaves.items():
        node = out
        *parents, last = path.split(nested.SEPARATOR)
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = leaf
    return out


def _split_inputs(tensors: Mapping[str, Any], source: str) -> Any:
    """The file's inputs: the tensor ``inputs``, or the dict the ``inputs.<name>`` keys make."""
    named = {key[len(INPUT_PREFIX) :]: value for key, value in tensors.items() if key.startswith(INPUT_PREFIX)}
    if not named:
        return tensors.get("inputs")
    if "inputs" in tensors:
        raise DataError(f"{source}: holds both 'inputs' and {sorted(INPUT_PREFIX + k for k in named)}; use one form")
    bad = sorted(k for k in named if any(not part for part in k.split(nested.SEPARATOR)))
    clash = sorted(k for k in named if any(other.startswith(k + nested.SEPARATOR) for other in named))
    if bad or clash:
        raise DataError(f"{source}: the input names {bad + clash} are empty or both an array and a group")
    return _unflatten_dicts(dict(sorted(named.items())))


def chunk_from_tensors(tensors: dict[str, Tensor], source: str) -> TensorChunk:
    """Check a ``{inputs | inputs.<name>..., targets[, task_ids]}`` dict and make a :class:`TensorChunk`."""
    unknown = sorted(k for k in tensors if k not in KEYS and not k.startswith(INPUT_PREFIX))
    if unknown:
        raise DataError(
            f"{source}: unexpected keys {unknown}; a chunk holds only {list(KEYS)} (or 'inputs.<name>' per input array)"
        )
    for key, value in tensors.items():
        if not torch.is_tensor(value):
            raise DataError(f"{source}: {key} is a {type(value).__name__}; expected a tensor")
    inputs = _split_inputs(tensors, source)
    for key, given in (("inputs", inputs), ("targets", tensors.get("targets"))):
        if given is None:
            raise DataError(
                f"{source}: the key {key!r} is missing; a chunk holds inputs, targets and optionally task_ids"
            )
    leaves = nested.flatten(inputs, "inputs")
    first = next(iter(leaves.values()))
    if first.dim() < 1 or first.shape[0] == 0:
        raise DataError(f"{source}: {next(iter(leaves))} have shape {tuple(first.shape)}; expected at least one sample")
    n = int(first.shape[0])
    for key, leaf in leaves.items():
        if leaf.dim() < 1 or leaf.shape[0] != n:
            raise DataError(
                f"{source}: {key} have shape {tuple(leaf.shape)}; expected {n} rows, as {next(iter(leaves))}"
            )
    targets = _labels(tensors["targets"], "targets", source, n)
    task_ids = tensors.get("task_ids")
    if task_ids is not None:
        task_ids = _labels(task_ids, "task_ids", source, n)
    converted = nested.tree_map(lambda leaf: convert_inputs(leaf, source).contiguous(), inputs)
    return TensorChunk(converted, targets, task_ids)


def _read_npz(path: Path) -> dict[str, Tensor]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: torch.from_numpy(np.ascontiguousarray(archive[key])) for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # not a zip, truncated, object arrays
        raise DataError(f"{path}: not a readable .npz of numeric arrays: {error}") from error


def _read_pt(path: Path) -> dict[str, Tensor]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # an unpickler refusal or a corrupt archive
        raise DataError(f"{path}: could not be read safely as tensors (weights_only=True): {error}") from error
    if not isinstance(payload, dict) or not all(isinstance(k, str) for k in payload):
        raise DataError(f"{path}: holds a {type(payload).__name__}; expected a dict of tensors keyed by {list(KEYS)}")
    return payload


def _read_csv(path: Path) -> dict[str, Tensor]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: not a readable CSV file: {error}") from error
    if not rows:
        raise DataError(f"{path}: empty; expected a header row with a {TARGET_COLUMN!r} column")
    header = [name.strip() for name in rows[0]]
    if TARGET_COLUMN not in header:
        raise DataError(f"{path}: the header {header} has no {TARGET_COLUMN!r} column (the class index)")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise DataError(f"{path}: the header repeats the columns {duplicates}")
    features = [i for i, name in enumerate(header) if name not in (TARGET_COLUMN, TASK_COLUMN)]
    if not features:
        raise DataError(f"{path}: no feature columns besides {TARGET_COLUMN!r} and {TASK_COLUMN!r}")
    inputs = np.empty((len(rows) - 1, len(features)), dtype=np.float32)
    labels: dict[str, np.ndarray] = {
        name: np.empty(len(rows) - 1, dtype=np.int64) for name in (TARGET_COLUMN, TASK_COLUMN) if name in header
    }
    for r, row in enumerate(rows[1:]):
        line = r + 2
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} fields; the header has {len(header)}")
        for j, i in enumerate(features):
            try:
                inputs[r, j] = float(row[i])
            except ValueError:
                raise DataError(f"{path}, line {line}, column {header[i]!r}: {row[i]!r} is not a number") from None
        for name, values in labels.items():
            text = row[header.index(name)]
            try:
                values[r] = int(text)
            except ValueError:
                raise DataError(f"{path}, line {line}, column {name!r}: {text!r} is not an integer") from None
    tensors = {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(labels[TARGET_COLUMN])}
    if TASK_COLUMN in labels:
        tensors["task_ids"] = torch.from_numpy(labels[TASK_COLUMN])
    return tensors


_READERS = {".npz": _read_npz, ".pt": _read_pt, ".csv": _read_csv}


def read_chunk_file(path: str | os.PathLike[str]) -> TensorChunk:
    """Read one ``.npz``, ``.pt`` or ``.csv`` chunk file."""
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown chunk format {path.suffix!r}; expected one of {list(SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return chunk_from_tensors(reader(path), str(path))


def chunk_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The data files of a chunk folder, sorted by name; hidden files are skipped, others refused."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    others = [p.name for p in files if p.suffix.lower() not in SUFFIXES or not p.is_file()]
    if others:
        raise DataError(f"{folder}: holds {others}, which are not chunk files ({', '.join(SUFFIXES)})")
    if not files:
        raise DataError(f"{folder}: the chunk folder holds no data files ({', '.join(SUFFIXES)})")
    return files


def concatenate(parts: list[TensorChunk], source: str) -> TensorChunk:
    """One chunk from several with the same input arrays (per-sample shapes, dtypes), all with or
    all without task ids."""
    first = parts[0]
    first_leaves = nested.flatten(first.inputs, "inputs")
    for index, part in enumerate(parts[1:], start=1):
        leaves = nested.flatten(part.inputs, "inputs")
        if list(leaves) != list(first_leaves):
            raise DataError(
                f"{source}: file {index} has the input arrays {list(leaves)}, file 0 has {list(first_leaves)}"
            )
        for key, leaf in leaves.items():
            expected = first_leaves[key]
            if leaf.shape[1:] != expected.shape[1:] or leaf.dtype != expected.dtype:
                what = "inputs" if key == "inputs" else key
                raise DataError(
                    f"{source}: file {index} has {what} of shape {tuple(leaf.shape[1:])} and dtype "
                    f"{leaf.dtype}, file 0 has {tuple(expected.shape[1:])} and {expected.dtype}"
                )
        if (part.task_ids is None) != (first.task_ids is None):
            raise DataError(f"{source}: some files have task_ids and others do not; give them to all or none")
    task_ids = None if first.task_ids is None else torch.cat([p.task_ids for p in parts])  # type: ignore[misc]
    return TensorChunk(nested.cat([p.inputs for p in parts]), torch.cat([p.targets for p in parts]), task_ids)


def read_chunk(path: str | os.PathLike[str]) -> TensorChunk:
    """Read a chunk: one file, or a folder whose files are concatenated in name order."""
    path = Path(path)
    if path.is_dir():
        files = chunk_files(path)
        parts = [read_chunk_file(file) for file in files]
        return parts[0] if len(parts) == 1 else concatenate(parts, f"{path} ({', '.join(f.name for f in files)})")
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return read_chunk_file(path)


def _csv_bytes(chunk: TensorChunk, path: Path) -> bytes:
    if not torch.is_tensor(chunk.inputs):
        raise DataError(f"{path}: CSV holds one tabular (N, F) input; write inputs with several arrays as .pt or .npz")
    if chunk.inputs.dim() != 2:
        raise DataError(f"{path}: CSV holds tabular (N, F) inputs; these have shape {tuple(chunk.inputs.shape)}")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    columns = [f"x{i}" for i in range(chunk.inputs.shape[1])] + [TARGET_COLUMN]
    columns += [TASK_COLUMN] if chunk.task_ids is not None else []
    writer.writerow(columns)
    inputs = chunk.inputs.tolist()
    targets = chunk.targets.tolist()
    task_ids = chunk.task_ids.tolist() if chunk.task_ids is not None else None
    for i, row in enumerate(inputs):
        writer.writerow([repr(float(v)) for v in row] + [targets[i]] + ([task_ids[i]] if task_ids is not None else []))
    return text.getvalue().encode("utf-8")


def _dicts_only(x: Any) -> bool:
    if torch.is_tensor(x):
        return True
    return isinstance(x, Mapping) and all(_dicts_only(v) for v in x.values())


def write_chunk(path: str | os.PathLike[str], chunk: TensorChunk) -> Path:
    """Write ``chunk`` in the format its suffix names, atomically (written beside, then renamed).

    Inputs are stored with their dtype, so ``uint8`` images stay compact and read back as floats
    in [0, 1]. Dict inputs (nested dicts too) are written as one ``inputs.<name>`` array each;
    tuple or list inputs cannot be named that way and are refused.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown chunk format {path.suffix!r}; expected one of {list(SUFFIXES)}")
    if not _dicts_only(chunk.inputs):
        raise DataError(f"{path}: chunk files name several input arrays by dict key; these inputs hold a tuple or list")
    tensors = {key: leaf.detach().cpu() for key, leaf in nested.flatten(chunk.inputs, "inputs").items()}
    tensors["targets"] = chunk.targets.detach().cpu()
    if chunk.task_ids is not None:
        tensors["task_ids"] = chunk.task_ids.detach().cpu()
    buffer = io.BytesIO()
    if suffix == ".npz":
        arrays: dict[str, Any] = {k: v.numpy() for k, v in tensors.items()}
        np.savez_compressed(buffer, **arrays)
        payload = buffer.getvalue()
    elif suffix == ".pt":
        torch.save({k: v.contiguous() for k, v in tensors.items()}, buffer)
        payload = buffer.getvalue()
    else:
        payload = _csv_bytes(chunk, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}"
    try:
        with open(staging, "xb") as handle:  # not tempfile: its 0600 mode would ignore the umask
            handle.write(payload)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return path
