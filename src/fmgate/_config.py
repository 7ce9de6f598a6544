"""``fmgate.toml``: model aliases, found and checked strictly.

    [models.assistant]
    backend = "openai"            # any backend name (fmgate backends lists them)
    model = "gpt-4o-mini"
    temperature = 0               # default generation params: max_tokens, temperature, top_p,
    max_tokens = 256              #   stop, seed, system, and <wire>_<name> backend params
    base_url = "https://..."      # optional endpoint override
    api_key_env = "MY_OPENAI_KEY" # optional: which env var holds the key
    # api_key = "sk-..."          # or the key itself: only in a file no one else can read
    timeout = 30                  # seconds

    [store]
    path = "runs/records.sqlite3" # the record store (relative to this file); "none" turns it off

    [breakeven]                   # the report's break-even inputs (docs/economics.md)
    hardware = "aws-g5-xlarge"    # a row of the price table or a GPU; or hardware_usd_per_hour;
                                  #   or owned_price_usd with lifetime_years, busy_watts,
                                  #   idle_watts and usd_per_kwh
    utilisation = 0.5             # the share of measured capacity real traffic uses
    p90_target_s = 2              # the p90 latency a capacity must keep (default: the API's)
    against = ["openai:gpt-4o-mini"]  # API models priced from the local rows' own tokens

The file is found from ``config=``, then ``$FMGATE_CONFIG``, then ``./fmgate.toml``, then the user
config dir (``platformdirs.user_config_dir("fmgate")``). Every error names the file, the table and
the key.

A literal ``api_key`` is accepted only from a file that its owner alone may read and write (POSIX
mode ``0600``: ``mode & 0o077 == 0``), and a WARNING names the file and the aliases once per file.
It is wrapped in a :class:`~fmgate.Secret` as soon as it is read, so no repr, error, record or log
line shows it.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ConfigFileError, ConfigurationError, SpecError, shown
from ._secrets import Secret

logger = logging.getLogger("fmgate")

CONFIG_ENV = "FMGATE_CONFIG"
FILE_NAME = "fmgate.toml"

# Keys of a [models.<alias>] table other than generation params, with their types.
CONNECTION_KEYS: dict[str, tuple[type, ...]] = {
    "backend": (str,),
    "model": (str,),
    "base_url": (str,),
    "api_key_env": (str,),
    "timeout": (int, float),
    "max_retries": (int,),
    "backoff": (int, float),
    "fallback": (list, tuple),
}
PARAM_KEYS: dict[str, tuple[type, ...]] = {
    "max_tokens": (int,),
    "temperature": (int, float),
    "top_p": (int, float),
    "stop": (str, list),
    "seed": (int,),
    "system": (str,),
}
TOP_LEVEL_KEYS = frozenset({"models", "store", "breakeven"})
STORE_KEYS: dict[str, tuple[type, ...]] = {"path": (str,)}
# [breakeven]: checked for type here; values by the break-even itself (fmgate._economics).
BREAKEVEN_KEYS: dict[str, tuple[type, ...]] = {
    "hardware": (str,),
    "hardware_usd_per_hour": (int, float, str),
    "owned_price_usd": (int, float, str),
    "lifetime_years": (int, float),
    "busy_watts": (int, float),
    "idle_watts": (int, float),
    "usd_per_kwh": (int, float, str),
    "utilisation": (int, float),
    "p90_target_s": (int, float),
    "against": (list,),
}
# A literal key: never among the settings, so that load() and the record never see it.
LITERAL_KEY = "api_key"
# tomllib's messages end with where the error is; Python 3.14 also gives lineno and colno.
_TOML_WHERE = re.compile(r" \(at (line \d+, column \d+|end of document)\)$")
# Files whose literal keys were already reported, so that the warning comes once per file.
_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class AliasConfig:
    """One ``[models.<alias>]`` table, checked."""

    alias: str
    backend: str
    model: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<dict>"
    # A literal ``api_key`` from the table, masked; load() prefers it to any env var.
    api_key: Secret | None = None


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None
    models: Mapping[str, AliasConfig]
    # [store] path: "none", or a path made absolute against the file's folder; None: not set.
    store_path: str | None = None
    # [breakeven]: its keys as written (types checked); empty: not set.
    breakeven: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Config:
        return cls(None, {})


def find_config_path(config: str | os.PathLike[str] | None) -> Path | None:
    """The config file to use, or None when there is none anywhere."""
    if config is not None:
        if not isinstance(config, str | os.PathLike):
            kind = type(config).__name__
            raise ConfigurationError(
                f"config= takes the path of an fmgate.toml or a Config, not {kind}."
            )
        return _existing(Path(config), f"Config file {config}")
    env = os.environ.get(CONFIG_ENV)
    if env:
        return _existing(Path(env), f"{CONFIG_ENV} points to {env}, which")
    local = Path.cwd() / FILE_NAME
    if local.is_file():
        return local
    from platformdirs import user_config_dir

    user = Path(user_config_dir("fmgate")) / FILE_NAME
    return user if user.is_file() else None


def _existing(path: Path, what: str) -> Path:
    if path.is_dir():
        raise ConfigFileError(f"{what} is a folder: name the fmgate.toml file in it.")
    if not path.is_file():
        raise ConfigFileError(f"{what} does not exist.")
    return path


def load_config(config: str | os.PathLike[str] | Config | None = None) -> Config:
    if isinstance(config, Config):
        return config
    path = find_config_path(config)
    if path is None:
        return Config.empty()
    import tomllib

    try:
        with path.open("rb") as file:  # the mode of the file read, not of one swapped in later
            mode = os.fstat(file.fileno()).st_mode
            text = file.read().decode("utf-8-sig")  # a BOM, as Windows editors write, is fine
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(path, exc) from exc
    except RecursionError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: arrays or tables nest too deep.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: cannot be read: {exc}") from exc
    except ValueError as exc:  # an int past sys.get_int_max_str_digits(), which tomllib lets out
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, source=str(path), mode=mode)


def _syntax_error(path: Path, exc: ValueError) -> ConfigFileError:
    """The file, the line and the column first, then what tomllib found there."""
    text = str(exc)
    found = _TOML_WHERE.search(text)
    where = found.group(1) if found else "somewhere"
    what = text[: found.start()] if found else text
    return ConfigFileError(
        f"{path}: {where}: not valid TOML ({what}). Fix the syntax there: strings need quotes, "
        'tables read [models.<alias>], each setting is key = value (e.g. model = "gpt-4o-mini").'
    )


def parse_config(
    data: Mapping[str, Any], *, source: str = "<dict>", mode: int | None = None
) -> Config:
    """Check ``data`` read from the file ``source`` (whose ``st_mode`` is ``mode``; ``None``:
    stat it), or built in memory when ``source`` is ``"<dict>"``: a literal ``api_key`` needs no
    file permissions there, as there is no file."""
    unknown = set(data) - TOP_LEVEL_KEYS
    if unknown:
        raise ConfigFileError(
            f"{source}: unknown top-level key {sorted(unknown)[0]!r}; "
            "expected [models.<alias>] tables, a [store] table and a [breakeven] table."
        )
    models = data.get("models", {})
    if not isinstance(models, Mapping):
        raise ConfigFileError(f"{source}: 'models' must be a table of [models.<alias>] tables.")
    file = _KeyFile(source, mode)
    parsed = {alias: _parse_alias(alias, table, file) for alias, table in models.items()}
    path = None if source == "<dict>" else Path(source)
    store = _parse_store(data.get("store", {}), source, path)
    config = Config(path, parsed, store, _parse_breakeven(data.get("breakeven", {}), source))
    _warn_literal_keys(source, [a for a, entry in parsed.items() if entry.api_key is not None])
    return config


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
    try:
        store = Path(raw).expanduser()
    except (RuntimeError, ValueError) as exc:  # "~nosuchuser/...", or a NUL byte
        raise ConfigFileError(
            f"{where}: 'path' {shown(raw)} cannot be expanded ({exc}): write the full path."
        ) from exc
    if not store.is_absolute() and path is not None:
        store = path.parent / store
    return str(store)


def _parse_breakeven(table: Any, source: str) -> dict[str, Any]:
    where = f"{source}: [breakeven]"
    if not isinstance(table, Mapping):
        raise ConfigFileError(f"{where} must be a table, not {type(table).__name__}.")
    for key, value in table.items():
        if key not in BREAKEVEN_KEYS:
            known = ", ".join(BREAKEVEN_KEYS)
            raise ConfigFileError(f"{where}: unknown key {key!r}. Known keys: {known}.")
        check_type(where, key, value, BREAKEVEN_KEYS[key], ConfigFileError)
    against = table.get("against", [])
    if not all(isinstance(spec, str) and ":" in spec for spec in against):
        raise ConfigFileError(
            f"{where}: 'against' must list 'backend:model' specs, e.g. [\"openai:gpt-4o-mini\"]."
        )
    return dict(table)


def _parse_alias(alias: str, table: Any, file: _KeyFile) -> AliasConfig:
    where = f"{file.source}: [models.{alias}]"
    if not isinstance(table, Mapping):
        raise ConfigFileError(f"{where} must be a table, not {type(table).__name__}.")
    if ":" in alias:
        raise ConfigFileError(
            f"{where}: an alias cannot contain ':' (that marks a backend:model spec)."
        )
    if not alias.strip() or alias != alias.strip():
        raise ConfigFileError(
            f"{where}: an alias cannot be empty or start or end with a space "
            "(load() strips the name it is given)."
        )
    for required in ("backend", "model"):
        if required not in table:
            raise ConfigFileError(f"{where} is missing the key {required!r}.")
    for key, value in table.items():
        _check_key(where, key, value)
    for required in ("backend", "model"):
        if not table[required].strip():
            raise ConfigFileError(f"{where}: {required!r} must not be empty.")
    api_key = file.literal_key(alias, table)
    settings = {k: v for k, v in table.items() if k not in ("backend", "model", LITERAL_KEY)}
    return AliasConfig(alias, table["backend"], table["model"], settings, file.source, api_key)


class _KeyFile:
    """Where a literal ``api_key`` comes from, and whether it may come from there."""

    def __init__(self, source: str, mode: int | None) -> None:
        self.source = source
        self._mode = mode

    def literal_key(self, alias: str, table: Mapping[str, Any]) -> Secret | None:
        if LITERAL_KEY not in table:
            return None
        value = table[LITERAL_KEY]
        where = f"{self.source}: [models.{alias}]"
        # The messages below never show the value: it may be a real key in the wrong place.
        if not isinstance(value, str) or not value.strip():
            raise ConfigFileError(f"{where}: 'api_key' must be a non-empty str.")
        key = Secret(value.strip())  # registered for redaction before anything else happens
        if "api_key_env" in table:
            raise ConfigFileError(
                f"{where}: set api_key or api_key_env, not both (api_key_env is the safer one)."
            )
        self._check_private(where)
        return key

    def _check_private(self, where: str) -> None:
        if self.source == "<dict>":  # a mapping built in memory: there is no file to protect
            return
        fix = (
            f'Keep the key in an environment variable and name it (api_key_env = "MY_KEY"), '
            f"or make the file private: chmod 600 {self.source}"
        )
        if os.name != "posix":
            raise ConfigFileError(
                f"{where}: a literal api_key is accepted only where fmgate can check that no one "
                f"else can read the file (POSIX permissions). {fix}."
            )
        mode = self._mode
        if mode is None:
            try:
                mode = os.stat(self.source).st_mode
            except OSError as exc:
                raise ConfigFileError(
                    f"{where}: cannot check who may read the file that holds api_key ({exc}). "
                    f"{fix}."
                ) from exc
        if mode & 0o077:
            raise ConfigFileError(
                f"{where}: a literal api_key is refused because other users may read or change "
                f"the file (mode {mode & 0o777:o}). {fix}."
            )


def _warn_literal_keys(source: str, aliases: list[str]) -> None:
    if not aliases or source == "<dict>":
        return
    with _WARNED_LOCK:
        if source in _WARNED:
            return
        _WARNED.add(source)
    tables = ", ".join(f"[models.{alias}]" for alias in aliases)
    logger.warning(
        "%s holds a literal api_key in %s. It is accepted because only the file's owner may read "
        "it; an environment variable named by api_key_env keeps keys out of files.",
        source,
        tables,
    )


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
    if key == "timeout" and isinstance(value, int | float) and not _positive_seconds(value):
        raise error(f"{where}: 'timeout' must be a positive number of seconds, not {shown(value)}.")
    _check_retry_keys(where, key, value, error)


def _check_retry_keys(where: str, key: str, value: Any, error: type[ConfigurationError]) -> None:
    if key == "max_retries" and not 0 <= value <= 100:
        raise error(f"{where}: 'max_retries' must be between 0 and 100, not {shown(value)}.")
    if key == "backoff" and not (value == 0 or _positive_seconds(value)):
        raise error(
            f"{where}: 'backoff' must be 0 or a positive number of seconds, not {shown(value)}."
        )
    if key == "fallback" and not all(_is_model_name(v) for v in value):
        raise error(
            f"{where}: 'fallback' must list aliases or 'backend:model' specs, e.g. "
            '["local-small", "anthropic:claude-3-5-haiku-latest"].'
        )


def _is_model_name(value: Any) -> bool:
    """An alias or spec; or, passed to load(), a model object (anything that generates)."""
    if isinstance(value, str):
        return bool(value.strip())
    return callable(getattr(value, "generate", None))


def _positive_seconds(value: float) -> bool:
    """A positive, finite float: not 0, nan, inf, nor an int too large for a float."""
    try:
        seconds = float(value)
    except OverflowError:
        return False
    return math.isfinite(seconds) and seconds > 0


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
