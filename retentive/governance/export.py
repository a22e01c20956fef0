"""Writing a state's memory to a folder a person can inspect: what exactly is kept about whom.

    <folder>/index.csv     one line per stored sample: slot, sample_id, label, task_id, source, row,
                           stored_in_update, and its image file if it has one
    <folder>/index.json    the same records, and the state they were read from
    <folder>/samples.npz   every stored array: inputs (one array per input leaf), targets,
                           task_ids, sample_ids, and any metadata (logits, features)
    <folder>/images/<sample_id>.png   inputs that are images ((1|3, H, W) or (H, W), values in [0, 1])

The folder must not exist yet, and appears whole: it is written beside its name and renamed.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from retentive.data import nested
from retentive.governance.reading import MemoryView, read_memory
from retentive.state.staging import new_staging_folder, rename_noreplace

INDEX_FIELDS = ("slot", "sample_id", "label", "task_id", "source", "row", "stored_in_update", "image")


def _as_image(sample: Tensor) -> np.ndarray | None:
    """``sample`` as an 8-bit grey or RGB image array, or ``None`` if it is not an image in [0, 1]."""
    if sample.dim() == 3 and sample.shape[0] in (1, 3):
        sample = sample.permute(1, 2, 0)
    if sample.dim() == 3 and sample.shape[-1] == 1:
        sample = sample[..., 0]
    if sample.dim() not in (2, 3) or not sample.dtype.is_floating_point or min(sample.shape[:2]) < 4:
        return None
    if float(sample.min()) < 0.0 or float(sample.max()) > 1.0:
        return None
    return (sample * 255.0).round().to(torch.uint8).cpu().numpy()


def _write_images(inputs: Any, records: list[dict[str, Any]], folder: Path) -> None:
    if not torch.is_tensor(inputs):  # nested inputs (text): the arrays are in samples.npz
        return
    try:
        from PIL import Image
    except ImportError:  # pillow is optional: the arrays are in samples.npz
        return
    (folder / "images").mkdir()
    for record, sample in zip(records, inputs):
        image = _as_image(sample)
        if image is None:
            continue
        name = f"images/{record['sample_id']}.png"
        Image.fromarray(image).save(folder / name)
        record["image"] = name


def export_view(view: MemoryView, output: str | os.PathLike[str]) -> Path:
    """Write ``view``'s memory to the new folder ``output`` (see the module docstring)."""
    target = Path(output)
    if os.path.lexists(target):
        raise FileExistsError(f"the export folder {str(target)!r} already exists; choose a new one")
    staging = new_staging_folder(target)
    staging.mkdir(parents=True)
    try:
        memory, records = view.memory, view.rows()
        arrays = {key: memory.decoded(key).cpu().numpy() for key in memory.keys if not key.startswith("inputs")}
        inputs = memory.decoded("inputs") if len(memory) else None
        for path, leaf in (nested.flatten(inputs, "inputs") if inputs is not None else {}).items():
            arrays[path] = leaf.cpu().numpy()
        np.savez(staging / "samples.npz", **arrays)
        _write_images(inputs, records, staging)
        with open(staging / "index.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=INDEX_FIELDS)
            writer.writeheader()
            writer.writerows({field: record.get(field, "") for field in INDEX_FIELDS} for record in records)
        shown = view.home.location if view.home else view.url or view.folder
        about = {"location": str(shown), "version": view.version}
        about["state_version"] = view.state.version
        with open(staging / "index.json", "w", encoding="utf-8") as handle:
            json.dump({"state": about, "samples": records}, handle, indent=2)
        rename_noreplace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def export_memory(location: str | os.PathLike[str], output: str | os.PathLike[str], version: str | None = None) -> Path:
    """Write the memory of ``location`` (a state folder, or a model home's ``version``) to ``output``."""
    return export_view(read_memory(location, version), output)
