"""The method catalogue page (docs/methods/index.md), written at build time, never by hand.

Everything on it comes from two places, so that it cannot drift from the code or the runs: the
method registry (:mod:`retentive.methods`: names, updaters, papers, configs, Renate names, memory)
and ``benchmarks/catalogue.yaml`` (which measured runs in ``benchmarks/results/`` stand beside which
published figure). A figure whose runs are gone, or a method the YAML names that the registry does
not know, raises :class:`CatalogueError` and fails the docs build.
"""

from __future__ import annotations

import glob
import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
FIGURES = Path("benchmarks/catalogue.yaml")
RESULTS = Path("benchmarks/results")
PAGE = "methods/index.md"
UPDATERS_PAGE = "reference/updaters.md"
_ARXIV = re.compile(r"\(?arXiv:(\d{4}\.\d{4,5})\)?")


class CatalogueError(ValueError):
    """The figures file names runs, methods or protocols that do not exist."""


@dataclass(frozen=True)
class Figure:
    """One measured figure and the published one it is compared with (``None``: no paper reports it)."""

    method: str
    label: str
    protocol: str
    setting: str
    memory: int | None
    published: float | None
    results: str
    field: str
    select: dict[str, Any] = field(default_factory=dict)
    scale: float = 1.0
    note: str | None = None


@dataclass(frozen=True)
class Measured:
    mean: float
    std: float
    runs: int


def load_figures(repo: Path = REPO) -> tuple[dict[str, str], list[Figure]]:
    """The protocols (key -> description) and figures of ``benchmarks/catalogue.yaml``."""
    data = yaml.safe_load((repo / FIGURES).read_text())
    protocols: dict[str, str] = data["protocols"]
    figures = [Figure(**entry) for entry in data["figures"]]
    for figure in figures:
        if figure.protocol not in protocols:
            raise CatalogueError(f"{FIGURES}: figure {figure.label!r} names an unknown protocol {figure.protocol!r}")
    return protocols, figures


