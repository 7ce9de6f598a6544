"""``fmgate.toml``: model aliases, found and checked strictly.

    [models.assistant]
    backend = "openai"            # any backend name (fmgate backends lists them)
    model = "gpt-4o-mini"
    temperature = 0               # default generation params: max_tokens, temperature, top_p,
    max_tokens = 256              #   stop, seed, system, and <wire>_<name> backend params
    base_url = "https://..."      # optional endpoint override
    api_key_env = "MY_OPENAI_KEY" # optional: which env var holds the key
    timeout = 30                  # seconds

    [store]
    path = "runs/records.sqlite3" # the record store (relative to this file); "none" turns it off

The file is found from ``config=``, then ``$FMGATE_CONFIG``, then ``./fmgate.toml``, then the user
config dir (``platformdirs.user_config_dir("fmgate")``). Every error names the file, the table and
the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ConfigFileError, ConfigurationError, SpecError

CONFIG_ENV = "FMGATE_CONFIG"
FILE_NAME = "fmgate.toml"

# Keys of a [models.<alias>] table other than generation params, with their types.
CONNECTION_KEYS: dict[str, tuple[type, ...]] = {
    "backend": (str,),
    "model": (str,),
    "base_url": (str,),
    "api_key_env": (str,),
    "timeout": (int, float),
}
PARAM_KEYS: dict[str, tuple[type, ...]] = {
    "max_tokens": (int,),
    "temperature": (int, float),
    "top_p": (int, float),
    "stop": (str, list),
    "seed": (int,),
    "system": (str,),
}
TOP_LEVEL_KEYS = frozenset({"models", "store"})
STORE_KEYS: dict[str, tuple[type, ...]] = {"path": (str,)}


@dataclass(frozen=True, slots=True)
class AliasConfig:
    """One ``[models.<alias>]`` table, checked."""

    alias: str
    backend: str
    model: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<dict>"


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None
    models: Mapping[str, AliasConfig]
    # [store] path: "none", or a path made absolute against the file's folder; None: not set.
    store_path: str | None = None

    @classmethod
    def empty(cls) -> Config:
        return cls(None, {})


def find_config_path(config: str | os.PathLike[str] | None) -> Path | None:
    """The config file to use, or None when there is none anywhere."""
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConfigFileError(f"Config file {path} does not exist.")
        return path
    env = os.environ.get(CONFIG_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigFileError(f"{CONFIG_ENV} points to {path}, which does not exist.")
        return path
    local = Path.cwd() / FILE_NAME
    if local.is_file():
        return local
    from platformdirs import user_config_dir

    user = Path(user_config_dir("fmgate")) / FILE_NAME
    return user if user.is_file() else None


def load_config(config: str | os.PathLike[str] | Config | None = None) -> Config:
    if isinstance(config, Config):
        return config
    path = find_config_path(config)
    if path is None:
        return Config.empty()
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: cannot be read: {exc}") from exc
    return parse_config(data, source=str(path))


def parse_config(data: Mapping[str, Any], *, source: str = "<dict>") -> Config:
    unknown = set(data) - TOP_LEVEL_KEYS
    if unknown:
        raise ConfigFileError(
            f"{source}: unknown top-level key {sorted(unknown)[0]!r}; "
            "expected [models.<alias>] tables and a [store] table."
        )
    models = data.get("models", {})
    if not isinstance(models, Mapping):
        raise ConfigFileError(f"{source}: 'models' must be a table of [models.<alias>] tables.")
    parsed = {alias: _parse_alias(alias, table, source) for alias, table in models.items()}
    path = None if source == "<dict>" else Path(source)
    return Config(path, parsed, _parse_store(data.get("store", {}), source, path))


def _parse_store(table: Any, source: str, path: Path | None) -> str | None:
    where = f"{source}: [store]"
    if not isinstance(table, Mapping):
        raise ConfigFileError(f"{where} must be a table, not {type(table).__name__}.")
    for key, value in table.items():
        if key not in STORE_KEYS:
            raise ConfigFileError(f"{where}: unknown key {key!r}. Known keys: path.")
        check_type(where, key, value, STORE_KEYS[key], ConfigFileError)
    raw = table.get("path")
    if raw is None:
        return None
    if not raw.strip():
        raise ConfigFileError(f"{where}: 'path' must not be empty; write \"none\" to turn it off.")
    if raw.strip().lower() == "none":
        return "none"
    store = Path(raw).expanduser()
    if not store.is_absolute() and path is not None:
        store = path.parent / store
    return str(store)


def _parse_alias(alias: str, table: Any, source: str) -> AliasConfig:
    where = f"{source}: [models.{alias}]"
    if not isinstance(table, Mapping):
        raise ConfigFileError(f"{where} must be a table, not {type(table).__name__}.")
    if ":" in alias:
        raise ConfigFileError(
            f"{where}: an alias cannot contain ':' (that marks a backend:model spec)."
        )
    for required in ("backend", "model"):
        if required not in table:
            raise ConfigFileError(f"{where} is missing the key {required!r}.")
    for key, value in table.items():
        _check_key(where, key, value)
    for required in ("backend", "model"):
        if not table[required].strip():
            raise ConfigFileError(f"{where}: {required!r} must not be empty.")
    settings = {k: v for k, v in table.items() if k not in ("backend", "model")}
    return AliasConfig(alias, table["backend"], table["model"], settings, source)


def _check_key(where: str, key: str, value: Any) -> None:
    """Type-check the keys every backend shares; others are checked by load(), which knows the
    backend's own settings and parameter prefix."""
    types = CONNECTION_KEYS.get(key) or PARAM_KEYS.get(key)
    if types is not None:
        check_type(where, key, value, types, ConfigFileError)


