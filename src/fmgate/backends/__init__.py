"""Backends: one module each, looked up by name in :mod:`fmgate._registry`."""

from ._base import Backend, BackendConfig

__all__ = ["Backend", "BackendConfig"]
