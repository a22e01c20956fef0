"""Code shape: no function body over 60 lines and no module over 400 lines in retentive/.

A function's body is counted from its first statement after the docstring to its end, so a long
signature (Renate's flat argument lists: ``run_training_job``, ``Learner.__init__``, the ViT
models) or a long docstring does not count; the code does. An exception is listed in ``ALLOWED``
with a one-line reason, and the test fails when a listed one no longer needs to be there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "retentive"
MAX_BODY_LINES = 60
MAX_MODULE_LINES = 400

#: "path relative to retentive/" for a module, "path:qualified.name" for a function -> why it may be longer
ALLOWED: dict[str, str] = {}


def _functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with its qualified name (``Class.method``, ``outer.inner``)."""
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((prefix + child.name, child))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the function's last line."""
    body = function.body
    if (
        isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    if not body:
        return 0
    assert function.end_lineno is not None
    return function.end_lineno - body[0].lineno + 1


def measure() -> dict[str, int]:
    """Every module's line count and every function's body length, keyed as ``ALLOWED`` is."""
    sizes: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        text = path.read_text(encoding="utf-8")
        sizes[name] = len(text.splitlines())
        for qualified, function in _functions(ast.parse(text, filename=str(path))):
            sizes[f"{name}:{qualified}"] = body_lines(function)
    return sizes


def _limit(key: str) -> int:
    return MAX_BODY_LINES if ":" in key else MAX_MODULE_LINES


def test_functions_and_modules_are_short() -> None:
    sizes = measure()
    over = {key: n for key, n in sizes.items() if n > _limit(key) and key not in ALLOWED}
    assert not over, "over the limit (split it along a real seam, or list it in ALLOWED with a reason): " + ", ".join(
        f"{key} {n} lines" for key, n in sorted(over.items())
    )


def test_every_allowance_is_still_needed() -> None:
    sizes = measure()
    stale = [key for key in ALLOWED if sizes.get(key, 0) <= _limit(key)]
    assert not stale, f"no longer over the limit (or gone): remove from ALLOWED: {stale}"


def test_every_allowance_has_a_reason() -> None:
    assert all(reason.strip() and "\n" not in reason for reason in ALLOWED.values())


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('def f():\n    """Doc\n    string."""\n    a = 1\n    return a\n', 2),
        ("def f(\n    x,\n    y,\n):\n    return x + y\n", 1),
        ('def f():\n    """Only a docstring."""\n', 0),
    ],
)
def test_a_body_is_counted_after_the_signature_and_docstring(source: str, expected: int) -> None:
    (name, function), *_ = _functions(ast.parse(source))
    assert name == "f" and body_lines(function) == expected
