"""``load()``: from a spec or an alias to a ready :class:`Model`."""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
import time
from collections.abc import Sequence
from typing import Any

from ._catalog import catalog, catalog_alias
from ._config import (
    LITERAL_KEY,
    AliasConfig,
    Config,
    Settings,
    classify,
    load_config,
    parse_spec,
)
from ._errors import (
    ConfigFileError,
    ConfigurationError,
    InvalidRequestError,
    UnknownAliasError,
    UnknownBackendError,
    shown,
)
from ._fallback import FallbackModel
from ._model import Model
from ._providers import model_facts
from ._recording import Sink, add_sink
from ._registry import resolve
from ._retry import DEFAULT_BACKOFF_S, DEFAULT_MAX_RETRIES, RetryPolicy
from ._store import DEFAULT_STORE
from ._types import make_params
from .backends._base import Backend, BackendConfig

# Every call of this process goes to the embedded store ($FMGATE_STORE) as well; it opens on the
# first record. Registered here, where models are built, so that recording knows no store.
add_sink(DEFAULT_STORE)


def load(
    spec_or_alias: str,
    *,
    config: str | os.PathLike[str] | Config | None = None,
    sinks: Sequence[Sink] = (),
    **overrides: Any,
) -> Model:
    """Build a :class:`Model` from ``"backend:model"`` or an alias defined in ``fmgate.toml``.

    ``overrides`` replace the alias's settings: ``base_url``, ``api_key_env``, ``timeout``,
    ``max_retries``, ``backoff`` (seconds; the base of the exponential wait), ``fallback`` (aliases,
    specs or Models tried in order when a call fails: see docs/reliability.md), and
    default generation params (``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``,
    ``system``, ``<backend>_<param>``). ``sinks`` receive this model's records in addition to
    the process-wide ones.
    """
    if not isinstance(spec_or_alias, str) or not spec_or_alias.strip():
        raise ConfigurationError(
            f"load() takes a 'backend:model' spec or an alias, not {shown(spec_or_alias)}."
        )
    name = spec_or_alias.strip()
    if LITERAL_KEY in overrides:
        raise InvalidRequestError(
            f"load({name!r}) takes no api_key: keep the key in an environment variable and name "
            "it with api_key_env=..., or put it in fmgate.toml (a file only you may read)."
        )
    entry: AliasConfig | None = None
    if ":" in name:
        backend_name, model = parse_spec(name)
    else:
        config = load_config(config)
        entry = _find_alias(name, config)
        backend_name, model = entry.backend, entry.model
    cls, provider = _resolve(backend_name, entry)
    prefixes = _prefixes(cls, backend_name)
    settings = Settings({}, {}, {}) if entry is None else _alias_settings(entry, cls)
    given = classify(
        overrides,
        backend_settings=cls.settings,
        prefixes=prefixes,
        where=f"load({name!r})",
        error=InvalidRequestError,
    )
    connection = {**settings.connection, **given.connection}
    param_values = {**settings.params, **given.params}
    system = param_values.pop("system", None)
    if system is not None and not isinstance(system, str):
        raise InvalidRequestError(f"load({name!r}): system must be a str.")
    # The alias's literal key, unless load() names an env var to read instead.
    api_key = entry.api_key if entry is not None and "api_key_env" not in given.connection else None
    backend_config = BackendConfig(
        name=backend_name,
        model=model,
        provider=provider,
        base_url=connection.get("base_url"),
        api_key_env=connection.get("api_key_env"),
        api_key=api_key,
        timeout=float(connection["timeout"]) if "timeout" in connection else None,
        options={**settings.options, **given.options},
    )
    defaults = make_params(param_values, prefixes)
    t0 = time.perf_counter()
    backend = cls(backend_config)
    load_s = time.perf_counter() - t0
    options: dict[str, Any] = dict(
        alias=entry.alias if entry is not None else None,
        defaults=defaults,
        system=system,
        sinks=sinks,
        load_s=load_s,
        retry=_retry_policy(connection),
    )
    chain = connection.get("fallback", ())
    if not chain:
        return Model(backend, **options)
    # A fallback loads on first need: most calls never use it.
    links = [
        m if isinstance(m, Model) else functools.partial(load, m, config=config) for m in chain
    ]
    return FallbackModel(backend, fallback=links, **options)


