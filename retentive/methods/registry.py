"""The method registry: one :class:`MethodSpec` per continual-learning method, and every list of
methods the library shows derived from it.

A spec is plain data naming its classes by import path, so registering and listing methods
imports neither torch nor Lightning; a class is imported when it is first asked for. The built-in
specs live in the modules of :mod:`retentive.methods` (one per method family) and are found by
discovery; a method from outside the package registers itself with :func:`register`, from any
module, or through the ``retentive.methods`` entry point group (the entry point names a module,
or a callable returning a spec or specs, loaded on the first look-up). From the registry come:
the public names of :mod:`retentive` and :mod:`retentive.updaters`, the method components of
:mod:`retentive.components`, the updater names a config or methods file may use, the table that
``retentive benchmark --list-methods`` prints, Renate's ``updater`` names for
``run_training_job`` and the updaters a Renate state folder can be imported for.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from typing import Any

ENTRY_POINT_GROUP = "retentive.methods"
MEMORY_INSERTIONS = ("step", "update_end")

_SPECS: dict[str, MethodSpec] = {}
_NAMES: dict[str, str] = {}  # every name and alias -> the spec's name
_DISCOVERED = {"builtin": False, "entry_points": False}


def split_path(path: str) -> tuple[str, str]:
    """``"package.module.Name"`` -> ``("package.module", "Name")``; an error names the path."""
    module, _, attribute = path.rpartition(".")
    if not module or not attribute.isidentifier() or not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(f"expected an import path like package.module.Name, got {path!r}")
    return module, attribute


def import_path(path: str) -> Any:
    """The object at ``package.module.Name``, imported now."""
    module, attribute = split_path(path)
    return getattr(importlib.import_module(module), attribute)


class MethodSpec:
    """One method: its name, where its classes live, and the names it answers to.

    Args:
        name: the registry name (lower case, as in tables and ``configs/<config>.yaml``).
        updater: the import path of its :class:`~retentive.updaters.ModelUpdater` subclass,
            imported on first use.
        summary: one line for method tables: what the method does.
        renate_name: Renate's ``updater`` name (``run_training_job(updater="DER")``), if any.
        aliases: further names it answers to (the updater's class name is always one).
        configs: the stems of its example configs in ``configs/`` (the first is the canonical one).
        components: import paths of the loss components it brings, exported by :mod:`retentive`.
        exports: import paths of other public names it brings (its reference model, ...).
        memory_policy: what its memory keeps by default (``"reservoir"``, ``"greedy_class_balanced"``,
            ``"task_balanced"``, ``"herding"``, ...); ``None``: it keeps no memory by default.
        memory_insertion: when new samples reach the memory: each ``"step"``, or at ``"update_end"``.
        renate_import: the components, in order, its learner holds when it continues from a
            Renate state folder (``retentive import-renate``); ``None``: it cannot.
        paper: the paper that introduced the method, ``"Authors, Venue Year: Title"`` with
            ``arXiv:ID`` where there is one (the method catalogue links it); ``None`` for a baseline
            or a combination without a paper of its own.
    """

    __slots__ = (
        "aliases",
        "components",
        "configs",
        "exports",
        "memory_insertion",
        "memory_policy",
        "name",
        "paper",
        "renate_import",
        "renate_name",
        "summary",
        "updater",
    )

    name: str
    updater: str
    summary: str
    renate_name: str | None
    aliases: tuple[str, ...]
    configs: tuple[str, ...]
    components: tuple[str, ...]
    exports: tuple[str, ...]
    memory_policy: str | None
    memory_insertion: str
    renate_import: tuple[str, ...] | None
    paper: str | None

    def __init__(
        self,
        name: str,
        updater: str,
        summary: str,
        *,
        renate_name: str | None = None,
        aliases: Iterable[str] = (),
        configs: Iterable[str] = (),
        components: Iterable[str] = (),
        exports: Iterable[str] = (),
        memory_policy: str | None = "reservoir",
        memory_insertion: str = "step",
        renate_import: Iterable[str] | None = None,
        paper: str | None = None,
    ) -> None:
        values = {
            "name": name,
            "updater": updater,
            "summary": summary,
            "renate_name": renate_name,
            "aliases": tuple(aliases),
            "configs": tuple(configs),
            "components": tuple(components),
            "exports": tuple(exports),
            "memory_policy": memory_policy,
            "memory_insertion": memory_insertion,
            "renate_import": None if renate_import is None else tuple(renate_import),
            "paper": paper,
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)
        self._check()

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"a MethodSpec is immutable; register a new one (replace=True) to change {key!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MethodSpec) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"MethodSpec({self.name!r}, {self.updater!r})"

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, key) for key in self.__slots__)

    def _check(self) -> None:
        """Refuse a malformed spec when it is written, not when a list derived from it is read."""
        if not self.name or not self.name.replace("-", "").replace("+", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"a method name is lower-case letters, digits, '-' or '+', got {self.name!r}")
        for path in (self.updater, *self.components, *self.exports):
            split_path(path)
        if self.memory_insertion not in MEMORY_INSERTIONS:
            raise ValueError(
                f"method {self.name!r}: memory_insertion must be one of {MEMORY_INSERTIONS}, "
                f"got {self.memory_insertion!r}"
            )
        if not self.summary or "\n" in self.summary:
            raise ValueError(f"method {self.name!r}: summary must be one non-empty line")
        if self.paper is not None and (not self.paper or "\n" in self.paper):
            raise ValueError(f"method {self.name!r}: paper must be one non-empty line or None")

    @property
    def class_name(self) -> str:
        """The updater's class name (also a name the method answers to)."""
        return split_path(self.updater)[1]

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the method answers to: its name, Renate's name, its class name, its aliases."""
        found = [self.name, *([self.renate_name] if self.renate_name else []), self.class_name, *self.aliases]
        return tuple(dict.fromkeys(found))

    def updater_class(self) -> type:
        """The updater class, imported now."""
        cls: type = import_path(self.updater)
        return cls


def register(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to the registry; a name or alias already taken by another method is refused
    (``replace=True`` replaces a method of the same name). Returns ``spec``."""
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"register() takes a MethodSpec, got {type(spec).__name__}")
    discover(entry_points=False)  # the built-in names first, so that a plug-in cannot take one unseen
    old = _SPECS.get(spec.name)
    if old is not None and old != spec and not replace:
        raise ValueError(
            f"a method named {spec.name!r} is already registered ({old.updater}); pass replace=True to replace it"
        )
    taken = {n: _NAMES[n] for n in spec.names if n in _NAMES and _NAMES[n] != spec.name}
    if taken:
        raise ValueError(
            f"method {spec.name!r}: the names {sorted(taken)} already belong to {sorted(set(taken.values()))}"
        )
    if old is not None:
        for alias in old.names:
            _NAMES.pop(alias, None)
    _SPECS[spec.name] = spec
    _NAMES.update(dict.fromkeys(spec.names, spec.name))
    return spec


def family(module: str, **defaults: Any) -> Callable[..., MethodSpec]:
    """The registering function of one family module, so that its specs read as a table.

    ``method(name, class_name, summary, **fields)`` registers
    ``MethodSpec(name, f"{module}.{class_name}", summary, **fields)`` with the family's
    ``defaults`` under ``fields``. ``configs`` defaults to the name's config stem (``pod-er`` ->
    ``pod_er``), and a component given by its bare name is one of :mod:`retentive.components`.
    """

    def method(name: str, class_name: str, summary: str, **fields: Any) -> MethodSpec:
        fields = {**defaults, **fields}
        fields.setdefault("configs", (name.replace("-", "_"),))
        components = fields.get("components", ())
        fields["components"] = tuple(c if "." in c else f"retentive.components.{c}" for c in components)
        return register(MethodSpec(name, f"{module}.{class_name}", summary, **fields))

    return method


def unregister(name: str) -> MethodSpec:
    """Remove a method (by any of its names) and return its spec; for tests and plug-in reloads."""
    spec = get(name)
    del _SPECS[spec.name]
    for alias in spec.names:
        _NAMES.pop(alias, None)
    return spec


def _discover_builtin() -> None:
    import retentive.methods as package

    names = {
        entry.partition(".")[0] for folder in package.__path__ for entry in os.listdir(folder) if entry.endswith(".py")
    }
    for name in sorted(names - {"registry"}):
        if not name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{name}")


def _discover_entry_points() -> None:
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:  # a broken plug-in costs its own methods, not every look-up in the registry
            loaded = entry.load()  # a module that registers its methods, a spec, or a callable returning specs
            if callable(loaded) and not isinstance(loaded, (type, MethodSpec)):
                loaded = loaded()
            specs = [loaded] if isinstance(loaded, MethodSpec) else loaded if isinstance(loaded, (list, tuple)) else []
            for spec in specs:
                register(spec)
        except Exception as error:
            import warnings

            warnings.warn(
                f"the retentive method plug-in {entry.name!r} ({entry.value}) was skipped: {error}",
                RuntimeWarning,
                stacklevel=2,
            )


def discover(entry_points: bool = True) -> None:
    """Register the built-in methods and, with ``entry_points``, those of installed plug-ins (once)."""
    if not _DISCOVERED["builtin"]:
        _DISCOVERED["builtin"] = True
        _discover_builtin()
    if entry_points and not _DISCOVERED["entry_points"]:
        _DISCOVERED["entry_points"] = True
        _discover_entry_points()


def all_methods(entry_points: bool = True) -> tuple[MethodSpec, ...]:
    """Every registered method, built-in first, in registration order."""
    discover(entry_points)
    return tuple(_SPECS.values())


def get(name: str) -> MethodSpec:
    """The method answering to ``name``: its registry name, Renate's name, its class name or an alias."""
    discover(entry_points=False)
    if name not in _NAMES:
        discover()
    if name not in _NAMES:
        raise KeyError(f"no method named {name!r}; registered: {', '.join(_SPECS)}")
    return _SPECS[_NAMES[name]]


def find(name: str) -> MethodSpec | None:
    """:func:`get`, or ``None`` for a name no method answers to."""
    try:
        return get(name)
    except KeyError:
        return None


# ------------------------------------------------------------------------------ derived views


def _by_name(paths: Iterable[str]) -> dict[str, str]:
    return {split_path(path)[1]: split_path(path)[0] for path in paths}


def updater_exports(entry_points: bool = True) -> dict[str, str]:
    """Updater class name -> the module defining it, for every method."""
    return _by_name(spec.updater for spec in all_methods(entry_points))


def component_exports(entry_points: bool = True) -> dict[str, str]:
    """Public name -> module, for the components and other names the methods bring."""
    return _by_name(path for spec in all_methods(entry_points) for path in (*spec.components, *spec.exports))


def exports(entry_points: bool = True) -> dict[str, str]:
    """Every public name the methods add to :mod:`retentive` -> the module defining it."""
    return {**component_exports(entry_points), **updater_exports(entry_points)}


def renate_names(entry_points: bool = True) -> dict[str, str]:
    """Renate's ``updater`` names -> retentive's updater class names."""
    return {spec.renate_name: spec.class_name for spec in all_methods(entry_points) if spec.renate_name}


def config_names(entry_points: bool = True) -> dict[str, str]:
    """Every name a config may give as its updater -> the updater's import path."""
    return {alias: spec.updater for spec in all_methods(entry_points) for alias in spec.names}


def renate_importable(entry_points: bool = True) -> dict[str, tuple[str, ...]]:
    """Updater class name -> the components its learner holds, for the methods that can continue
    from an imported Renate state folder."""
    return {spec.class_name: spec.renate_import for spec in all_methods(entry_points) if spec.renate_import is not None}


TABLE_COLUMNS = ("method", "Renate name", "updater", "memory", "summary")


def method_rows(entry_points: bool = True) -> list[tuple[str, ...]]:
    """One row per method, in :data:`TABLE_COLUMNS`: the method table of ``retentive benchmark
    --list-methods`` and the docs."""
    rows: list[tuple[str, ...]] = []
    for spec in all_methods(entry_points):
        memory = "none" if spec.memory_policy is None else f"{spec.memory_policy} ({spec.memory_insertion})"
        rows.append((spec.name, spec.renate_name or "", spec.class_name, memory, spec.summary))
    return rows


def method_table(markdown: bool = False, entry_points: bool = True) -> str:
    """The registry as a text (or Markdown) table."""
    rows = [TABLE_COLUMNS, *method_rows(entry_points)]
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(1, "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|")
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
