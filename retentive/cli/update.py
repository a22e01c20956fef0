"""``retentive update``: one update on one data chunk, configured by a YAML file.

A retraining pipeline runs this once per new chunk, each time in a new process: it resumes from
the state folder the previous run wrote (``--input-state``) and writes a new one
(``--output-state``); the input is never modified.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retentive.cli.arguments import (
    add_chunk,
    add_memory_options,
    add_overrides,
    add_state_folders,
    add_threads,
    memory_overrides,
    non_negative_int,
)
from retentive.cli.gating import (
    add_gate_options,
    add_registry_options,
    build_gate,
    open_registry,
    prepare_home,
    report_rejection,
)
from retentive.cli.locations import is_local

EPILOG = """\
exit codes: 0 the update finished and the new state folder is written (also when Ctrl-C arrived
during the commit: the commit completes first and one line says so); 1 a retentive error (bad
config, data or state folder, Trainer settings this machine cannot run, or an in-place update whose
folder another update or a rollback changed since it was read; one line on stderr, nothing is
written); 2 bad usage of the command line; 4 the gate rejected the candidate (one line on stdout:
the current version still serves, the candidate is kept as the challenger with its gate report);
130 interrupted (Ctrl-C) before the commit: one line, nothing was written.

the first chunk of a pipeline: omit --input-state. If the folder of --output-state already holds
other state folders (a pipeline's earlier chunks), a missing --input-state is almost always a
mistake and is refused; pass --from-scratch to start a new model there on purpose.

an interrupted update run with --resume leaves a checkpoint beside --output-state: rerun the same
command with --resume to continue from its last completed epoch, or with --fresh to discard it.

gates: in a model home (a URL, or a local folder: a gated update into an absent or empty
--output-state folder makes it one), --gate max_drop=2 --gate holdout=0.1 (or the config's gate:
section) promotes the new state only if it passes on held-out data; else the current version keeps
serving and exit code 4 says so.
--registry URI mirrors each decision into an MLflow registry (docs/how-to/gates-and-registry.md):
  retentive update --config configs/er.yaml --data chunks/day3.npz --input-state home \\
      --output-state home --gate max_drop=2 --gate holdout=0.1 --registry http://127.0.0.1:5000

state at URLs: --input-state and --output-state also take s3://bucket/prefix (pip install
'retentive[s3]'; credentials and AWS_ENDPOINT_URL from the environment) and other fsspec URLs.

example, one chunk after another:
  retentive update --config configs/der.yaml --data chunks/day1.npz --output-state state/day1
  retentive update --config configs/der.yaml --data chunks/day2.npz --input-state state/day1 \\
      --output-state state/day2 --val-data chunks/val/
