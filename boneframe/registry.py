"""The plugin registry: strategies from the ``boneframe`` entry-point group.

Every strategy, built-ins included, comes from an entry point. A plugin that
fails to import or to answer its hooks is recorded as a :class:`LoadFailure`
(one line, naming the entry point and package) and the rest keeps working; two
strategies with the same kind and name are both refused, with an error that
names both packages.
"""

from __future__ import annotations

import functools
import importlib.metadata as importlib_metadata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, overload

import pluggy

from boneframe import hookspecs
from boneframe.errors import PluginError
from boneframe.interfaces import (
    Contouring,
    Metric,
    Regularizer,
    Segmentation,
    Similarity,
    Solver,
    Strategy,
    VolumeFormat,
)

ENTRY_POINT_GROUP = "boneframe"

#: kind -> (hook name, base class)
KINDS: dict[str, tuple[str, type[Strategy]]] = {
    "similarity": ("boneframe_similarities", Similarity),
    "regularizer": ("boneframe_regularizers", Regularizer),
    "solver": ("boneframe_solvers", Solver),
    "metric": ("boneframe_metrics", Metric),
    "format": ("boneframe_formats", VolumeFormat),
    "segmentation": ("boneframe_segmentations", Segmentation),
    "contour": ("boneframe_contourings", Contouring),
}


@dataclass(frozen=True)
class Entry:
    """One registered strategy and where it came from."""

    kind: str
    name: str
    cls: type[Strategy]
    plugin: str
    package: str
    version: str

    @property
    def description(self) -> str:
        """One-line description (the class's ``description`` or docstring)."""
        text = self.cls.description or (self.cls.__doc__ or "").strip()
        return text.splitlines()[0] if text else ""


