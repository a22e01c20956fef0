"""The ``retentive`` command: ``retentive [--debug] COMMAND [options]``, one module per command.

Each command module in this package defines ``configure(parser)`` (argparse only: it must import
neither torch nor Lightning, so that ``--help`` and usage errors answer at once) and
``run(args) -> exit code``, and may define ``outputs(args)``, the folders it creates (removed again
when the command fails and leaves them empty). Only the command being run is configured.

Exit codes: 0 success; 1 an error the user can fix (bad config, data, state folder, Trainer
settings; one line on stderr naming the flag or file and the value at fault, a traceback only with
``--debug``); 2 bad usage of the command line; 3 (``retentive shift`` only) a shift was detected;
75 another run holds or changed the state (locked, or a conflict): nothing was written, run again
to build on its result; 130 interrupted (SIGINT) with nothing committed; 141 the reader of the
output went away (``| head``), what the command did stays done. A SIGINT that arrives while a state is being
committed is held until the commit is complete: the command then prints one line saying so and
exits 0.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from retentive._version import __version__

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("retentive.cli.demo", "Split-MNIST (or Seq-CIFAR-10) demo: one update per chunk, each in a fresh process"),
    "update": ("retentive.cli.update", "update a model on one data chunk, configured by a YAML file"),
    "inspect": (
        "retentive.cli.inspect",
        "show a state's manifest, files, memory classes and verification; --history, --lineage",
    ),
    "benchmark": ("retentive.cli.benchmark", "benchmark methods x scenarios x seeds through state folders"),
    "evaluate": ("retentive.cli.evaluate", "evaluate saved state folders on a scenario's test data"),
    "import-renate": ("retentive.cli.import_renate", "convert a Renate 0.5.2 state folder into a retentive one"),
    "rollback": (
        "retentive.cli.rollback",
        "serve the previous version again: of a model home, a state URL, or a folder updated in place",
    ),
    "promote": (
        "retentive.cli.promote",
        "make a version of a model home (e.g. the challenger a gate kept) the one served",
    ),
    "shift": (
        "retentive.cli.shift",
        "test whether a new chunk differs from a state folder's replay memory (exit 3: shift)",
    ),
    "memory": (
        "retentive.cli.memory",
        "list the samples a state's replay memory holds, delete some (a new version), or export them",
    ),
    "tune": (
        "retentive.cli.tune",
        "search hyperparameters for one update (Syne Tune trials in parallel); keep the best",
    ),
}
DESCRIPTION = "retentive: update a PyTorch model on each new chunk of data without forgetting the earlier ones."
EPILOG = (
    "exit codes: 0 success; 1 an error you can fix (bad config, data, state folder, missing MNIST, Trainer "
    "settings this machine cannot run), one line on stderr; 2 bad usage; 3 (`retentive shift`) shift detected; 4 (`retentive update --gate`) "
    "the gate rejected the candidate: the current version still serves, the candidate is the challenger; "
    "75 another run holds or changed the state, nothing written: run again; 130 interrupted, nothing committed "
    "(a Ctrl-C during a commit lets it finish: exit 0); 141 the output's reader went away. "
    "`retentive COMMAND --help` explains a command."
)
_DEBUG_HELP = "on an error, show the full traceback instead of one line"


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option), if it is one."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The parser; only ``command``'s options are configured (``"*"``: every command's)."""
    parser = argparse.ArgumentParser(prog="retentive", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"retentive {__version__}")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module)
        if command in ("*", name):
            sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
            importlib.import_module(module).configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; see the module docstring for the exit codes."""
    from retentive.cli.failures import created_folders, exit_code, one_line, remove_if_empty

    as_program = argv is None  # the process's own command line: its signal handlers are the command's
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    command = importlib.import_module(args._module)
    new_folders = created_folders(command, args)
    code = 1
    try:
        from retentive.quiet import quiet_lightning

        with quiet_lightning():
            code = int(command.run(args) or 0)
            sys.stdout.flush()  # a reader that went away (`| head -1`) shows here, not at exit
    except BrokenPipeError:
        from retentive.cli.pipes import closed_stdout, exit_quietly

        if not closed_stdout():
            raise
        code = exit_quietly()
    except BaseException as error:
        message = None if getattr(args, "debug", False) else one_line(error, getattr(command, "FLAGS", {}))
        if message is None:
            raise
        code = exit_code(error)  # 130: interrupted, nothing committed; 0: interrupted after the commit
        print(f"retentive {args.command}: {'error: ' if code else ''}{message}", file=sys.stderr)
    finally:
        if code != 0:
            remove_if_empty(new_folders)
        restore_sigint = getattr(args, "restore_sigint", None)  # set once a command committed
        if restore_sigint is not None and not as_program:
            restore_sigint()
    return code