"""


#: Python argument names in library messages -> the flags a user of this command types
FLAGS = {
    "output_state_folder": "--output-state",
    "input_state_folder": "--input-state",
    "resume=True": "--resume",
    "val_dataset": "--val-data",
    "train_dataset": "--data",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    _add_inputs(parser)
    add_overrides(
        parser,
        "override one config value, by dotted key; VALUE is YAML (repeatable), "
        "e.g. --set optimizer.init_args.lr=0.01 --set logger.init_args.save_dir=runs",
    )
    parser.add_argument(
        "--summary",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the result as JSON (updater, samples, seconds, validation accuracy, output state)",
    )
    add_memory_options(parser)
    add_threads(parser)
    add_gate_options(parser)
    add_registry_options(parser)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="write a checkpoint after every epoch beside --output-state, and if an earlier run of this same "
        "update was interrupted, continue from its last completed epoch instead of starting over",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="discard the checkpoint an interrupted run left beside --output-state and start the update over",
    )
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="start a new model although the folder of --output-state holds other state folders (see below)",
    )


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    """What one update reads and writes: the config, the chunks, the state folders and the task id."""
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        metavar="CONFIG",
        help="YAML config naming the updater, model, loss, optimizer, scheduler, trainer settings and "
        "logger by class_path/init_args (see configs/)",
    )
    add_chunk(parser)
    add_state_folders(
        parser,
        input_help="the state folder the previous update wrote (model, memory, learner state), or its URL "
        "(s3://bucket/prefix, any fsspec filesystem); omit it for the first chunk",
        output_help="where this update's state folder goes, a folder or a URL (s3://bucket/prefix); it must not "
        "exist yet (a URL: hold no state yet) and appears whole or not at all",
    )
    parser.add_argument(
        "--task-id",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="the chunk's task id (samples with their own task_ids keep them) [default: the number of updates done before]",
    )
    parser.add_argument(
        "--val-data",
        type=Path,
        default=None,
        metavar="CHUNK",
        help="a validation chunk, same format as --data: its accuracy is logged after each epoch and printed at the end",
    )


def outputs(args: argparse.Namespace) -> list[Path]:
    """The folders a run may create; a failed run removes those it left empty."""
    local = [args.output_state.parent] if is_local(args.output_state) else []
    return [*local, Path("tb_logs"), *([args.summary.parent] if args.summary else [])]


def check_pipeline(args: argparse.Namespace) -> None:
    """Refuse to start over silently: a leftover checkpoint, or a second chunk without its input.

    Runs before anything is built, so that a refusal costs nothing and changes nothing.
    """
    from retentive.errors import StateError
    from retentive.state.discovery import earlier_states
    from retentive.state.resume import checkpoint_root, leftover_epochs

    if args.resume and args.fresh:
        raise StateError("--resume continues an interrupted update and --fresh discards it: pass one of them")
    if args.from_scratch and args.input_state is not None:
        raise StateError(
            f"--from-scratch starts a new model, but --input-state {str(args.input_state)!r} continues one: "
            "pass one of them"
        )
    if not is_local(args.output_state):  # a URL: StateLocations probes it when the updater is built
        return
    epochs = leftover_epochs(args.output_state)
    if epochs is not None and not args.resume and not args.fresh:
        raise StateError(
            f"an interrupted run of this update left a checkpoint after epoch {epochs} in "
            f"{str(checkpoint_root(args.output_state))!r}: pass --resume to continue from epoch {epochs}, "
            "or --fresh to discard it"
        )
    if args.input_state is None and not args.from_scratch:
        earlier = earlier_states(args.output_state)  # oldest first, by the states' own counters and times
        if earlier:
            shown = ", ".join(p.name for p in earlier[-3:])
            raise StateError(
                f"no --input-state, but {str(args.output_state.parent)!r} holds state folders of earlier updates "
                f"({shown}): pass --input-state {str(earlier[-1])!r} to continue the pipeline, or --from-scratch "
                "to start a new model"
            )


def _announce_resume(args: argparse.Namespace) -> None:
    from retentive.state.resume import leftover_epochs

    if not is_local(args.output_state):
        return
    epochs = leftover_epochs(args.output_state)
    if args.fresh and epochs is not None:
        from retentive.state.resume import discard_checkpoints

        discard_checkpoints(args.output_state)
        print(f"retentive update: discarded the checkpoint after epoch {epochs}; starting the update over", flush=True)


@contextlib.contextmanager
def _report_resume() -> Iterator[None]:
    """Print the resume module's INFO line (which checkpoint, after which epoch) once it is verified."""
    import logging
    import sys

    from retentive.state import resume

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("retentive update: %(message)s"))
    previous = resume.log.level
    resume.log.addHandler(handler)
    resume.log.setLevel(logging.INFO)
    try:
        yield
    finally:
        resume.log.removeHandler(handler)
        resume.log.setLevel(previous)


