"""``load()``: from a spec or an alias to a ready :class:`Model`."""

from __future__ import annotations

import difflib
import functools
import os
import time
from collections.abc import Sequence
from typing import Any

from ._config import AliasConfig, Config, Settings, classify, load_config, parse_spec
from ._errors import (
    ConfigFileError,
    ConfigurationError,
    InvalidRequestError,
    UnknownAliasError,
    UnknownBackendError,
)
from ._model import Model
from ._recording import Sink
from ._registry import resolve
from ._types import make_params
from .backends._base import BackendConfig


def load(
    spec_or_alias: str,
    *,
    config: str | os.PathLike[str] | Config | None = None,
    sinks: Sequence[Sink] = (),
    **overrides: Any,
) -> Model:
    """Build a :class:`Model` from ``"backend:model"`` or an alias defined in ``fmgate.toml``.

    ``overrides`` replace the alias's settings: ``base_url``, ``api_key_env``, ``timeout``, and
    default generation params (``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``,
    ``system``, ``<backend>_<param>``). ``sinks`` receive this model's records in addition to
    the process-wide ones.
    """
    if not isinstance(spec_or_alias, str) or not spec_or_alias.strip():
        raise ConfigurationError(
            f"load() takes a 'backend:model' spec or an alias, not {spec_or_alias!r}."
        )
    name = spec_or_alias.strip()
    entry: AliasConfig | None = None
    if ":" in name:
        backend_name, model = parse_spec(name)
    else:
        entry = _find_alias(name, load_config(config))
        backend_name, model = entry.backend, entry.model
    cls, provider = _resolve(backend_name, entry)
    prefixes = tuple(dict.fromkeys((cls.wire, backend_name)))
    sort = functools.partial(classify, backend_settings=cls.settings, prefixes=prefixes)
    settings = Settings({}, {}, {})
    if entry is not None:
        where = f"{entry.source}: [models.{entry.alias}]"
        settings = sort(entry.settings, where=where, error=ConfigFileError)
        _check_file_params(settings.params, prefixes, where)
    given = sort(overrides, where=f"load({name!r})", error=InvalidRequestError)
    connection = {**settings.connection, **given.connection}
    param_values = {**settings.params, **given.params}
    system = param_values.pop("system", None)
    if system is not None and not isinstance(system, str):
        raise InvalidRequestError(f"load({name!r}): system must be a str.")
    backend_config = BackendConfig(
        name=backend_name,
        model=model,
        provider=provider,
        base_url=connection.get("base_url"),
        api_key_env=connection.get("api_key_env"),
        timeout=float(connection["timeout"]) if "timeout" in connection else None,
        options={**settings.options, **given.options},
    )
    defaults = make_params(param_values, prefixes)
    t0 = time.perf_counter()
    backend = cls(backend_config)
    load_s = time.perf_counter() - t0
    alias = entry.alias if entry is not None else None
    return Model(backend, alias=alias, defaults=defaults, system=system, sinks=sinks, load_s=load_s)


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
    entry = config.models.get(name)
    if entry is not None:
        return entry
    where = f" in {config.path}" if config.path else " (no fmgate.toml was found)"
    close = difflib.get_close_matches(name, list(config.models), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownAliasError(
        f"{name!r} is not an alias{where}.{hint} Use 'backend:model' (e.g. 'openai:gpt-4o-mini') "
        "or define [models." + name + "] in fmgate.toml."
    )
