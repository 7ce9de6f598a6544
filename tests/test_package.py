"""The public surface: lazy imports, exported members, sync/async parity."""

from __future__ import annotations

import inspect
import subprocess
import sys

import fmgate
from fmgate import AsyncStream, Model, Stream

HEAVY = (
    "torch",
    "transformers",
    "openai",
    "anthropic",
    "genai_prices",
    "httpx2",
    "httpx",
    "starlette",
    "uvicorn",
    "pydantic",
    "jsonschema",
    "xgrammar",
    "llguidance",
    "diffusers",
    "PIL",
    "numpy",
    "cv2",
    "skimage",
    "efficientnet_lite_pytorch",
)


def test_import_loads_no_heavy_dependency() -> None:
    code = f"import sys, fmgate; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_exported_members_are_sorted_and_real() -> None:
    assert fmgate.__all__ == sorted(fmgate.__all__)
    for name in fmgate.__all__:
        assert hasattr(fmgate, name), name
    public = {
        n for n in dir(fmgate) if not n.startswith("_") and not inspect.ismodule(getattr(fmgate, n))
    }
    assert public == set(fmgate.__all__) - {"__version__"}


PAIRS = [
    (Model.generate, Model.agenerate),
    (Model.stream, Model.astream),
    (Model.generate_many, Model.agenerate_many),
    (Model.embed, Model.aembed),
    (Model.close, Model.aclose),
    (Stream.close, AsyncStream.aclose),
    (Stream.collect, AsyncStream.collect),
]


def test_sync_and_async_have_the_same_signatures_and_docs() -> None:
    for sync, async_ in PAIRS:
        # Parameters match exactly; return types differ only where Stream meets AsyncStream.
        assert inspect.signature(sync).parameters == inspect.signature(async_).parameters, (
            sync.__name__
        )
        assert inspect.getdoc(sync) == inspect.getdoc(async_), sync.__name__
        assert inspect.iscoroutinefunction(async_) or async_ is Model.astream, async_.__name__


def test_every_backend_row_resolves_to_a_wire_module() -> None:
    from fmgate._providers import providers
    from fmgate._registry import WIRES

    for row in providers().values():
        assert row.wire in WIRES, row.name
        if row.distribution == "local":
            assert row.base_url is None and not row.requires_api_key, row.name
        else:
            assert row.api_key_env and row.base_url, row.name
