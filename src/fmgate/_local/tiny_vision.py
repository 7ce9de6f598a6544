"""Tiny random-weight image classifiers and object detectors for tests."""

from __future__ import annotations

from pathlib import Path

ARCHES: tuple[str, ...] = ()


def make(arch: str, path: Path) -> Path:
    """Build the tiny ``arch`` model into ``path`` and return the folder."""
    raise NotImplementedError(arch)
