"""The code blocks of the docs, read out of Markdown and run or checked as a reader would use them.

- ```python blocks run in order in one namespace per page (a later block may use an earlier one's
  names), ``__name__ == "__main__"``, in a working folder of the caller's choosing.
- ```bash / ```sh / ```shell / ```console blocks: each command line is checked. A ``retentive ...``
  line (also ``.venv/bin/retentive``, ``python -m retentive``) is parsed by retentive's own argparse
  parser, so an unknown command or flag fails. A ``python path/to/script.py ...`` line names a file
  of the repository that must exist; when the script has an argparse parser its arguments are parsed
  by it (the script runs as ``__main__`` until its ``parse_args`` returns, then stops). ``bash
  path.sh`` names a script that must exist, and so must any ``configs/``, ``examples/``,
  ``benchmarks/`` or ``scripts/`` file these commands name. In a ``console`` block only ``$ ``
  lines are commands (the rest is their output), unless no line has a prompt.
- ```yaml / ```json / ```toml blocks must parse. ```text, ```mermaid and the like are not code.
- A block without a language fails: it is either code (say which) or output (```text).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PYTHON = {"python", "py", "python3"}
SHELL = {"bash", "sh", "shell", "console", "shell-session", "zsh"}
DATA = {"yaml", "yml", "json", "toml"}
NOT_CODE = {"text", "txt", "output", "mermaid", "markdown", "md", "diff", "plain"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
_OPERATORS = {"&&", "||", ";", "|", "&", ";;", "(", ")", "|&"}
_REDIRECTS = re.compile(r"^[0-9]*(?:>>?|<<?|>&|<&|&>>?)$")
_PREFIXES = {"nice", "time", "timeout", "env", "nohup", "exec", "command", "do", "then", "else", "{", "!"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SUBSTITUTION = re.compile(r"\$\([^()]*\)|`[^`]*`")
_REPO_FILE = re.compile(r"^(?:configs|examples|benchmarks|scripts)/[^*?$]+\.(?:ya?ml|py|sh)$")


class BlockError(AssertionError):
    """A block that fails as shown, with the page and line it starts on."""


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the block's first content line
    language: str
    text: str

    def where(self, repo: Path) -> str:
        return f"{self.page.relative_to(repo) if self.page.is_relative_to(repo) else self.page}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, dedented by their fence's indentation (admonitions, lists)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = opening["info"].split()[0].strip("{}").lstrip(".").lower() if opening["info"] else ""
        body: list[str] = []
        i += 1
        start = i + 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if (
                closing
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"]
            ):
                break
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        blocks.append(Block(page, start, language, "\n".join(body) + "\n"))
        i += 1
    return blocks


# ------------------------------------------------------------------------------------------------ python


def run_python(blocks: list[Block], namespace: dict[str, Any], repo: Path) -> int:
    """Run a page's python blocks in order in ``namespace``; the count run."""
    count = 0
    for block in blocks:
        code = compile("\n" * (block.line - 1) + block.text, str(block.page), "exec")
        try:
            exec(code, namespace)  # noqa: S102  (the docs' own code, run as a reader would)
        except Exception as error:
            raise BlockError(f"{block.where(repo)}: the python block fails as shown: {error!r}") from error
        count += 1
    return count


# ------------------------------------------------------------------------------------------------ shell


def command_lines(block: Block) -> list[str]:
    """The commands of a shell block: continuations joined, comments and (in console blocks) output dropped."""
    raw = block.text.replace("\\\n", " ").splitlines()
    if block.language == "console" and any(line.lstrip().startswith("$ ") for line in raw):
        raw = [line.lstrip()[2:] for line in raw if line.lstrip().startswith("$ ")]
    else:
        raw = [line[2:] if line.startswith("$ ") else line for line in raw]
    return [line.strip() for line in raw if line.strip() and not line.strip().startswith("#")]