def runtime_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The updater arguments the command line decides, not the config."""
    return {"input_state_folder": args.input_state, "output_state_folder": args.output_state, "resume": args.resume}


def check_fits(model: Any, chunk: Any, path: Path) -> None:
    """Run the model on one sample before training, so that data of the wrong shape or dtype is a
    one-line error naming the file rather than a traceback from inside the training loop."""
    import torch

    from retentive.data import nested
    from retentive.errors import DataError
    from retentive.models.modes import evaluating

    try:
        with evaluating(model):
            model(nested.index(chunk.inputs, slice(0, 1)))  # a tensor or nested inputs (inputs.<name> arrays)
    except (RuntimeError, TypeError, ValueError, IndexError, KeyError) as error:
        if torch.is_tensor(chunk.inputs):
            what = f"inputs of shape {tuple(chunk.inputs.shape[1:])} and dtype {chunk.inputs.dtype}"
        else:
            what = nested.describe(nested.flatten(chunk.inputs, "inputs"), batched=True)
        raise DataError(f"{path}: {what} do not fit the model {type(model).__name__}: {error}") from error


def trainer_refusal(error: Exception, config: Any) -> Exception | None:
    """A Trainer setting this machine cannot run, as a config error naming the key and its value
    (``trainer.accelerator``, with ``--set`` named when the value came from the command line)."""
    from retentive.cli.failures import is_lightning_configuration_error

    text = " ".join(str(error).split())
    settings = config.trainer
    if "strategy=" in text and isinstance(error, ValueError):
        return config.source.error("trainer.strategy", f"{settings.get('strategy')!r} is refused: {text}")
    if not is_lightning_configuration_error(error):
        return None
    named = [key for key in ("accelerator", "devices", "strategy", "precision", "num_nodes") if key in settings]
    key = next((k for k in named if str(settings[k]).lower() in text.lower() or k in text.lower()), None)
    if key is None:
        key = named[0] if named else ""
    shown = ", ".join(f"{k}={settings[k]!r}" for k in named) or "the updater's defaults"
    return config.source.error(
        f"trainer.{key}" if key else "trainer", f"Lightning refused the Trainer settings ({shown}): {text}"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from retentive.cli.config import build_updater, load_config
    from retentive.data.files import read_chunk
    from retentive.state.discovery import StartsFreshWarning

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    check_pipeline(args)
    config = load_config(args.config, [*args.overrides, *memory_overrides(args)])
    gate = build_gate(args, config)  # an unknown criterion or a gate without held-out data: refused now
    registry = open_registry(args)  # an unreachable registry: refused now
    prepare_home(args, gate)  # a gated update into an absent or empty folder: a new model home
    updater = build_updater(config, **runtime_arguments(args))  # checks the state folders first
    train = read_chunk(args.data)
    check_fits(updater.model, train, args.data)
    val = None
    if args.val_data is not None:
        val = read_chunk(args.val_data)
        check_fits(updater.model, val, args.val_data)
    for path, chunk in zip(args.gate_data, [] if gate is None or gate.data is None else gate.data):
        check_fits(updater.model, chunk, path)
    _announce_resume(args)
    before = updater.state_version
    try:
        with warnings.catch_warnings():  # check_pipeline refused a fresh start beside earlier states unless asked
            warnings.simplefilter("ignore", StartsFreshWarning)
            return _update_and_report(args, config, updater, train, val, gate, registry)
    except KeyboardInterrupt as error:  # after update() returned: it committed, and nothing undoes that
        if getattr(error, "committed", False) or updater.state_version == before:
            raise
        from retentive.state.interrupts import UpdateInterrupted

        raise UpdateInterrupted(
            f"interrupted after the new state was committed to {str(args.output_state)!r}; the update is complete",
            committed=True,
        ) from None


def _update_and_report(
    args: argparse.Namespace, config: Any, updater: Any, train: Any, val: Any, gate: Any = None, registry: Any = None
) -> int:
    import torch

    from retentive.errors import DataError
    from retentive.evaluation import accuracy
    from retentive.gates import GateRejected
    from retentive.state.interrupts import ignore_sigint

    start = time.perf_counter()
    try:
        with _report_resume():
            model = updater.update(train, val_dataset=val, task_id=args.task_id, gate=gate, registry=registry)
        # committed: a Ctrl-C from here to the process's exit must not make the exit status say otherwise
        args.restore_sigint = ignore_sigint()
    except GateRejected as rejected:  # the challenger is kept; the current version still serves
        args.restore_sigint = ignore_sigint()
        return report_rejection(args, rejected, _summary(args, updater, train, time.perf_counter() - start, None))
    except DataError as error:  # the chunk checks speak of "training" and "validation": name the file
        text = str(error)
        path = args.val_data if text.startswith("validation") and args.val_data is not None else args.data
        raise DataError(text if str(path) in text else f"{path}: {text}") from error
    except Exception as error:
        refusal = trainer_refusal(error, config)
        if refusal is None:
            raise
        raise refusal from error
    seconds = time.perf_counter() - start
    val_accuracy = None
    if val is not None:
        device = next(iter(model.parameters()), torch.empty(0)).device
        val_accuracy = accuracy(model, val, device=device)
    summary = _summary(args, updater, train, seconds, val_accuracy)
    line = f"retentive update: {summary['updater']}, update {updater.updates_done}, {len(train)} samples in {seconds:.1f} s"
    if val_accuracy is not None:
        line += f"; validation accuracy {100 * val_accuracy:.2f}% on {len(val)} samples"
    report = getattr(updater, "gate_report", None)
    if report is not None:
        line += f"; {report.summary()}"
        summary["gate"] = report.as_dict()
    if updater.global_rank != 0:  # under DDP every rank runs this command; rank 0 reports
        return 0
    print(f"{line}; state -> {args.output_state}", flush=True)
    if args.summary is not None:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


def _summary(
    args: argparse.Namespace, updater: Any, train: Any, seconds: float, val_accuracy: float | None
) -> dict[str, Any]:
    """The result as ``--summary`` writes it."""
    return {
        "config": str(args.config),
        "updater": type(updater).__name__,
        "data": str(args.data),
        "samples": len(train),
        "task_id": updater.learner.task_id,
        "updates_done": updater.updates_done,
        "seconds": round(seconds, 3),
        "val_data": None if args.val_data is None else str(args.val_data),
        "val_accuracy": val_accuracy,
        "input_state": None if args.input_state is None else str(args.input_state),
        "output_state": str(args.output_state),
    }
