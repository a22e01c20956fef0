"""The Markdown tables of docs/benchmarks/scenarios.md (evaluation scenarios), read from the results of
``benchmarks/evaluation_suite.sh`` and set next to the DER paper's published figures.

    python benchmarks/evaluation_tables.py OUTPUT_ROOT [--images docs/images]

OUTPUT_ROOT holds the suite's ``seq/``, ``domain/`` and ``orders/`` folders; with ``--images`` the
heatmaps (each method's accuracy matrix, mean over seeds) are drawn there from the results.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retentive.benchmarking import SummaryRow, write_heatmaps

# Published class-IL accuracy (%) on Seq-MNIST at memory 500 (Buzzega et al. 2020, via REFERENCE.md).
PUBLISHED_CLASS_IL = {"fine-tuning": 19.60, "er": 86.12, "der++": 91.00}
METHODS = ("fine-tuning", "er", "der++")


def load(folder: Path) -> dict[tuple[str, str, str, str], dict]:
    data = json.loads((folder / "results.json").read_text())
    return {(r["scenario"], r["view"], r["method"], r["order"]): r for r in data["summary"]}


def cell(row: dict | None, key: str, percent: bool = True, digits: int = 2) -> str:
    if row is None or f"{key}_mean" not in row:
        return "-"
    scale = 100.0 if percent else 1.0
    return f"{scale * row[f'{key}_mean']:.{digits}f} ± {scale * row[f'{key}_std']:.{digits}f}"


def seq_table(summary: dict) -> str:
    lines = [
        "| method | class-IL ACC % | DER paper class-IL | class-IL forgetting % | task-IL ACC % (same run, masked) "
        "| task-IL ACC % (multi-head, routed) | multi-head forgetting % | s/update (class-IL run) | run s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        cil = summary.get(("seq-mnist", "class-il", m, "given"))
        til = summary.get(("seq-mnist", "task-il", m, "given"))
        mh = summary.get(("seq-mnist-til", "task-il", m, "given"))
        lines.append(
            f"| {m} | {cell(cil, 'average_accuracy')} | {PUBLISHED_CLASS_IL[m]:.2f} | {cell(cil, 'forgetting')} "
            f"| {cell(til, 'average_accuracy')} | {cell(mh, 'average_accuracy')} | {cell(mh, 'forgetting')} "
            f"| {cell(cil, 'mean_update_seconds', False)} | {cell(cil, 'total_seconds', False, 1)} |"
        )
    return "\n".join(lines)


def domain_table(summary: dict) -> str:
    lines = [
        "| method | Perm-MNIST ACC % | forgetting % | BWT % | Rot-MNIST ACC % | forgetting % | BWT % "
        "| s/update (Perm / Rot) | run s (Perm / Rot) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        p = summary.get(("perm-mnist", "domain-il", m, "given"))
        r = summary.get(("rot-mnist", "domain-il", m, "given"))
        lines.append(
            f"| {m} | {cell(p, 'average_accuracy')} | {cell(p, 'forgetting')} | {cell(p, 'bwt')} "
            f"| {cell(r, 'average_accuracy')} | {cell(r, 'forgetting')} | {cell(r, 'bwt')} "
            f"| {cell(p, 'mean_update_seconds', False, 1)} / {cell(r, 'mean_update_seconds', False, 1)} "
            f"| {cell(p, 'total_seconds', False, 0)} / {cell(r, 'total_seconds', False, 0)} |"
        )
    return "\n".join(lines)


def orders_table(summary: dict, folder: Path) -> str:
    orders = ("given", "easy-hard", "hard-easy", "random")
    lines = [
        "| method | view | "
        + " | ".join(f"{o} ACC %" for o in orders)
        + " | "
        + " | ".join(f"{o} forgetting %" for o in orders)
        + " |",
        "|---|---|" + "---|" * (2 * len(orders)),
    ]
    for view in ("class-il", "task-il"):
        for m in METHODS:
            rows = [summary.get(("seq-mnist", view, m, o)) for o in orders]
            lines.append(
                f"| {m} | {view} | "
                + " | ".join(cell(r, "average_accuracy") for r in rows)
                + " | "
                + " | ".join(cell(r, "forgetting") for r in rows)
                + " |"
            )
    runs = json.loads((folder / "results.json").read_text())["runs"]
    used = sorted(
        {(r["order"], r["seed"], " ".join(map(str, r["chunk_order"]))) for r in runs if r["method"] == METHODS[0]}
    )
    lines.append("")
    lines.append(
        "Chunk orders used (chunk k holds digits 2k and 2k+1): "
        + "; ".join(f"{order} seed {seed}: {chunks}" for order, seed, chunks in used if order != "given")
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--images", type=Path, default=None)
    args = parser.parse_args()
    parts = {
        name: args.root / name for name in ("seq", "domain", "orders") if (args.root / name / "results.json").exists()
    }
    if "seq" in parts:
        print("### Seq-MNIST (class-IL and task-IL)\n\n" + seq_table(load(parts["seq"])) + "\n")
    if "domain" in parts:
        print(
            "### Permuted-MNIST and Rotated-MNIST (domain-IL, 20 tasks)\n\n"
            + domain_table(load(parts["domain"]))
            + "\n"
        )
    if "orders" in parts:
        print(
            "### Task-order sensitivity (Seq-MNIST)\n\n" + orders_table(load(parts["orders"]), parts["orders"]) + "\n"
        )
    if args.images is not None:
        for folder in parts.values():
            rows = [
                SummaryRow(r["scenario"], r["view"], r["method"], r["order"], r["seeds"], {}, r["mean_matrix"])
                for r in json.loads((folder / "results.json").read_text())["summary"]
            ]
            for path in write_heatmaps(args.images, [r for r in rows if r.order == "given" or folder.name == "orders"]):
                print(f"wrote {path}")


if __name__ == "__main__":
    main()
