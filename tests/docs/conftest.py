"""The docs tests' summary: how many blocks the doc pages ran and checked (one line)."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    from test_doc_blocks import COUNTS

    if COUNTS["pages"]:
        slowest = sorted(((v, k[8:]) for k, v in COUNTS.items() if k.startswith("seconds ")), reverse=True)[:3]
        terminalreporter.write_line(
            f"doc blocks: {COUNTS['python']} python blocks run, {COUNTS['commands']} command lines parsed, "
            f"{COUNTS['data']} data blocks parsed, {COUNTS['text']} text blocks, over {COUNTS['pages']} pages; "
            f"slowest: {', '.join(f'{page} {seconds} s' for seconds, page in slowest)}"
        )
