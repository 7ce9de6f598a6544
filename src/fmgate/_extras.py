"""How to install an optional extra: every :class:`MissingExtraError` message is built here.

A user may have fmgate from PyPI or from a clone, so the message names both commands; the extras
that bring torch say to install torch first, or pip pulls a CUDA build of several GB.
"""

from __future__ import annotations

from ._errors import MissingExtraError

__all__ = ["install_hint", "missing_extra"]

# Extras whose dependencies include torch (see pyproject.toml).
TORCH_EXTRAS = frozenset({"local", "demo", "all", "dev"})
CPU_TORCH = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


def install_hint(extra: str) -> str:
    """``pip install "fmgate[x]"`` (from a checkout: ``pip install -e ".[x]"``), torch first
    where the extra needs it."""
    pip = f'pip install "fmgate[{extra}]" (from a checkout: pip install -e ".[{extra}]")'
    if extra not in TORCH_EXTRAS:
        return pip
    return (
        "install torch first, so that pip keeps the build that fits this machine instead of a "
        f"CUDA build of several GB (without a GPU: {CPU_TORCH}), then {pip}"
    )


def missing_extra(what: str, extra: str, module: str | None = None) -> MissingExtraError:
    """The error for ``what`` (e.g. "fmgate serve") needing ``module`` from ``extra``; raise it
    ``from`` the ImportError."""
    needs = f"{module}, which is not installed" if module else "an optional dependency"
    return MissingExtraError(f"{what} needs {needs}: {install_hint(extra)}.", extra=extra)