def check_type(
    where: str, key: str, value: Any, types: tuple[type, ...], error: type[ConfigurationError]
) -> None:
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise error(f"{where}: {key!r} must be {names}, not {type(value).__name__}.")
    if key == "timeout" and isinstance(value, int | float) and value <= 0:
        raise error(f"{where}: 'timeout' must be a positive number of seconds.")


@dataclass(frozen=True, slots=True)
class Settings:
    """Alias settings or load() overrides, sorted by who takes them."""

    connection: dict[str, Any]
    options: dict[str, Any]
    params: dict[str, Any]


def classify(
    settings: Mapping[str, Any],
    *,
    backend_settings: Mapping[str, tuple[type, ...]],
    prefixes: tuple[str, ...],
    where: str,
    error: type[ConfigurationError],
) -> Settings:
    """Sort settings into connection keys, the backend's own settings and generation params;
    an unknown key is an ``error`` naming ``where`` and the keys that are known."""
    out = Settings({}, {}, {})
    for key, value in settings.items():
        if value is None:  # load(timeout=None) means "not set", as for any keyword default
            continue
        if key in CONNECTION_KEYS:
            check_type(where, key, value, CONNECTION_KEYS[key], error)
            out.connection[key] = value
        elif key in backend_settings:
            check_type(where, key, value, backend_settings[key], error)
            out.options[key] = value
        elif key in PARAM_KEYS or any(key.startswith(p + "_") for p in prefixes):
            out.params[key] = value
        else:
            known = ", ".join([*CONNECTION_KEYS, *PARAM_KEYS, *backend_settings])
            raise error(
                f"{where}: unknown key {key!r}. Known keys: {known}, or "
                f"{prefixes[0]}_<name> for a backend-specific parameter."
            )
    return out


def parse_spec(spec: str) -> tuple[str, str]:
    """``"backend:model"`` -> (backend, model). The model part may itself contain ':'."""
    if not isinstance(spec, str):
        raise ConfigurationError(
            f"A model spec must be a str like 'openai:gpt-4o-mini', not {type(spec).__name__}."
        )
    backend, sep, model = spec.partition(":")
    backend, model = backend.strip(), model.strip()
    if not sep or not backend or not model:
        raise SpecError(
            f"Malformed model spec {spec!r}: write 'backend:model' (e.g. 'openai:gpt-4o-mini') "
            "or an alias defined in fmgate.toml."
        )
    return backend, model
