"""Loading a script of the repository (benchmarks/, scripts/docs/) as a module, to test its pieces."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_script(relative: str, name: str) -> ModuleType:
    """``ROOT/relative`` imported as module ``name``: registered in ``sys.modules`` before it runs,
    because dataclasses look their module up while it loads, and with the script's folder on
    ``sys.path``, as ``python relative`` has it (benchmarks import their shared ``quiet_cpu``)."""
    folder = str((ROOT / relative).parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    assert spec is not None and spec.loader is not None, relative
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def write_gate_pipeline_chunks(folder: Path, mnist_train, name: str) -> Path:
    """The gate-cost pipeline's three chunks (benchmarks/gate_cost.py, the third harmful) as chunk files."""
    from retentive.data.files import write_chunk

    bench = load_script("benchmarks/gate_cost.py", name)
    for index, chunk in enumerate(bench.pipeline_chunks(mnist_train, chunks=3, per_chunk=1000, harmful=2)):
        write_chunk(folder / f"chunk_{index}.npz", chunk)
    return folder