def check_alias(entry: AliasConfig) -> None:
    """Raise what ``load(alias)`` would raise about the alias's table (an unknown backend, key
    or parameter, a missing extra) without building the model: ``fmgate models`` checks with it."""
    cls, _ = _resolve(entry.backend, entry)
    _alias_settings(entry, cls)


def _alias_settings(entry: AliasConfig, cls: type[Backend]) -> Settings:
    prefixes = _prefixes(cls, entry.backend)
    where = f"{entry.source}: [models.{entry.alias}]"
    settings = classify(
        entry.settings,
        backend_settings=cls.settings,
        prefixes=prefixes,
        where=where,
        error=ConfigFileError,
    )
    _check_file_params(settings.params, prefixes, where)
    return settings


def _prefixes(cls: type[Backend], backend_name: str) -> tuple[str, ...]:
    """Who a backend-specific parameter may name: ``<wire>_<param>`` or ``<backend>_<param>``."""
    return tuple(dict.fromkeys((cls.wire, backend_name)))


def _retry_policy(connection: dict[str, Any]) -> RetryPolicy | None:
    """The alias's or load()'s retry settings over the defaults; None: the model's default."""
    if "max_retries" not in connection and "backoff" not in connection:
        return None
    return RetryPolicy(
        max_retries=connection.get("max_retries", DEFAULT_MAX_RETRIES),
        backoff_s=float(connection.get("backoff", DEFAULT_BACKOFF_S)),
    )


def _resolve(backend_name: str, entry: AliasConfig | None) -> Any:
    try:
        return resolve(backend_name)
    except UnknownBackendError as exc:
        if entry is None:
            raise
        where = f"{entry.source}: [models.{entry.alias}]"
        raise UnknownBackendError(f"{where}: 'backend': {exc}") from exc


def _check_file_params(params: dict[str, Any], prefixes: tuple[str, ...], where: str) -> None:
    """Generation params from a file are checked here, so that an error names the file."""
    values = {k: v for k, v in params.items() if k != "system"}
    try:
        make_params(values, prefixes)
    except InvalidRequestError as exc:
        raise ConfigFileError(f"{where}: {exc}") from exc


def _find_alias(name: str, config: Config) -> AliasConfig:
    """The user's alias, else a packaged model of that name (see ``fmgate models --catalog``)."""
    entry = config.models.get(name) or catalog_alias(name)
    if entry is not None:
        return entry
    where = f" in {config.path}" if config.path else " (no fmgate.toml was found)"
    guesses = _guesses(name, config)
    hint = f" Did you mean {' or '.join(repr(g) for g in guesses)}?" if guesses else ""
    example = "" if guesses else " (e.g. 'openai:gpt-4o-mini')"
    raise UnknownAliasError(
        f"{name!r} is not an alias{where}.{hint} Use 'backend:model'{example} "
        f"or define [models.{_toml_key(name)}] in fmgate.toml."
    )


def _toml_key(name: str) -> str:
    """``name`` as a TOML table key: bare where TOML allows it, else quoted."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _guesses(name: str, config: Config) -> list[str]:
    """What a bare name probably meant, likeliest first: the spec of a model it names (a
    provider's model id, or a Hugging Face repo or folder), aliases of that model, then
    aliases and packaged models spelt alike."""
    guesses = [spec for spec in (_spec_for_model(name),) if spec]
    guesses += [alias for alias, entry in config.models.items() if entry.model == name]
    known = [*config.models, *catalog()]
    guesses += difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return list(dict.fromkeys(guesses))[:4]


def _spec_for_model(name: str) -> str | None:
    if "/" in name:  # "Qwen/Qwen2.5-0.5B-Instruct" or "./models/x": what transformers loads
        return f"transformers:{name}"
    backend = model_facts(name).get("backend")
    return f"{backend}:{name}" if backend else None