def simple_commands(line: str) -> Iterator[list[str]]:
    """The simple commands of one shell line, as argument lists: operators split, redirections,
    environment assignments and wrappers (``nice -n 10``, ``time``, ``timeout 60``) dropped."""
    lexer = shlex.shlex(_SUBSTITUTION.sub("SUBSTITUTED", line), posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words: list[str] = []
    tokens = list(lexer)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _OPERATORS:
            yield from _command(words)
            words = []
        elif _REDIRECTS.match(token):
            if words and words[-1].isdigit():
                words.pop()
            i += 1  # the redirection's target
        else:
            words.append(token)
        i += 1
    yield from _command(words)


def _command(words: list[str]) -> Iterator[list[str]]:
    while words and (words[0] in _PREFIXES or _ASSIGNMENT.match(words[0])):
        wrapper = words.pop(0)
        if wrapper == "nice" and words[:1] == ["-n"]:
            del words[:2]
        elif wrapper == "timeout" and words:
            words.pop(0)
    if words:
        yield words


def check_command(words: list[str], repo: Path) -> bool:
    """Check one command; ``True`` when it was one this module knows how to check."""
    program = Path(words[0]).name
    if program in ("retentive", "bash", "sh") or program.startswith("python"):
        _check_repo_files(words, repo)
    if program == "retentive":
        parse_retentive(words[1:])
        return True
    if re.fullmatch(r"python(3(\.\d+)?)?", program) and len(words) > 1:
        if words[1:3] == ["-m", "retentive"]:
            parse_retentive(words[3:])
            return True
        if words[1] == "-m" and len(words) > 2 and words[2].startswith("benchmarks."):
            parse_script(repo / (words[2].replace(".", "/") + ".py"), words[3:], repo)
            return True
        if words[1].endswith(".py") and not words[1].startswith("-"):
            parse_script(repo / words[1], words[2:], repo)
            return True
    if program in ("bash", "sh") and len(words) > 1 and words[1].endswith(".sh"):
        if not (repo / words[1]).is_file():
            raise BlockError(f"`{' '.join(words)}`: no script {words[1]} in the repository")
        return True
    return False


def _check_repo_files(words: list[str], repo: Path) -> None:
    """Arguments naming the repository's configs, examples, benchmarks or scripts name files that exist."""
    from_repo = [word.partition("=")[2] or word for word in words[1:]]
    missing = [word for word in from_repo if _REPO_FILE.match(word) and not (repo / word).is_file()]
    if missing:
        raise BlockError(f"`{' '.join(words)}` names files the repository does not have: {missing}")


def parse_retentive(argv: list[str]) -> argparse.Namespace | None:
    """Parse ``retentive ARGV`` with the command's own parser; usage errors raise :class:`BlockError`."""
    from retentive.cli import build_parser

    return _parse(lambda: build_parser().parse_args(argv), f"retentive {' '.join(argv)}")


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__()
        self.namespace = namespace


def parse_script(script: Path, argv: list[str], repo: Path) -> argparse.Namespace | None:
    """Parse ``python SCRIPT ARGV`` with the script's own argparse parser, stopping right after it."""
    shown = f"python {script.relative_to(repo) if script.is_relative_to(repo) else script} {' '.join(argv)}"
    if not script.is_file():
        raise BlockError(f"`{shown}`: no such script in the repository")
    if "parse_args" not in script.read_text(encoding="utf-8"):
        return None  # a script without a parser: that it exists is what can be checked
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        raise _Parsed(original(self, args, namespace))

    def run() -> argparse.Namespace:
        saved_argv, saved_path = sys.argv, list(sys.path)
        sys.argv, sys.path[:0] = [str(script), *argv], [str(script.parent), str(repo)]
        argparse.ArgumentParser.parse_args = parse_and_stop  # type: ignore[method-assign]
        try:
            runpy.run_path(str(script), run_name="__main__")
        except _Parsed as parsed:
            return parsed.namespace
        finally:
            argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
            sys.argv, sys.path[:] = saved_argv, saved_path
        raise BlockError(f"`{shown}`: the script ran to its end without parsing its arguments")

    return _parse(run, shown)


def _parse(parse: Any, shown: str) -> Any:
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return parse()
    except SystemExit as exit:
        if exit.code in (0, None):  # --help, --version
            return None
        message = err.getvalue().strip().splitlines()
        raise BlockError(f"`{shown}` is not a valid command line: {message[-1] if message else exit.code}") from None


def check_shell(block: Block, repo: Path) -> int:
    """Check a shell block's commands; the count of those checked."""
    checked = 0
    for line in command_lines(block):
        try:
            commands = list(simple_commands(line))
        except ValueError as error:
            raise BlockError(f"{block.where(repo)}: cannot read the shell line {line!r}: {error}") from None
        for words in commands:
            try:
                checked += check_command(words, repo)
            except BlockError as error:
                raise BlockError(f"{block.where(repo)}: {error}") from None
    return checked


# ------------------------------------------------------------------------------------------------ data


def check_data(block: Block, repo: Path) -> None:
    """A yaml, json or toml block must parse."""
    try:
        if block.language in ("yaml", "yml"):
            yaml.safe_load(block.text)
        elif block.language == "json":
            json.loads(block.text)
        else:
            tomllib.loads(block.text)
    except Exception as error:
        raise BlockError(f"{block.where(repo)}: the {block.language} block does not parse: {error}") from None
