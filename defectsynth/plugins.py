"""The plugin host: discovery, isolation, listing.

Discovery order (first registration of a name wins, later duplicates are load errors):

1. built-ins (``BUILTIN_PLUGINS``), registered through the same hooks as anyone's;
2. installed distributions' entry points in group ``defectsynth``;
3. ``*.py`` files in plugin folders the user named: ``--plugin-dir``, the
   ``DEFECTSYNTH_PLUGIN_DIRS`` variable, and a recipe's ``plugin_dirs``.

No folder is ever searched unless someone named it. ``DEFECTSYNTH_LOAD_PLUGINS=a,b``
restricts entry-point and file plugins to the named ones (built-ins always load);
``DEFECTSYNTH_TRACE_PLUGINS=1`` prints every hook call to stderr.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import UnknownNameError, did_you_mean
from .generator import DefectGenerator, validate_generator_class
from .writing import DatasetWriter, validate_writer_class

ENTRY_POINT_GROUP = "defectsynth"
PLUGIN_DIRS_ENV = "DEFECTSYNTH_PLUGIN_DIRS"
LOAD_PLUGINS_ENV = "DEFECTSYNTH_LOAD_PLUGINS"
TRACE_ENV = "DEFECTSYNTH_TRACE_PLUGINS"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "defectsynth.defects.scratch",
    "defectsynth.defects.dent",
    "defectsynth.defects.discoloration",
    "defectsynth.defects.crack",
    "defectsynth.defects.pit",
    "defectsynth.defects.stain",
    "defectsynth.defects.crazing",
    "defectsynth.defects.inclusion",
    "defectsynth.defects.patches",
    "defectsynth.defects.pitted",
    "defectsynth.defects.scale",
    "defectsynth.defects.chip",
    "defectsynth.defects.transplant",
    "defectsynth.writers.coco",
    "defectsynth.writers.yolo",
    "defectsynth.writers.voc",
    "defectsynth.writers.anomaly",
)

HOOKS = ("register_generators", "register_writers")


@dataclass
class PluginInfo:
    """One plugin as the host saw it."""

    name: str
    source: str  # "builtin", "entry point", or the file path
    version: str | None = None
    generators: list[str] = field(default_factory=list)
    writers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)

    def to_dict(self, verbose: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "generators": self.generators,
            "writers": self.writers,
            "errors": self.errors,
        }
        if verbose:
            d["tracebacks"] = self.tracebacks
        return d


def _env_dirs() -> list[Path]:
    raw = os.environ.get(PLUGIN_DIRS_ENV, "")
    return [Path(p) for p in raw.split(os.pathsep) if p.strip()]


def _only_filter() -> set[str] | None:
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0] if text else type(exc).__name__


class PluginHost:
    """Loads plugins once and answers which generators and writers exist.

    :param plugin_dirs: folders whose ``*.py`` files are loaded as plugins (in addition
        to ``DEFECTSYNTH_PLUGIN_DIRS``).
    :param entry_points: load installed distributions' entry points.
    :param trace: print every hook call to stderr (also ``DEFECTSYNTH_TRACE_PLUGINS=1``).
    """

    def __init__(
        self,
        plugin_dirs: Iterable[str | os.PathLike[str]] = (),
        *,
        entry_points: bool = True,
        builtins: Sequence[str] = BUILTIN_PLUGINS,
        trace: bool | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager("defectsynth")
        self.pm.add_hookspecs(hookspecs)
        self.trace = bool(os.environ.get(TRACE_ENV)) if trace is None else trace
        self.plugins: list[PluginInfo] = []
        self.generators: dict[str, type[DefectGenerator]] = {}
        self.writers: dict[str, type[DatasetWriter]] = {}
        self._owner: dict[tuple[str, str], PluginInfo] = {}
        self._info_of: dict[str, PluginInfo] = {}  # pluggy's plugin name -> its info
        if self.trace:
            self.pm.add_hookcall_monitoring(self._trace_before, self._trace_after)
        only = _only_filter()
        for modname in builtins:
            short = modname.rsplit(".", 1)[-1]
            info = PluginInfo(name=short, source="builtin", version=_own_version())
            self._load(info, lambda m=modname: importlib.import_module(m))  # type: ignore[misc]
        if entry_points:
            for ep in sorted(
                importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
            ):
                if only is not None and ep.name not in only:
                    continue
                version = ep.dist.version if ep.dist is not None else None
                info = PluginInfo(name=ep.name, source="entry point", version=version)
                self._load(info, ep.load)
        dirs = [Path(d) for d in plugin_dirs] + _env_dirs()
        seen: set[Path] = set()
        for d in dirs:
            self.add_plugin_dir(d, _seen=seen, _only=only)

    # -- loading --------------------------------------------------------------------------

    def add_plugin_dir(
        self,
        directory: str | os.PathLike[str],
        *,
        _seen: set[Path] | None = None,
        _only: set[str] | None = None,
    ) -> None:
        """Load every ``*.py`` file in ``directory`` (sorted by name) as a plugin."""
        only = _only if _seen is not None else _only_filter()
        seen = _seen if _seen is not None else set()
        d = Path(directory)
        resolved = d.resolve()
        if resolved in seen or resolved in getattr(self, "_dirs_loaded", set()):
            return
        seen.add(resolved)
        self._dirs_loaded: set[Path] = getattr(self, "_dirs_loaded", set()) | {resolved}
        if not d.is_dir():
            info = PluginInfo(name=str(d), source=str(d))
            info.errors.append(f"plugin folder {str(d)!r} does not exist or is not a folder")
            self.plugins.append(info)
            return
        for path in sorted(d.glob("*.py")):
            if path.name.startswith("_"):
                continue
            if only is not None and path.stem not in only:
                continue
            info = PluginInfo(name=path.stem, source=str(path))
            self._load(info, lambda p=path: _import_file(p))  # type: ignore[misc]

    def _load(self, info: PluginInfo, importer: Callable[[], Any]) -> None:
        self.plugins.append(info)
        try:
            plugin = importer()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # isolation: report and go on (SystemExit, pytest.skip)
            self._fail(info, f"failed to import: {_one_line(exc)}", exc)
            return
        if info.version is None:
            v = getattr(plugin, "__version__", None)
            info.version = str(v) if v is not None else None
        pm_name = f"{info.source}:{info.name}"
        try:
            self.pm.register(plugin, name=pm_name)
            self.pm.check_pending()
        except Exception as exc:  # noqa: BLE001
            try:
                self.pm.unregister(plugin)
            except Exception:  # noqa: BLE001
                pass
            self._fail(info, f"invalid plugin: {_one_line(exc)}", exc)
            return
        self._info_of[pm_name] = info
        # the hooks are called through pluggy (its tracing, wrappers and ordering apply),
        # for this plugin alone: a plugin that raises is reported by name, and the
        # plugins before it are not called again
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        for hook in HOOKS:
            if any(i.plugin is plugin for i in getattr(self.pm.hook, hook).get_hookimpls()):
                self._call(info, hook, self.pm.subset_hook_caller(hook, remove_plugins=others))

    def _call(self, info: PluginInfo, hook: str, caller: Callable[..., Any]) -> None:
        kind = "generator" if hook == "register_generators" else "writer"

        def register(cls: Any) -> None:
            try:
                if kind == "generator":
                    validate_generator_class(cls)
                else:
                    validate_writer_class(cls)
            except Exception as exc:  # noqa: BLE001
                self._fail(info, f"registered an invalid {kind}: {exc}", exc)
                return
            table: dict[str, Any] = self.generators if kind == "generator" else self.writers
            owner = self._owner.get((kind, cls.name))
            if owner is not None:
                msg = (
                    f"{kind} {cls.name!r} is already provided by plugin {owner.name!r} "
                    f"({owner.source}); this one ({info.source}) was not loaded"
                )
                self._fail(info, msg, None)
                return
            table[cls.name] = cls
            self._owner[(kind, cls.name)] = info
            (info.generators if kind == "generator" else info.writers).append(cls.name)

        try:
            caller(register=register)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: report and go on
            self._fail(info, f"{hook} raised {_one_line(exc)}", exc)

    # -- tracing (pluggy's hook-call monitoring) -------------------------------------------

    def _trace_before(self, hook: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        for impl in impls:
            info = self._info_of.get(impl.plugin_name)
            if info is not None:
                print(
                    f"[defectsynth] calling {hook} of plugin {info.name!r} ({info.source})",
                    file=sys.stderr,
                )

    def _trace_after(
        self, outcome: Any, hook: str, impls: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        if outcome.exception is not None:
            return
        for impl in impls:
            info = self._info_of.get(impl.plugin_name)
            if info is not None:
                names = info.generators if hook == "register_generators" else info.writers
                print(f"[defectsynth]   {hook} of {info.name!r} -> {names}", file=sys.stderr)

    @staticmethod
    def _fail(info: PluginInfo, message: str, exc: BaseException | None) -> None:
        info.errors.append(message)
        if exc is not None:
            info.tracebacks.append("".join(traceback.format_exception(exc)))

    # -- lookups --------------------------------------------------------------------------

    @property
    def errors(self) -> list[str]:
        return [f"plugin {p.name!r} ({p.source}): {e}" for p in self.plugins for e in p.errors]

    def generator(self, name: str) -> type[DefectGenerator]:
        try:
            return self.generators[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown generator {name!r}"
                + did_you_mean(name, self.generators)
                + f"; available: {', '.join(sorted(self.generators)) or '(none)'}"
            ) from None

    def writer(self, name: str) -> type[DatasetWriter]:
        try:
            return self.writers[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown output format {name!r}"
                + did_you_mean(name, self.writers)
                + f"; available: {', '.join(sorted(self.writers)) or '(none)'}"
            ) from None

    def provider(self, kind: str, name: str) -> PluginInfo | None:
        """The plugin that registered generator/writer ``name``."""
        return self._owner.get((kind, name))


def _own_version() -> str:
    from . import __version__

    return __version__


def _import_file(path: Path) -> ModuleType:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    modname = f"defectsynth_plugin_{path.stem}_{digest}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[modname]
        raise
    return module


_default_host: PluginHost | None = None


def get_host(plugin_dirs: Iterable[str | os.PathLike[str]] = ()) -> PluginHost:
    """The process-wide host (built once), with any extra plugin folders added."""
    global _default_host
    if _default_host is None:
        _default_host = PluginHost()
    for d in plugin_dirs:
        _default_host.add_plugin_dir(d)
    return _default_host

