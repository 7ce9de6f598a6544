"""The report of ``fmgate compare`` and ``fmgate report``, computed from call records alone.

``summarize`` turns records (and scores) into one :class:`ModelSummary` per model and role;
``rich_table`` and ``markdown`` render them as text; ``write_report`` writes the HTML page with
plots (needs the ``report`` extra), Markdown, CSV and JSONL files. rich and matplotlib are imported
only when a renderer needs them.
"""

from __future__ import annotations

from .aggregate import ModelSummary, percentile, summarize
from .render import markdown, rich_table, write_report

__all__ = ["ModelSummary", "markdown", "percentile", "rich_table", "summarize", "write_report"]
