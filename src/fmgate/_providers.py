"""Provider rows and API model facts, read from the TOML data shipped in the package."""

from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from ._record import Access, Distribution

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "0:0:0:0:0:0:0:1"})


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """One row of ``providers.toml``: a backend name and the facts that do not vary by model."""

    name: str
    wire: str
    distribution: Distribution
    base_url: str | None = None
    api_key_env: str | None = None
    requires_api_key: bool = True
    prices_provider: str | None = None
    open_weights: bool | None = None
    max_tokens_param: str = "max_tokens"
    docs: str | None = None
    images: bool = True
    image_params: tuple[str, ...] | None = None
    image_response_format: str = "b64_json"

    def __post_init__(self) -> None:
        if self.image_params is not None:  # TOML gives a list; the row stays hashable
            object.__setattr__(self, "image_params", tuple(self.image_params))


@functools.cache
def _load(name: str) -> dict[str, Any]:
    import tomllib
    from importlib import resources

    text = resources.files("fmgate._data").joinpath(name).read_text(encoding="utf-8")
    return tomllib.loads(text)


@functools.cache
def providers() -> dict[str, ProviderInfo]:
    return {name: ProviderInfo(name=name, **row) for name, row in _load("providers.toml").items()}


@functools.cache
def _model_rows() -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], _load("models.toml")["model"])


def model_facts(model: str) -> dict[str, Any]:
    """Published facts for an API model id (open weights, licence, parameters, context window)."""
    lowered = model.lower().split(":")[0]
    # Routers name models "vendor/model": try the whole id, then the part after the vendor.
    for candidate in dict.fromkeys((lowered, lowered.rsplit("/", 1)[-1])):
        for row in _model_rows():
            if any(fnmatch.fnmatchcase(candidate, pattern) for pattern in row["match"]):
                return {k: v for k, v in row.items() if k != "match"}
    return {}


def host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def remote_access(provider: ProviderInfo, model: str, base_url: str, *, has_key: bool) -> Access:
    """Access facts for a model reached over HTTP: from the row, the model table and the URL."""
    facts = model_facts(model)
    local = is_loopback(base_url)
    open_weights = provider.open_weights
    if open_weights is None:
        open_weights = facts.get("open_weights")
    return Access(
        open_weights=open_weights,
        license=facts.get("license"),
        parameters=facts.get("parameters"),
        context_window=facts.get("context_window"),
        data_leaves_machine=not local,
        requires_network=not local,
        requires_api_key=provider.requires_api_key or has_key,
        offline_capable=local,
        hardware=None,
    )
