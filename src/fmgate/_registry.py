"""Backend lookup: a name-to-"module:Class" table, provider rows, and third-party entry points."""

from __future__ import annotations

import difflib
import functools
import importlib

from ._errors import UnknownBackendError
from ._extras import missing_extra
from ._providers import ProviderInfo, providers
from .backends._base import Backend

# The modules that speak each wire format, imported on first use.
WIRES: dict[str, str] = {
    "openai": "fmgate.backends.openai:OpenAIBackend",
    "anthropic": "fmgate.backends.anthropic:AnthropicBackend",
    "transformers": "fmgate.backends.transformers:TransformersBackend",
    "fasttext": "fmgate.backends.fasttext:FastTextBackend",
    "opencv": "fmgate.backends.opencv:OpenCVBackend",
    "efficientnet_lite": "fmgate.backends.efficientnet_lite:EfficientNetLiteBackend",
    "torchvision": "fmgate.backends.torchvision:TorchvisionBackend",
    "diffusers": "fmgate.backends.diffusers:DiffusersBackend",
}
# The pip extra that installs what each wire module imports.
EXTRAS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "transformers": "local",
    "fasttext": "fasttext",
    "opencv": "vision",
    "efficientnet_lite": "vision",
    "torchvision": "local",  # torch; torchvision itself comes from PyTorch's index (see there)
    "diffusers": "diffusers",
}

ENTRY_POINT_GROUP = "fmgate.backends"


@functools.cache
def _plugins() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def backend_names() -> list[str]:
    return sorted({*providers(), *_plugins()})


def resolve(name: str) -> tuple[type[Backend], ProviderInfo]:
    """The backend class and provider row for a backend name, importing its module."""
    row = providers().get(name)
    if row is not None:
        return _import(WIRES[row.wire], extra=EXTRAS.get(row.wire)), row
    target = _plugins().get(name)
    if target is None:
        raise UnknownBackendError(_unknown_message(name))
    cls = _import(target, extra=None)
    info = getattr(cls, "provider_info", None) or ProviderInfo(
        name=name,
        wire=cls.wire,
        base_url=None,
        api_key_env=None,
        distribution="local",
        requires_api_key=False,
    )
    return cls, info


def _unknown_message(name: str) -> str:
    names = backend_names()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"Unknown backend {name!r}.{hint} Known backends: {', '.join(names)}."


def _import(target: str, *, extra: str | None) -> type[Backend]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or ""
        if extra is None or missing == "fmgate" or missing.startswith("fmgate."):
            raise
        backend = module_name.rpartition(".")[2]
        raise missing_extra(f"The {backend} backend", extra, exc.name) from exc
    cls: type[Backend] = getattr(module, attr)
    return cls
