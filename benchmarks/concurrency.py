"""Concurrency benchmark: W writers and R readers on ONE state location for T seconds.

    python benchmarks/concurrency.py --writers 3 --readers 2 --seconds 60 --where local,s3

Run once per location: ``local``, a state folder updated in place (input_state_folder ==
output_state_folder, as Renate pipelines run), and ``s3``, one ``s3://`` URL on a local moto server
(127.0.0.1, its own process). Each writer process loops: build a DER updater on the location
(tiny MNIST MLP, memory 50, one epoch on its own 300 real MNIST samples, one thread, no logger or
progress bar), ``update()``, record the outcome (committed with the ``updates_done`` and manifest
it wrote; ``StateConflictError`` or ``StateLockedError``, both retried; any other error, a
failure). Each reader process loops loading the state (a URL fetched first) and checks it
(benchmarks/concurrency_checks.py). The figures (benchmarks/concurrency_report.py): commits/s,
conflicts, locked retries, failures, lost updates, mixed reads, false tamper errors, and whether
the final state loads; a correct library shows 0 lost updates, 0 mixed reads, 0 false tamper
errors, and a final state that loads.

Every worker is started and imported before the clock starts (``ready``, then ``go <deadline>``);
none starts an attempt after the deadline; any still running ``--grace`` seconds after it is
killed (counted as ``in_flight_at_stop``). The moto server and every worker are stopped at the end
whatever happens. Results: JSON to ``--output`` (default benchmarks/results/concurrency.json), a
table on stdout. ``--check`` exits 1 when any of the zero-counts is not zero or a final state
does not load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(1)
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests" / "support")]

from concurrency_checks import exact_payloads, fingerprint, inspect_read, task_order  # noqa: E402
from concurrency_report import summarise, table  # noqa: E402

WORKER = HERE / "concurrency_worker.py"
ZERO_COUNTS = ("lost_updates", "mixed_reads", "false_tamper_errors")


def _spawn(role: str, index: int, location: str, logs: Path, env: dict[str, str], **extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        str(WORKER),
        role,
        "--index",
        str(index),
        "--location",
        location,
        "--log",
        str(logs / f"{role}{index}.jsonl"),
        "--scratch",
        str(logs),
    ]
    for name, value in extra.items():
        command += [f"--{name}", value]
    with open(logs / f"{role}{index}.stderr", "w") as stderr:
        return subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, text=True, cwd=logs
        )


def _wait_ready(processes: list[subprocess.Popen], timeout: float) -> None:
    """Block until every worker printed ``ready`` (imports done), or raise naming the laggards."""
    pending = {p.stdout.fileno(): p for p in processes}  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for fd, process in pending.items():
            selector.register(fd, selectors.EVENT_READ, process)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{len(pending)} worker(s) were not ready within {timeout:.0f} s")
            for key, _ in selector.select(left):
                line = key.data.stdout.readline()
                if line.strip() != "ready":
                    raise RuntimeError(f"a worker exited before it was ready (code {key.data.poll()}); see its .stderr")
                selector.unregister(key.fd)
                pending.pop(key.fd)


def _read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # the last line of a killed worker, half written
            records.append(json.loads(line))
    return records


def _describe(location: str, scratch: Path, exact: list[str]) -> dict[str, Any]:
    """What the state at ``location`` holds now, or why it does not load."""
    from concurrency_worker import read_state

    try:
        state = read_state(location, scratch)
    except Exception as error:
        return {"loads": False, "error": f"{type(error).__name__}: {error}"[:400]}
    found = inspect_read(state, exact)
    return {"loads": True, "task_order": task_order(state), **found}


def _initial_state(location: str, chunk: Any, scratch: Path) -> None:
    """One update (task ``init``) written to ``location``; at a URL, written locally and published."""
    from concurrency_worker import build_updater

    from retentive.state.remote import is_url, publish_state

    if not is_url(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        build_updater(location, None).update(chunk, task_id="init")
        return
    local = scratch / "initial"
    build_updater(local, None).update(chunk, task_id="init")
    publish_state(local, location)
    shutil.rmtree(local)


def run_location(
    location: str, args: argparse.Namespace, chunks: list[Path], env: dict[str, str], scratch: Path
) -> dict[str, Any]:
    """Start the writers and readers on ``location``, let them run ``args.seconds``, and summarise."""
    from concurrency_worker import read_state

    from retentive.data.files import read_chunk

    clock = [time.monotonic()]
    _initial_state(location, read_chunk(chunks[-1]), scratch)
    state = read_state(location, scratch)
    exact = exact_payloads(state)  # the payloads whose round trip is byte-exact: checked exactly
    initial = {"loads": True, "task_order": task_order(state), **inspect_read(state, exact)}
    initial["model_fp"], initial["memory_fp"] = fingerprint(state.model), fingerprint(state.memory)
    logs = scratch / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen] = []
    killed = 0
    try:
        for i in range(args.writers):
            processes.append(_spawn("writer", i, location, logs, env, chunk=str(chunks[i])))
        for i in range(args.readers):
            processes.append(_spawn("reader", i, location, logs, env, exact=",".join(exact)))
        clock.append(time.monotonic())
        _wait_ready(processes, args.startup_timeout)
        clock.append(time.monotonic())
        deadline = time.time() + args.seconds
        for process in processes:
            process.stdin.write(f"go {deadline}\n")  # type: ignore[union-attr]
            process.stdin.close()  # type: ignore[union-attr]
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline + args.grace - time.time()))
            except subprocess.TimeoutExpired:
                process.kill()
                killed += 1
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
    clock.append(time.monotonic())
    writer_logs = [_read_log(logs / f"writer{i}.jsonl") for i in range(args.writers)]
    reader_logs = [_read_log(logs / f"reader{i}.jsonl") for i in range(args.readers)]
    final = _describe(location, scratch, exact)
    summary = {
        "location": location,
        "writers": args.writers,
        "readers": args.readers,
        "exact_payload_checks": exact,
        "killed_at_stop": killed,
        "worker_exit_codes": [p.returncode for p in processes],
        "phase_seconds": dict(
            zip(("setup", "startup", "run_and_stop"), (round(b - a, 1) for a, b in zip(clock, clock[1:])))
        ),
    }
    summary.update(summarise(writer_logs, reader_logs, initial, final, args.seconds))
    return summary


def _write_chunks(args: argparse.Namespace, folder: Path) -> list[Path]:
    """One chunk file per writer (disjoint MNIST training samples), and one for the initial update."""
    from retentive.data import load_mnist
    from retentive.data.files import write_chunk

    mnist = load_mnist("train")
    paths = []
    for i in range(args.writers + 1):
        path = folder / f"chunk_{i}.npz"
        write_chunk(path, mnist.subset(torch.arange(i * args.samples, (i + 1) * args.samples)))
        paths.append(path)
    return paths


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    def git(*command: str) -> str:
        done = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "command": "python benchmarks/concurrency.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "HEAD"),
        "library_changes_uncommitted": bool(git("status", "--porcelain", "--", "retentive")),
        "torch_threads_per_process": 1,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_start": os.getloadavg()[0],
        "samples_per_update": args.samples,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"meta": _meta(args), "locations": {}}
    base_env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryDirectory(prefix="retentive-concurrency-", dir=args.scratch) as scratch_dir:
        scratch = Path(scratch_dir)
        chunks = _write_chunks(args, scratch)
        for where in args.where:
            folder = scratch / where
            folder.mkdir()
            with ExitStack() as stack:
                if where == "local":
                    location, env = str(folder / "area" / "state"), base_env
                else:
                    location, env = _start_s3(stack, base_env)
                results["locations"][where] = run_location(location, args, chunks, env, folder)
    results["meta"]["load_average_end"] = os.getloadavg()[0]
    return results


def _start_s3(stack: ExitStack, base_env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Start moto's server (stopped when ``stack`` closes); this process uses its credentials too."""
    from s3_server import forget_s3_clients, s3_server

    server = stack.enter_context(s3_server())
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    os.environ.update({k: v for k, v in server.env().items() if k.startswith("AWS_")})
    forget_s3_clients()

    def restore() -> None:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            del os.environ[name]
        os.environ.update(saved)
        forget_s3_clients()

    stack.callback(restore)
    env = {k: v for k, v in base_env.items() if not k.startswith("AWS_")}
    env.update({k: v for k, v in server.env().items() if k.startswith("AWS_")})
    return f"s3://{server.bucket}/concurrency", env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--where",
        type=lambda s: [w for w in s.split(",") if w],
        default=["local", "s3"],
        help="comma-separated: local, s3",
    )
    parser.add_argument("--samples", type=int, default=300, help="MNIST samples per update")
    parser.add_argument(
        "--grace", type=float, default=60.0, help="seconds after the deadline before a worker is killed"
    )
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--scratch", default=None, help="where the local folder and logs live (a temporary folder)")
    parser.add_argument("--output", default=str(HERE / "results" / "concurrency.json"))
    parser.add_argument(
        "--check", action="store_true", help="exit 1 unless every zero-count is 0 and final states load"
    )
    args = parser.parse_args(argv)
    unknown = set(args.where) - {"local", "s3"}
    if unknown or args.writers < 1 or args.readers < 0 or args.seconds <= 0:
        parser.error(
            f"--where takes local and s3 (got {sorted(unknown)}); --writers >= 1, --readers >= 0, --seconds > 0"
        )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: workers and moto stopped
    results = run(args)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results["locations"]))
    print(f"-> {args.output}")
    bad = [
        f"{where}: {key} = {s[key]}" for where, s in results["locations"].items() for key in ZERO_COUNTS if s[key] != 0
    ]
    bad += [
        f"{where}: final state does not load ({s['final_error']})"
        for where, s in results["locations"].items()
        if not s["final_loads"]
    ]
    bad += [
        f"{where}: the final state is mixed ({s['final_mismatches']})"
        for where, s in results["locations"].items()
        if s["final_mismatches"]
    ]
    for line in bad:
        print(line)
    return 1 if bad and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
