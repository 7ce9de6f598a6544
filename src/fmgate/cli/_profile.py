"""An alias's access profile read without loading the model (for ``fmgate models``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .._config import AliasConfig


@dataclass(frozen=True, slots=True)
class Profile:
    channel: str
    open_weights: bool | None = None
    license: str | None = None
    parameters: int | None = None
    data_leaves_machine: bool | None = None
    requires_api_key: bool | None = None
    key_set: bool | None = None


def profile(entry: AliasConfig) -> Profile:
    """From the provider row and, for a local model in a folder, the folder's files."""
    from .._providers import providers, remote_access

    row = providers().get(entry.backend)
    if row is None:  # a plugin backend: its facts come only from loading it
        return Profile(channel="?")
    if row.distribution == "local":
        return _local(entry.model)
    key_env = entry.settings.get("api_key_env") or row.api_key_env
    has_key = entry.api_key is not None or bool(key_env and os.environ.get(key_env))
    base_url = entry.settings.get("base_url") or row.base_url or ""
    access = remote_access(row, entry.model, base_url, has_key=has_key)
    return Profile(
        channel=row.distribution,
        open_weights=access.open_weights,
        license=access.license,
        parameters=access.parameters,
        data_leaves_machine=access.data_leaves_machine,
        requires_api_key=access.requires_api_key,
        key_set=has_key if key_env or entry.api_key is not None else None,
    )


def _local(model: str) -> Profile:
    folder = Path(model).expanduser()
    facts = Profile("local", True, data_leaves_machine=False, requires_api_key=False)
    if not (folder / "config.json").is_file():
        return facts  # a Hub id: licence and size are known once it is loaded
    from .._local.profile import read_profile

    found = read_profile(folder)
    return Profile("local", True, found.license, found.parameters, False, False)


def leaves_machine(name: str) -> bool:
    """Whether calls to ``name`` (a spec or an alias) would send prompts off this machine, as far
    as the config and the provider rows tell; an unknown alias or plugin backend says False
    (``load()`` names the first, the call itself decides for the second)."""
    from .._config import AliasConfig, load_config, parse_spec

    if ":" in name:
        backend, model = parse_spec(name)
        entry: AliasConfig | None = AliasConfig(name, backend, model)
    else:
        entry = load_config().models.get(name)
    return entry is not None and profile(entry).data_leaves_machine is True
