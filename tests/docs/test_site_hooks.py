"""The site's build helpers (scripts/docs): nav globs and the docstrings' Sphinx roles."""

from __future__ import annotations

from pathlib import Path

from script_modules import load_script

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    return load_script(f"scripts/docs/{name}.py", name)


def test_a_nav_glob_becomes_its_pages_index_first(tmp_path):
    hooks = _load("hooks")
    for name in ("speed.md", "index.md", "accuracy.md"):
        (tmp_path / "benchmarks").mkdir(exist_ok=True)
        (tmp_path / "benchmarks" / name).write_text("# x\n")
    nav = [{"Home": "index.md"}, {"Benchmarks": "benchmarks/*.md"}, {"Other": "other/*.md"}]
    assert hooks._expand(nav, tmp_path) == [
        {"Home": "index.md"},
        {"Benchmarks": ["benchmarks/index.md", "benchmarks/accuracy.md", "benchmarks/speed.md"]},
        {"Other": "other/*.md"},  # nothing matched: left for the strict build to report
    ]
    listed_first = [{"Speed": "benchmarks/speed.md"}, {"More": ["benchmarks/index.md", "benchmarks/*.md"]}]
    assert hooks._expand(listed_first, tmp_path) == [
        {"Speed": "benchmarks/speed.md"},
        {"More": ["benchmarks/index.md", "benchmarks/accuracy.md"]},  # the pages listed nowhere else
    ]


def test_sphinx_roles_become_inline_code():
    roles = _load("griffe_roles")
    text = "See :class:`~retentive.models.MLP`, :meth:`update` and :py:func:`retentive.data.split_mnist`; ``x`` stays."
    assert roles._ROLE.sub(roles._code, text) == "See `MLP`, `update` and `retentive.data.split_mnist`; ``x`` stays."