@dataclass(frozen=True)
class LoadFailure:
    """A plugin that could not be loaded or registered."""

    plugin: str
    package: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} from package {self.package!r} failed to load: {self.error}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class Registry:
    """Strategies by kind and name, loaded from entry points.

    Parameters
    ----------
    entry_points : iterable of importlib.metadata.EntryPoint, optional
        Defaults to the installed ``boneframe`` group.
    """

    def __init__(self, entry_points: Iterable[importlib_metadata.EntryPoint] | None = None):
        if entry_points is None:
            entry_points = importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.failures: list[LoadFailure] = []
        self._entries: dict[tuple[str, str], Entry] = {}
        self._conflicts: dict[tuple[str, str], list[Entry]] = {}
        for ep in sorted(entry_points, key=lambda e: e.name):
            self._load(ep)

    def _load(self, ep: importlib_metadata.EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        package = dist.name if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        try:
            module = ep.load()
            self.manager.register(module, name=f"{package}:{ep.name}")
        except (Exception, SystemExit) as exc:  # a broken plugin must not break the tool
            self.failures.append(LoadFailure(ep.name, package, _describe(exc)))
            return
        found: list[Entry] = []
        for kind, (hook_name, base) in KINDS.items():
            hook = getattr(self.manager.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin is not module:
                    continue
                try:
                    classes = list(impl.function() or [])
                    for cls in classes:
                        if not (isinstance(cls, type) and issubclass(cls, base)):
                            raise TypeError(f"{hook_name} returned {cls!r}, not a {base.__name__}")
                        if not cls.name:
                            raise TypeError(f"{cls.__name__} has no name")
                        found.append(Entry(kind, cls.name, cls, ep.name, package, version))
                except (Exception, SystemExit) as exc:
                    self.manager.unregister(module)
                    self.failures.append(LoadFailure(ep.name, package, _describe(exc)))
                    return
        for entry in found:
            self._add(entry)

    def _add(self, entry: Entry) -> None:
        key = (entry.kind, entry.name)
        if key in self._conflicts:
            self._conflicts[key].append(entry)
        elif key in self._entries:
            self._conflicts[key] = [self._entries.pop(key), entry]
        else:
            self._entries[key] = entry

    # -- lookup ---------------------------------------------------------------
    def entries(self, kind: str | None = None) -> list[Entry]:
        """Registered strategies (conflicting ones excluded), sorted by kind and name."""
        out = [e for e in self._entries.values() if kind is None or e.kind == kind]
        return sorted(out, key=lambda e: (e.kind, e.name))

    def names(self, kind: str) -> list[str]:
        """Names available for ``kind``."""
        return [e.name for e in self.entries(kind)]

    @property
    def conflicts(self) -> Mapping[tuple[str, str], list[Entry]]:
        """Strategies refused because two packages registered the same kind and name."""
        return dict(self._conflicts)

    def conflict_message(self, kind: str, name: str) -> str:
        """The error for a refused duplicate (kind, name)."""
        entries = self._conflicts[(kind, name)]
        where = " and ".join(f"{e.package} {e.version} (entry point {e.plugin!r})" for e in entries)
        return f"{kind} {name!r} is registered twice, by {where}; uninstall one of them"

    def entry(self, kind: str, name: str) -> Entry:
        """The entry for ``kind``/``name``, or a :class:`PluginError` that says what exists."""
        if kind not in KINDS:
            raise PluginError(f"unknown strategy kind {kind!r}; kinds are {', '.join(KINDS)}")
        key = (kind, name)
        if key in self._entries:
            return self._entries[key]
        if key in self._conflicts:
            raise PluginError(self.conflict_message(kind, name))
        available = ", ".join(self.names(kind)) or "none"
        msg = f"unknown {kind} {name!r}; available: {available}"
        if self.failures:
            msg += "; plugins that failed to load: " + ", ".join(f.plugin for f in self.failures)
        raise PluginError(msg)

    @overload
    def get(self, kind: Literal["similarity"], name: str) -> type[Similarity]: ...

    @overload
    def get(self, kind: Literal["regularizer"], name: str) -> type[Regularizer]: ...

    @overload
    def get(self, kind: Literal["solver"], name: str) -> type[Solver]: ...

    @overload
    def get(self, kind: Literal["metric"], name: str) -> type[Metric]: ...

    @overload
    def get(self, kind: Literal["format"], name: str) -> type[VolumeFormat]: ...

    @overload
    def get(self, kind: Literal["segmentation"], name: str) -> type[Segmentation]: ...

    @overload
    def get(self, kind: Literal["contour"], name: str) -> type[Contouring]: ...

    @overload
    def get(self, kind: str, name: str) -> type[Strategy]: ...

    def get(self, kind: str, name: str) -> type[Strategy]:
        """The strategy class for ``kind``/``name``."""
        return self.entry(kind, name).cls

    @overload
    def create(
        self, kind: Literal["similarity"], name: str, params: Any = None, **overrides: Any
    ) -> Similarity: ...

    @overload
    def create(
        self, kind: Literal["regularizer"], name: str, params: Any = None, **overrides: Any
    ) -> Regularizer: ...

    @overload
    def create(
        self, kind: Literal["solver"], name: str, params: Any = None, **overrides: Any
    ) -> Solver: ...

    @overload
    def create(
        self, kind: Literal["metric"], name: str, params: Any = None, **overrides: Any
    ) -> Metric: ...

    @overload
    def create(
        self, kind: Literal["format"], name: str, params: Any = None, **overrides: Any
    ) -> VolumeFormat: ...

    @overload
    def create(
        self, kind: Literal["segmentation"], name: str, params: Any = None, **overrides: Any
    ) -> Segmentation: ...

    @overload
    def create(
        self, kind: Literal["contour"], name: str, params: Any = None, **overrides: Any
    ) -> Contouring: ...

    @overload
    def create(self, kind: str, name: str, params: Any = None, **overrides: Any) -> Strategy: ...

    def create(self, kind: str, name: str, params: Any = None, **overrides: Any) -> Strategy:
        """An instance of ``kind``/``name`` with validated parameters."""
        return self.get(kind, name)(params, **overrides)


@functools.cache
def get_registry() -> Registry:
    """The registry of the installed ``boneframe`` entry points (built once)."""
    return Registry()
