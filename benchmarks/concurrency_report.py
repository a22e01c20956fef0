"""The figures of benchmarks/concurrency.py, from the workers' JSON-line logs and the final state.

Definitions (per location):

- commits: writer attempts whose ``update()`` returned; conflicts / locked retries: attempts that
  raised ``StateConflictError`` / ``StateLockedError`` (correct outcomes, retried); failures: any
  other exception (``false_tamper`` among them when a writer's own read of the input claimed a
  modified, truncated or missing file);
- lost updates: commits whose task id is not in the final state's ``task_order`` (its ancestry;
  a final state that does not load has none, so then every commit is lost);
  ``duplicate_updates_done``: commits that wrote an ``updates_done`` another commit wrote too;
  ``updates_done_gain``: final minus initial ``updates_done`` (equals commits when nothing is lost);
- unreported commits: updates in the final ancestry that no writer reported committed (killed in
  flight, or reported as failed or conflicting although they committed);
- mixed reads: reads whose payloads are not those of the manifest they were loaded with
  (:func:`concurrency_checks.inspect_read`, plus the registry check: the model and memory equal
  what the committing writer held); false tamper errors: reads (and writers' input reads) failing
  with a modified/truncated/missing-file StateError.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

_PATHS = re.compile(r"(/[\w.+-]+)+/?|s3://\S+|\b[0-9a-f]{12,}\b|\d{8}T\d{6}Z-[0-9a-f]+|\b\d+\b")


def _pattern(message: str) -> str:
    """A message with paths, URLs, digests and pids blanked, to count messages of one kind."""
    return _PATHS.sub("…", message)[:240]


def _top(messages: list[str], n: int = 5) -> list[dict[str, Any]]:
    return [{"count": c, "message": m} for m, c in Counter(map(_pattern, messages)).most_common(n)]


def summarise(
    writer_logs: list[list[dict[str, Any]]],
    reader_logs: list[list[dict[str, Any]]],
    initial: dict[str, Any],
    final: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """The figures for one location (see the module docstring)."""
    starts = [r for log in writer_logs for r in log if r.get("event") == "start"]
    ends = [r for log in writer_logs for r in log if r.get("event") == "end"]
    in_flight = sorted({r["task"] for r in starts} - {r["task"] for r in ends})
    by = {o: [r for r in ends if r.get("outcome") == o] for o in ("committed", "conflict", "locked", "failure")}
    commits = by["committed"]
    registry = {initial["task"]: (initial["model_fp"], initial["memory_fp"])}
    registry.update({r["task"]: (r["model_fp"], r["memory_fp"]) for r in commits})
    done = [r["updates_done"] for r in commits]

    reads = [r for log in reader_logs for r in log if r.get("event") == "read"]
    mixed_at_read = [r for r in reads if r.get("outcome") == "mixed"]
    mixed_registry, unverified = [], 0
    for r in reads:
        if r.get("outcome") != "ok":
            continue
        if r.get("task") not in registry:
            unverified += 1
        elif (r["model_fp"], r["memory_fp"]) != registry[r["task"]]:
            mixed_registry.append(r)
    reader_tamper = [r for r in reads if r.get("outcome") == "false_tamper"]
    writer_tamper = [r for r in by["failure"] if r.get("false_tamper")]

    summary: dict[str, Any] = {
        "seconds": seconds,
        "attempts": len(starts),
        "commits": len(commits),
        "commits_per_s": round(len(commits) / seconds, 3) if seconds else None,
        "conflicts": len(by["conflict"]),
        "locked_retries": len(by["locked"]),
        "failures": len(by["failure"]),
        "failure_messages": _top([r["error"] for r in by["failure"]]),
        "conflict_messages": _top([r["error"] for r in by["conflict"]], 2),
        "in_flight_at_stop": len(in_flight),
        "update_s_median": _median([r["seconds"] for r in commits]),
        "reads": len(reads),
        "reads_per_s": round(len(reads) / seconds, 2) if seconds else None,
        "read_s_median": _median([r["seconds"] for r in reads if r.get("outcome") == "ok"]),
        "mixed_reads": len(mixed_at_read) + len(mixed_registry),
        "mixed_reads_detected_at_read": len(mixed_at_read),
        "mixed_reads_detected_by_registry": len(mixed_registry),
        "mixed_examples": [r["mismatches"] for r in mixed_at_read[:3]]
        + [_registry_mismatch(r, registry[r["task"]]) for r in mixed_registry[:2]],
        "reads_unverified_by_registry": unverified,
        "false_tamper_errors": len(reader_tamper) + len(writer_tamper),
        "false_tamper_errors_readers": len(reader_tamper),
        "false_tamper_errors_writers": len(writer_tamper),
        "false_tamper_messages": _top([r["error"] for r in reader_tamper + writer_tamper]),
        "reader_other_errors": sum(r.get("outcome") == "error" for r in reads),
        "reader_error_messages": _top([r["error"] for r in reads if r.get("outcome") == "error"]),
        "initial_updates_done": initial["updates_done"],
        "duplicate_updates_done": len(done) - len(set(done)),
    }
    summary.update(_against_final(commits, in_flight, ends, initial, final, registry))
    return summary


def _registry_mismatch(read: dict[str, Any], committed: tuple[str, str]) -> str:
    parts = [
        name
        for name, a, b in zip(("model.pt", "memory.pt"), (read["model_fp"], read["memory_fp"]), committed)
        if a != b
    ]
    return (
        f"manifest of {read['task']} (updates_done {read['updates_done']}) read with a {' and '.join(parts)} "
        "other than the one its writer committed"
    )


def _against_final(
    commits: list[dict[str, Any]],
    in_flight: list[str],
    ends: list[dict[str, Any]],
    initial: dict[str, Any],
    final: dict[str, Any],
    registry: dict[str, Any],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "final_loads": final["loads"],
        "final_error": final.get("error"),
        "final_mismatches": final.get("mismatches", []),
    }
    # a final state that does not load has no ancestry: every commit is lost with it
    ancestry = final["task_order"] if final["loads"] else []
    lost = [r["task"] for r in commits if r["task"] not in set(ancestry)]
    if not final["loads"]:
        out.update(
            final_updates_done=None,
            updates_done_gain=None,
            lost_updates=len(lost),
            lost_update_tasks=lost[:10],
            unreported_commits=None,
        )
        return out
    reported = {r["task"] for r in commits}
    new = ancestry[len(initial["task_order"]) :]
    other_outcome = {r["task"]: r["outcome"] for r in ends}
    unreported = [t for t in new if t not in reported]
    final_fp = (final["model_fp"], final["memory_fp"])
    out.update(
        final_updates_done=final["updates_done"],
        updates_done_gain=final["updates_done"] - initial["updates_done"],
        final_task=final["task"],
        lost_updates=len(lost),
        lost_update_tasks=lost[:10],
        unreported_commits=len(unreported),
        unreported_commit_outcomes=dict(
            Counter("killed in flight" if t in in_flight else other_outcome.get(t, "unknown") for t in unreported)
        ),
        final_matches_its_writer=registry.get(final["task"]) == final_fp if final["task"] in registry else None,
    )
    return out


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return round(ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2, 4)


COLUMNS = [
    ("where", 6),
    ("W", 2),
    ("R", 2),
    ("T s", 5),
    ("commits", 7),
    ("/s", 6),
    ("confl", 5),
    ("locked", 6),
    ("fail", 5),
    ("lost", 5),
    ("reads", 6),
    ("mixed", 5),
    ("tamper", 6),
    ("final ok", 8),
]


def table(locations: dict[str, dict[str, Any]]) -> str:
    """A short table of the headline figures, one row per location."""
    header = " ".join(name.rjust(width) for name, width in COLUMNS)
    rows = [header, "-" * len(header)]
    for where, s in locations.items():
        values = [
            where,
            s["writers"],
            s["readers"],
            s["seconds"],
            s["commits"],
            s["commits_per_s"],
            s["conflicts"],
            s["locked_retries"],
            s["failures"],
            s["lost_updates"],
            s["reads"],
            s["mixed_reads"],
            s["false_tamper_errors"],
            "yes" if s["final_loads"] else "NO",
        ]
        rows.append(" ".join(str(v).rjust(width) for v, (_, width) in zip(values, COLUMNS)))
    return "\n".join(rows)
