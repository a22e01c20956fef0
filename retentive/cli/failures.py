"""The command line's one error path: which exceptions become one line, and cleaning up after them.

A :class:`~retentive.errors.RetentiveError`, a Lightning configuration error (an accelerator or
strategy the machine cannot run), a ``ValueError`` raised on purpose by retentive's own argument
checks and an ``OSError`` naming a file are the user's to fix: each becomes one line naming what
is at fault, in the command line's terms (``--output-state``, not ``output_state_folder``). Any
other exception is a defect and keeps its traceback, as does everything under ``--debug``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

_PACKAGE = Path(__file__).resolve().parents[1]


def _raised_by_retentive(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in retentive's own code."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    try:
        return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        return False


def is_lightning_configuration_error(error: BaseException) -> bool:
    return any(klass.__name__ == "MisconfigurationException" for klass in type(error).__mro__)


def in_user_terms(message: str, flags: Mapping[str, str]) -> str:
    """``message`` on one line, with the Python argument names in ``flags`` replaced by their flags."""
    for name, flag in flags.items():
        message = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w])", flag, message)
    return " ".join(message.split())


def one_line(error: BaseException, flags: Mapping[str, str] = {}) -> str | None:  # noqa: B006 - read only
    """The one-line message for an error the user can fix, or ``None`` for a defect."""
    from retentive.errors import RetentiveError

    if isinstance(error, KeyboardInterrupt):  # UpdateInterrupted says whether a commit happened
        return str(error) or "interrupted; nothing was written"
    if isinstance(error, RetentiveError):
        text = str(error)
    elif is_lightning_configuration_error(error):
        text = f"the Trainer settings were refused: {error}"
    elif isinstance(error, ValueError) and _raised_by_retentive(error):
        text = str(error)
    elif isinstance(error, OSError) and error.filename is not None:
        text = f"{error.filename}: {error.strerror or error}"
    else:
        return None
    return in_user_terms(text, flags)


#: Another writer holds or changed the target (sysexits' EX_TEMPFAIL): nothing was written, and
#: running the same command again, once the other writer is done, may succeed.
RETRY = 75

#: ``retentive watch`` stopped by SIGTERM (128 + 15, the shell's convention): every chunk it
#: finished is recorded, an update in flight was abandoned before its commit (or committed and
#: recorded); the next start takes that chunk again first. Ctrl-C stops it the same way, with 130.
TERMINATED = 143


def exit_code(error: BaseException) -> int:
    """The exit code for a reported error: 130 for an interrupt that committed nothing, 0 for one
    that arrived during a commit (the commit completed), 75 when another writer holds or changed
    the state (nothing written; a retry builds on the other writer's state), 4 when a gate rejected
    the candidate (the current version still serves), 1 otherwise."""
    from retentive.cli.gating import GATE_REJECTED
    from retentive.errors import StateConflictError, StateLockedError
    from retentive.gates.errors import GateRejected

    if isinstance(error, GateRejected):
        return GATE_REJECTED
    if isinstance(error, KeyboardInterrupt):
        return 0 if getattr(error, "committed", False) else 130
    if isinstance(error, (StateConflictError, StateLockedError)):
        return RETRY
    return 1


def created_folders(command: ModuleType, args: argparse.Namespace) -> list[Path]:
    """The folders ``command`` may create that do not exist yet (outermost first)."""
    outputs: Any = getattr(command, "outputs", None)
    if outputs is None:
        return []
    new: list[Path] = []
    for folder in outputs(args):
        if folder is None:
            continue
        folder = Path(folder)
        missing = [parent for parent in (folder, *folder.parents) if not parent.exists()]
        new.extend(reversed(missing))
    return list(dict.fromkeys(new))


def remove_if_empty(folders: Iterable[Path]) -> None:
    """Remove each folder that holds nothing but empty folders, innermost first; keep the rest."""
    for folder in sorted(set(folders), key=lambda path: len(path.parts), reverse=True):
        if not folder.is_dir():
            continue
        if any(path.is_file() or path.is_symlink() for path in folder.rglob("*")):
            continue
        for sub in sorted(folder.rglob("*"), key=lambda path: len(path.parts), reverse=True):
            sub.rmdir()
        folder.rmdir()
