"""A griffe extension (mkdocs.yml, mkdocstrings ``extensions``): the docstrings' Sphinx roles
(:class:`~retentive.models.MLP`, :meth:`update`) shown as inline code (``MLP``, ``update``), as a
reader of the source sees them, instead of the raw role markup Markdown would print."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")


def _code(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rpartition('.')[2] if match.group(1) else target}`"


class SphinxRolesAsCode(griffe.Extension):
    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_code, obj.docstring.value)
