"""The report of ``fmgate compare`` and ``fmgate report``, computed from call records alone.

``summarize`` turns records (and scores) into one :class:`ModelSummary` per model and role;
``rich_table`` and ``markdown`` render them as text; ``write_report`` writes the HTML page with
plots (needs the ``report`` extra; without it the other files are written and
``Written.skipped`` says what to install), Markdown, CSV and JSONL files. rich and matplotlib are
imported only when a renderer needs them.
"""

from __future__ import annotations

from .aggregate import ModelSummary, percentile, summarize
from .files import Written, write_report
from .render import fmt_usd, markdown, rich_table

__all__ = [
    "ModelSummary",
    "Written",
    "fmt_usd",
    "markdown",
    "percentile",
    "rich_table",
    "summarize",
    "write_report",
]
