"""Latency of the collectives a DDP step uses, between 2 CPU processes (gloo), one torch thread.

What retentive adds to a DDP step: a 24-byte header all-gather every step and, when a sample is
accepted, one all-gather of the accepted rows (MNIST: 3,192 bytes a row: image, label, task id, 10 logits). DDP itself
all-reduces the gradients (the MLP 784-100-100-10: 89,610 floats). Also compared: Lightning's
``strategy.all_gather`` (autograd-aware ``torch.distributed.nn`` gather) against the plain
``all_gather_into_tensor`` that retentive uses.

    python benchmarks/ddp_collectives.py [--repeats 300]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from retentive.distributed import all_gather_stacked


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _work(rank: int, port: int, repeats: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    from torch.distributed.nn.functional import all_gather as autograd_all_gather

    grads = torch.randn(89_610)
    header = torch.tensor([32, 3_192, 32])
    rows = torch.zeros(32, 3_192, dtype=torch.uint8)
    cases = {
        "gradient all-reduce, 358 KB (DDP itself)": lambda: dist.all_reduce(grads),
        "header all-gather, all_gather_into_tensor": lambda: all_gather_stacked(header),
        "header all-gather, Lightning's strategy.all_gather": lambda: torch.stack(autograd_all_gather(header)),
        "32 rows all-gather, 102 KB": lambda: all_gather_stacked(rows),
    }
    for name, call in cases.items():
        for _ in range(20):
            call()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        if rank == 0:
            print(f"| {name} | {1e3 * statistics.median(times):.3f} | {1e3 * statistics.mean(times):.3f} |", flush=True)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print("| collective | median ms | mean ms |\n|---|---|---|", flush=True)
    mp.spawn(_work, args=(_free_port(), args.repeats), nprocs=2)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
