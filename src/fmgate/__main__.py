"""``python -m fmgate``: the same command line as the ``fmgate`` script."""

from .cli import entry

entry()
