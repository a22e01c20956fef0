"""MkDocs hooks (mkdocs.yml ``hooks:``) for the retentive site.

- A nav entry that is a glob (``Benchmarks: benchmarks/*.md``, or ``how-to/*.md`` at the end of a
  list of pages) becomes the pages it matches that the nav does not list elsewhere, an ``index.md``
  first, then by name: a new page in that folder needs no edit of mkdocs.yml. A glob standing alone
  that matches nothing stays as it is, and the strict build fails on it like on any missing page.
- The method catalogue (``methods/index.md``) and the updaters' API reference
  (``reference/updaters.md``) are generated from the method registry and the benchmark results
  (:mod:`method_catalogue`); a hand-written file at either path is refused.
- ``mkdocs serve`` also watches the registry, the figures file and the results.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # MkDocs restores sys.path after loading a hook
import method_catalogue  # noqa: E402  (a sibling module, found through the line above)

_WATCHED = ("retentive/methods", "benchmarks/catalogue.yaml", "benchmarks/results")


def _listed(entry: Any) -> set[str]:
    if isinstance(entry, list):
        return set().union(*(_listed(item) for item in entry))
    if isinstance(entry, dict):
        return set().union(*(_listed(value) for value in entry.values()))
    return {entry} if isinstance(entry, str) and "*" not in entry else set()


def _glob(pattern: str, docs: Path, listed: set[str]) -> list[str]:
    pages = sorted(p.relative_to(docs).as_posix() for p in docs.glob(pattern))
    return sorted((p for p in pages if p not in listed), key=lambda page: not page.endswith("index.md"))


def _expand(entry: Any, docs: Path, listed: set[str] | None = None) -> Any:
    """The nav with each glob replaced by the pages it matches that the nav does not list elsewhere."""
    listed = _listed(entry) if listed is None else listed
    if isinstance(entry, dict):
        return {title: _expand(value, docs, listed) for title, value in entry.items()}
    if isinstance(entry, str) and "*" in entry:
        return _glob(entry, docs, listed) or entry
    if not isinstance(entry, list):
        return entry
    expanded: list[Any] = []
    for item in entry:
        if isinstance(item, str) and "*" in item:  # a glob among pages: its pages join the list
            expanded.extend(_glob(item, docs, listed))
        else:
            expanded.append(_expand(item, docs, listed))
    return expanded


def on_config(config: Any) -> Any:
    config["nav"] = _expand(config["nav"], Path(config["docs_dir"]))
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    repo = Path(config["config_file_path"]).resolve().parent
    if str(repo) not in sys.path:  # the retentive documented is this checkout's, not another installed one
        sys.path.insert(0, str(repo))
    pages = {
        method_catalogue.PAGE: method_catalogue.catalogue_markdown(repo),
        method_catalogue.UPDATERS_PAGE: method_catalogue.updaters_reference(),
    }
    for page, content in pages.items():
        if files.get_file_from_path(page) is not None:
            raise method_catalogue.CatalogueError(f"docs/{page} is generated at build time; delete the file on disk")
        files.append(File.generated(config, page, content=content))
    return files


def on_serve(server: Any, config: Any, builder: Any) -> Any:
    repo = Path(config["config_file_path"]).resolve().parent
    for path in _WATCHED:
        server.watch(str(repo / path))
    return server
