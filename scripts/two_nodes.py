"""Two DDP "nodes" on this machine: two torchrun launches on 127.0.0.1, one process each.

Each node is its own ``torchrun --nnodes 2 --nproc_per_node N --node_rank i --master_addr
127.0.0.1 --master_port P`` (static rendezvous), as on two real machines, so Lightning sees
torchelastic's environment with ``num_nodes=2`` and the global ranks span both launches. Each node
gets its own working directory (``--workdir``/node0, node1) and ``RETENTIVE_NODE_DIR``, so that a
script can also play two machines that do *not* share a filesystem. ``--launcher lightning``
starts ``python SCRIPT`` on each node with ``NODE_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``
instead, as Lightning's own launcher runs on a cluster without torchrun.

A node that fails early leaves the other waiting for it in the rendezvous or in a collective, so
neither is waited for forever: once one node has exited with an error the other gets ``--grace``
seconds, and both get ``--timeout`` seconds in all; then they are killed (their whole process
groups). Both return codes are reported; the exit status is 0 only if both nodes exited with 0.

    python scripts/two_nodes.py [--port P] [--timeout S] [--workdir DIR] -- SCRIPT [ARGS...]
    python scripts/two_nodes.py -- -m retentive.cli update --config c.yaml ... --set trainer.num_nodes=2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LAUNCHERS = ("torchrun", "lightning")
#: a killed node's return code: -9, as subprocess reports a SIGKILL
KILLED = -signal.SIGKILL


@dataclass(frozen=True)
class NodeResult:
    """One node's outcome: its return code, whether it was killed on a timeout, its output."""

    node_rank: int
    returncode: int
    killed: bool
    output: str


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the master's rendezvous port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def torchrun_command(node_rank: int, port: int, command: list[str], nproc_per_node: int = 1) -> list[str]:
    """The torchrun line of one node (the same python, so the same environment)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc_per_node",
        str(nproc_per_node),
        "--node_rank",
        str(node_rank),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        *command,
    ]


def lightning_command(command: list[str]) -> list[str]:
    """One node under Lightning's own launcher: the script alone, the node's rank in ``NODE_RANK``."""
    return [sys.executable, *command]


def _stop(process: subprocess.Popen[str]) -> None:
    """Kill a node's whole process group (torchrun's agent and its workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def run_two_nodes(
    command: list[str],
    workdir: Path,
    *,
    port: int | None = None,
    timeout: float = 300.0,
    grace: float = 30.0,
    env: dict[str, str] | None = None,
    nproc_per_node: int = 1,
    launcher: str = "torchrun",
) -> list[NodeResult]:
    """Launch both nodes, wait for them within ``timeout`` (``grace`` after a node failed), return both results.

    ``command`` is what torchrun runs (a script and its arguments, or ``-m module ...``). With
    ``launcher="lightning"`` each node runs ``python command`` with ``MASTER_ADDR``,
    ``MASTER_PORT`` and ``NODE_RANK`` set, as Lightning's own launcher is started on a cluster
    without torchrun (the script's Trainer must say ``num_nodes=2``). Each node's stdout and
    stderr go to ``workdir/node<i>.log`` and come back in its result.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
    port = free_port() if port is None else port
    processes: list[subprocess.Popen[str]] = []
    logs = []
    for node in (0, 1):
        folder = workdir / f"node{node}"
        folder.mkdir(parents=True, exist_ok=True)
        log = open(workdir / f"node{node}.log", "w+", encoding="utf-8")  # noqa: SIM115  # closed below
        logs.append(log)
        node_env = {**os.environ, **(env or {}), "RETENTIVE_NODE_DIR": str(folder)}
        if launcher == "lightning":
            node_env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NODE_RANK=str(node))
        line = (
            lightning_command(command)
            if launcher == "lightning"
            else torchrun_command(node, port, command, nproc_per_node)
        )
        processes.append(
            subprocess.Popen(
                line,
                cwd=folder,
                env=node_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its own process group, killed whole on a timeout
            )
        )
    deadline = time.monotonic() + timeout
    killed = [False, False]
    try:
        while any(p.poll() is None for p in processes):
            failed = any(p.poll() not in (None, 0) for p in processes)
            if failed:
                deadline = min(deadline, time.monotonic() + grace)
                grace = float("inf")  # the grace starts once, at the first failure
            if time.monotonic() > deadline:
                for i, p in enumerate(processes):
                    if p.poll() is None:
                        _stop(p)
                        killed[i] = True
                        p.wait()
                break
            time.sleep(0.2)
    finally:
        for i, p in enumerate(processes):
            if p.poll() is None:  # interrupted: never leave a node behind
                _stop(p)
                killed[i] = True
                p.wait()
    results = []
    for i, (p, log) in enumerate(zip(processes, logs)):
        log.seek(0)
        results.append(NodeResult(i, int(p.returncode), killed[i], log.read()))
        log.close()
    return results


def describe(results: list[NodeResult]) -> str:
    """One line per node: its return code, and whether it was killed on a timeout."""
    return "\n".join(
        f"node {r.node_rank}: rc {r.returncode}{' (killed: timed out waiting)' if r.killed else ''}" for r in results
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=None, help="the master's port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for both nodes in all")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds the other node gets after one failed")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="torchrun's processes per node")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="torchrun", help="torchrun, or Lightning's own")
    parser.add_argument("--workdir", type=Path, default=Path("two_nodes"), help="node0/, node1/ and the logs")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then what torchrun runs on each node")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give what each node runs after --, e.g. -- train.py or -- -m retentive.cli update ...")
    settings = {name: getattr(args, name) for name in ("port", "timeout", "grace", "nproc_per_node", "launcher")}
    results = run_two_nodes(command, args.workdir, **settings)
    for result in results:
        if result.returncode != 0:
            print(f"--- node {result.node_rank} (last lines of {args.workdir / f'node{result.node_rank}.log'})")
            print("\n".join(result.output.splitlines()[-30:]))
    print(describe(results))
    return 0 if all(r.returncode == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