def _runs(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else [data]


def measure(figure: Figure, repo: Path = REPO) -> Measured:
    """Mean, standard deviation and count of the runs ``figure`` names."""
    paths = sorted(glob.glob(str(repo / RESULTS / figure.results)))
    values = [
        float(run[figure.field]) * figure.scale
        for path in paths
        for run in _runs(Path(path))
        if figure.field in run and all(run.get(key) == value for key, value in figure.select.items())
    ]
    if not values:
        raise CatalogueError(
            f"{FIGURES}: no run in {RESULTS / figure.results} matches {figure.select} with a {figure.field!r} field"
        )
    return Measured(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


def _paper(paper: str | None) -> str:
    if paper is None:
        return "no paper of its own"
    return _ARXIV.sub(lambda m: f"([arXiv:{m.group(1)}](https://arxiv.org/abs/{m.group(1)}))", paper)


def _short_paper(paper: str | None) -> str:
    if paper is None:
        return "—"
    authors = paper.split(":", 1)[0]
    found = _ARXIV.search(paper)
    return f"[{authors}](https://arxiv.org/abs/{found.group(1)})" if found else authors


def _updater_ref(path: str) -> str:
    return f"[`{path.rpartition('.')[2]}`][{path}]"


def _memory(spec: Any) -> str:
    if spec.memory_policy is None:
        return "none"
    when = "each step" if spec.memory_insertion == "step" else "at the end of each update"
    return f"{spec.memory_policy}, filled {when}"


def _name(figure: Figure) -> str:
    return f"{figure.label}, {figure.setting}" + ("" if figure.memory is None else f", memory {figure.memory}")


def _headline(measured: list[tuple[Figure, Measured]]) -> str:
    """A method's first figure, for the overview table."""
    if not measured:
        return "not benchmarked yet"
    figure, got = measured[0]
    paper = "" if figure.published is None else f" (paper {figure.published:.2f})"
    return f"{_name(figure)}: **{got.mean:.2f}**{paper}"


def _figure_rows(measured: list[tuple[Figure, Measured]], protocols: dict[str, str]) -> list[str]:
    keys = list(protocols)
    rows = [
        "| figure | protocol | setting | memory | measured ACC % (mean ± std, runs) | published | difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for figure, got in measured:
        published = "—" if figure.published is None else f"{figure.published:.2f}"
        difference = "—" if figure.published is None else f"{got.mean - figure.published:+.2f}"
        memory = "—" if figure.memory is None else str(figure.memory)
        rows.append(
            f"| {figure.label} | [{keys.index(figure.protocol) + 1}](#protocols) | {figure.setting} | {memory} "
            f"| {got.mean:.2f} ± {got.std:.2f} ({got.runs}) | {published} | {difference} |"
        )
    return rows


def _method_section(spec: Any, measured: list[tuple[Figure, Measured]], protocols: dict[str, str]) -> list[str]:
    names = [name for name in spec.names if name not in (spec.name, spec.class_name, spec.renate_name)]
    configs = ", ".join(f"`configs/{config}.yaml`" for config in spec.configs) or "none"
    lines = [
        f"## {spec.name}",
        "",
        f"{spec.summary[0].upper()}{spec.summary[1:]}.",
        "",
        f"- **Paper:** {_paper(spec.paper)}",
        f"- **Updater:** {_updater_ref(spec.updater)}",
        f"- **Renate name:** {f'`{spec.renate_name}`' if spec.renate_name else '— (not in Renate)'}",
        f"- **Config:** {configs} (`updater: {spec.name}`)",
        f"- **Also answers to:** {', '.join(f'`{name}`' for name in names) if names else '—'}",
        f"- **Memory:** {_memory(spec)}",
        "",
    ]
    if measured:
        sources = dict.fromkeys(f"`{RESULTS / figure.results}`" for figure, _ in measured)
        notes = [f"- {_name(figure)}: {figure.note}." for figure, _ in measured if figure.note]
        lines += [*_figure_rows(measured, protocols), "", f"Runs: {', '.join(sources)}.", "", *notes]
    else:
        lines.append("No benchmark run of this method is recorded in `benchmarks/results/` yet.")
    return [*lines, ""]


def catalogue_markdown(repo: Path = REPO) -> str:
    """The whole catalogue page as Markdown."""
    from retentive.methods import all_methods

    specs = all_methods(entry_points=False)
    protocols, figures = load_figures(repo)
    known = {spec.name for spec in specs}
    unknown = sorted({figure.method for figure in figures} - known)
    if unknown:
        raise CatalogueError(f"{FIGURES}: figures for methods the registry does not know: {unknown}")
    measured = {spec.name: [(f, measure(f, repo)) for f in figures if f.method == spec.name] for spec in specs}
    lines = [
        "# Method catalogue",
        "",
        f"The {len(specs)} methods retentive ships, generated from the method registry "
        "(`retentive/methods/`) when the site is built; `retentive benchmark --list-methods` prints the same "
        "registry. Each method's measured figures are read from the runs in `benchmarks/results/` and set "
        "beside the published figure where a paper reports the same protocol (`benchmarks/catalogue.yaml` "
        "pairs them). A config `NAME` is used as `retentive update --config configs/NAME.yaml`; a Renate name "
        "is what `run_training_job(updater=...)` takes. Below the table, one section per method.",
        "",
        "| method | paper | Renate name | config | measured ACC % (published) |",
        "|---|---|---|---|---|",
    ]
    for spec in specs:
        config = f"`{spec.configs[0]}`" if spec.configs else "—"
        lines.append(
            f"| [{spec.name}](#{spec.name.replace('+', '')}) | {_short_paper(spec.paper)} "
            f"| {spec.renate_name or '—'} | {config} | {_headline(measured[spec.name])} |"
        )
    lines += ["", "## Protocols", ""]
    lines += [f"{number}. {text}" for number, text in enumerate(protocols.values(), start=1)]
    lines.append("")
    for spec in specs:
        lines += _method_section(spec, measured[spec.name], protocols)
    return "\n".join(lines)


def updaters_reference() -> str:
    """The API reference page of the updaters: ``ModelUpdater``, then each registered method's updater
    in registry order (the registry, not a hand-kept list, decides which updaters exist)."""
    from retentive.methods import all_methods

    lines = [
        "# Updaters",
        "",
        "`ModelUpdater` and the updater of every registered method, in the order of the "
        "[method catalogue](../methods/index.md); each is importable from `retentive` and `retentive.updaters`.",
        "",
        "::: retentive.updaters.base.ModelUpdater",
        "",
        "::: retentive.updaters.base.split_batch",
        "",
    ]
    for spec in all_methods(entry_points=False):
        lines += [f"::: {spec.updater}", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # print the page, to read it without building the site
    print(catalogue_markdown())
