"""The method catalogue (docs/methods/index.md) is generated from the method registry and the benchmark
results: every registered method is on it, a plug-in's method too, and its figures are the runs'."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
from script_modules import load_script

from retentive.methods import MethodSpec, all_methods, register, unregister

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    return load_script(f"scripts/docs/{name}.py", name)


catalogue = _load("method_catalogue")


@pytest.fixture(scope="module")
def page() -> str:
    return catalogue.catalogue_markdown(REPO)


def test_every_registered_method_has_a_row_and_a_section(page):
    specs = all_methods(entry_points=False)
    assert len(specs) >= 26
    sections = re.findall(r"^## (\S+)$", page, flags=re.M)
    rows = re.findall(r"^\| \[([^\]]+)\]\(#", page, flags=re.M)
    assert [spec.name for spec in specs] == [s for s in sections if s != "Protocols"] == rows
    for spec in specs:
        section = page.split(f"\n## {spec.name}\n", 1)[1].split("\n## ", 1)[0]
        assert f"[`{spec.class_name}`][{spec.updater}]" in section
        for config in spec.configs:
            assert f"`configs/{config}.yaml`" in section
            assert (REPO / "configs" / f"{config}.yaml").is_file()
        if spec.paper is not None:
            assert spec.paper.split(":")[0] in section
        if spec.renate_name:
            assert f"`{spec.renate_name}`" in section


def test_a_method_registered_later_appears_without_editing_the_generator():
    spec = MethodSpec("docs-probe", "docs_probe.ProbeModelUpdater", "a probe", paper="Nobody, 2026: Probe")
    register(spec)
    try:
        page = catalogue.catalogue_markdown(REPO)
    finally:
        unregister("docs-probe")
    assert "\n## docs-probe\n" in page and "Nobody, 2026: Probe" in page
    assert "No benchmark run of this method is recorded" in page.split("\n## docs-probe\n", 1)[1]


def test_a_figure_is_the_mean_of_its_runs_beside_the_published_one(page):
    runs = json.loads((REPO / "benchmarks/results/der_protocol.json").read_text())
    values = [run["accuracy"] for run in runs if run["method"] == "derpp" and run["memory"] == 500]
    mean, std = statistics.mean(values), statistics.stdev(values)
    assert f"| DER++ | [1](#protocols) | class-IL | 500 | {mean:.2f} ± {std:.2f} ({len(values)}) | 91.00 | " in page
    fractions = [
        json.loads(path.read_text())["average_accuracy"] * 100
        for path in sorted((REPO / "benchmarks/results/er_family").glob("mlp_gdumb_m500_s*.json"))
    ]
    assert f"{statistics.mean(fractions):.2f} ± {statistics.stdev(fractions):.2f} ({len(fractions)})" in page


def test_every_figure_names_existing_runs_and_methods():
    protocols, figures = catalogue.load_figures(REPO)
    names = {spec.name for spec in all_methods(entry_points=False)}
    for figure in figures:
        assert figure.method in names
        assert catalogue.measure(figure, REPO).runs >= 1


def test_a_figure_without_runs_fails_the_build():
    figure = catalogue.Figure(
        "er",
        "ER",
        "der-seq-mnist",
        "class-IL",
        200,
        80.43,
        "der_protocol.json",
        "accuracy",
        {"method": "er", "memory": 200},
    )
    missing = catalogue.Figure(**{**figure.__dict__, "select": {"method": "er", "memory": 123}})
    assert catalogue.measure(figure, REPO).runs == 10
    with pytest.raises(catalogue.CatalogueError, match="no run"):
        catalogue.measure(missing, REPO)


def test_the_updaters_reference_lists_every_registered_updater():
    page = catalogue.updaters_reference()
    for spec in all_methods(entry_points=False):
        assert f"::: {spec.updater}\n" in page


def test_a_paper_is_one_line():
    with pytest.raises(ValueError, match="paper must be one non-empty line"):
        MethodSpec("docs-probe", "docs_probe.ProbeModelUpdater", "a probe", paper="A\nB")
