"""Upload and download time of a typical state through a local S3 server (moto, 127.0.0.1).

    .venv/bin/python benchmarks/state_urls.py [--repeats 5]

The state: DER on the MNIST MLP after one update on 500 Split-MNIST samples, memory 500 (as
configs/der.yaml keeps). Times publish_state and fetch_state (each with every sha256 checked),
medians of the repeats; the server is moto's, in its own process, so the figures measure
retentive's protocol plus a Python server on loopback, not S3's network.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))
torch.set_num_threads(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from s3_server import s3_server
    from state_helpers import der

    from retentive.data import load_mnist, split_mnist
    from retentive.state.remote import fetch_state, publish_state

    chunk = split_mnist(load_mnist("train"))[0].subset(torch.arange(500))
    with tempfile.TemporaryDirectory() as scratch, s3_server() as server:
        os.environ.update({k: v for k, v in server.env().items() if k.startswith("AWS_")})
        local = Path(scratch) / "state"
        der(local, memory_size=500, max_epochs=1).update(chunk)
        size = sum(p.stat().st_size for p in local.iterdir())
        up, down = [], []
        for i in range(args.repeats):
            url = f"s3://{server.bucket}/bench"
            start = time.perf_counter()
            publish_state(local, url)
            up.append(time.perf_counter() - start)
            start = time.perf_counter()
            fetch_state(url, Path(scratch) / f"fetched_{i}")
            down.append(time.perf_counter() - start)
    result = {
        "state_bytes": size,
        "repeats": args.repeats,
        "publish_s_median": round(statistics.median(up), 3),
        "fetch_s_median": round(statistics.median(down), 3),
        "publish_s": [round(t, 3) for t in up],
        "fetch_s": [round(t, 3) for t in down],
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
