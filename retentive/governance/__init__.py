"""Memory governance: see which samples a state's replay memory holds, remove some on request,
and export the memory for a person to inspect (``retentive memory list|delete|export``).

Every stored row carries a stable sample id and its source chunk (:mod:`retentive.memory.identity`);
these functions read a state folder or a model home and, for a deletion, write a new state whole
or not at all (docs/how-to/memory.md says what a deletion does not undo).
"""

from retentive.governance.deletion import WEIGHTS_NOTE, Deletion, delete_samples
from retentive.governance.export import export_memory
from retentive.governance.reading import MemoryView, read_memory


def list_memory(location: str, version: str | None = None) -> list[dict[str, object]]:
    """One record per stored sample of ``location``'s memory (slot order): ``slot``, ``sample_id``,
    ``label``, ``task_id``, ``source`` (chunk fingerprint), ``row`` (in that chunk) and
    ``stored_in_update`` (the update that offered it; ``-1``: before any, e.g. an import)."""
    return read_memory(location, version).rows()


__all__ = ["WEIGHTS_NOTE", "Deletion", "MemoryView", "delete_samples", "export_memory", "list_memory", "read_memory"]
