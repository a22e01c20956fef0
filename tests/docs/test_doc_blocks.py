"""Every code block of the docs (docs/**/*.md and README.md) runs, or is checked, as shown: a block
that fails as a reader would type it fails here (the rules: tests/support/doc_blocks.py).

One test per page. A page's python blocks run in order in one namespace, in a fresh temporary
working folder, with one torch thread and ``RETENTIVE_REPO`` set to the repository root; its shell
blocks' ``retentive`` and ``python benchmarks/...`` lines are parsed by their own parsers.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from doc_blocks import (
    DATA,
    NOT_CODE,
    PYTHON,
    SHELL,
    BlockError,
    check_data,
    check_shell,
    parse_retentive,
    parse_script,
    read_blocks,
    run_python,
)

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted((REPO / "docs").rglob("*.md")) + [REPO / "README.md"]
#: pages whose blocks take more than about 3 s on the 2-core machine, marked slow. Only the registry
#: page, which imports MLflow and creates its local SQLite store (tens of seconds under load): with
#: torch and Lightning imported, the slowest other pages took 1.6 s (get-started), 1.3 s (method-notes)
#: and 1.1 s (index) at a load average of 5, and 4.9 s / 3.6 s / 2.7 s at 17. The summary line after a
#: run gives the slowest pages' times.
SLOW_PAGES: set[str] = {"docs/how-to/registry.md", "docs/how-to/streaming.md"}  # streaming: three updates, datasets
COUNTS: dict[str, int] = {"pages": 0, "python": 0, "commands": 0, "data": 0, "text": 0}


def _param(page: Path) -> object:
    name = page.relative_to(REPO).as_posix()
    return pytest.param(page, id=name, marks=[pytest.mark.slow] if name in SLOW_PAGES else [])


@pytest.mark.parametrize("page", [_param(page) for page in PAGES])
def test_page_blocks_run_as_shown(page: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RETENTIVE_REPO", str(REPO))
    torch.set_num_threads(1)
    blocks = read_blocks(page)
    unlabelled = [block.where(REPO) for block in blocks if not block.language]
    unknown = [
        f"{block.where(REPO)} ({block.language})"
        for block in blocks
        if block.language and block.language not in PYTHON | SHELL | DATA | NOT_CODE
    ]
    assert not unlabelled, f"blocks without a language (```python, ```bash, ... or ```text for output): {unlabelled}"
    assert not unknown, f"blocks in a language the docs tests cannot run or check: {unknown}"
    import pytorch_lightning  # noqa: F401  (imported before the clock starts: a page's time is its own)

    started = time.perf_counter()
    namespace = {"__name__": "__main__"}
    COUNTS["python"] += run_python([b for b in blocks if b.language in PYTHON], namespace, REPO)
    COUNTS["commands"] += sum(check_shell(b, REPO) for b in blocks if b.language in SHELL)
    for block in blocks:
        if block.language in DATA:
            check_data(block, REPO)
            COUNTS["data"] += 1
    COUNTS["text"] += sum(block.language in NOT_CODE for block in blocks)
    COUNTS["pages"] += 1
    COUNTS.setdefault(f"seconds {page.relative_to(REPO).as_posix()}", 0)
    COUNTS[f"seconds {page.relative_to(REPO).as_posix()}"] = round(time.perf_counter() - started, 1)


# ------------------------------------------------------------------------------ the collector itself


def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text)
    return page


def test_blocks_are_read_with_their_language_line_and_indentation(tmp_path):
    page = _page(
        tmp_path,
        '# t\n\n```python\nx = 1\n```\n\n!!! note\n    ```bash title="x"\n    retentive --version\n    ```\n'
        "\n````text\n```\n````\n\n```\nbare\n```\n",
    )
    blocks = read_blocks(page)
    assert [(b.language, b.line, b.text) for b in blocks] == [
        ("python", 4, "x = 1\n"),
        ("bash", 9, "retentive --version\n"),
        ("text", 13, "```\n"),
        ("", 17, "bare\n"),
    ]


def test_python_blocks_share_one_namespace_and_a_failure_names_the_line(tmp_path):
    page = _page(
        tmp_path, "```python\nx = 2\n```\n\ntext\n\n```python\ny = x * 3\n```\n\n```python\nundefined_name\n```\n"
    )
    blocks = read_blocks(page)
    namespace: dict = {}
    assert run_python(blocks[:2], namespace, tmp_path) == 2 and namespace["y"] == 6
    with pytest.raises(BlockError, match=r"page.md:12: .*NameError"):
        run_python(blocks, {}, tmp_path)


def test_retentive_command_lines_are_parsed_by_the_cli_parser(tmp_path):
    good = _page(
        tmp_path,
        "```bash\n# a comment\nretentive update --config configs/er.yaml --data d.npz \\\n"
        "    --output-state state/chunk_1 && .venv/bin/retentive inspect state/chunk_1 | head -3\n"
        "PYTHONPATH=. nice -n 10 python -m retentive rollback state/chunk_1 > log.txt 2>&1\n"
        "retentive update --help\n```\n"
        "```console\n$ retentive inspect state/x\nmanifest: ok\n```\n",
    )
    assert sum(check_shell(block, REPO) for block in read_blocks(good)) == 5  # `head` is not checked
    assert (
        parse_retentive(["update", "--config", "c.yaml", "--data", "d.npz", "--output-state", "s"]).command == "update"
    )
    for line, expected in [
        ("retentive updaet --config c.yaml", "invalid choice"),
        ("retentive update --config c.yaml --data d.npz --output-state s --epochs 3", "unrecognized arguments"),
        ("retentive rollback", "required"),
    ]:
        with pytest.raises(BlockError, match=expected):
            check_shell(read_blocks(_page(tmp_path, f"```bash\n{line}\n```\n"))[0], REPO)


def test_benchmark_command_lines_are_parsed_by_the_scripts_own_parser(tmp_path):
    script = REPO / "benchmarks" / "der_protocol.py"
    assert parse_script(script, ["--seeds", "0", "1"], REPO).seeds == [0, 1]
    with pytest.raises(BlockError, match="unrecognized arguments: --no-such-flag"):
        parse_script(script, ["--no-such-flag"], REPO)
    block = read_blocks(_page(tmp_path, "```bash\nPYTHONPATH=. python benchmarks/no_such_script.py --x\n```\n"))[0]
    with pytest.raises(BlockError, match=r"does not have: \['benchmarks/no_such_script.py'\]"):
        check_shell(block, REPO)
    block = read_blocks(_page(tmp_path, "```bash\npython benchmarks/er_family.py grid --bogus\n```\n"))[0]
    with pytest.raises(BlockError, match="unrecognized arguments: --bogus"):
        check_shell(block, REPO)


def test_repository_files_named_by_commands_must_exist(tmp_path):
    block = read_blocks(
        _page(tmp_path, "```bash\nretentive update --config configs/dr.yaml --data d.npz --output-state s\n```\n")
    )
    with pytest.raises(BlockError, match=r"does not have: \['configs/dr.yaml'\]"):
        check_shell(block[0], REPO)
    block = read_blocks(
        _page(
            tmp_path,
            "```bash\nretentive tune --config=configs/der.yaml --space configs/search/lr.yaml --data d.npz --val-data v.npz --output-state s\n```\n",
        )
    )
    assert check_shell(block[0], REPO) == 1


def test_data_blocks_must_parse(tmp_path):
    blocks = read_blocks(_page(tmp_path, "```yaml\nupdater: er\nmax_epochs: 1\n```\n```yaml\nupdater: [er\n```\n"))
    check_data(blocks[0], tmp_path)
    with pytest.raises(BlockError, match="does not parse"):
        check_data(blocks[1], tmp_path)
