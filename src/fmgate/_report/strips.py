"""The report's thumbnail strips: the images each model drew for an image-generation set.

``fmgate compare --out DIR`` writes the images under ``DIR/images/`` with an index
(:mod:`fmgate._compare.drawing`); the report reads it back and shows one row per model and one
column per prompt, in the set's order, so the same prompt lines up across models. The HTML page
embeds the 128 px thumbnails (it stays one self-contained file) and links each to the full image;
the Markdown page links the thumbnail files.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from .._compare.drawing import read_index

__all__ = ["Strip", "StripCell", "html_strips", "load_strips", "markdown_strips"]

STRIPS_TEXT = (
    "One row per model, one column per prompt in the set's order (its first drawing); click a "
    "thumbnail for the full image. No quality score: no CLIP model available."
)


@dataclass(frozen=True, slots=True)
class StripCell:
    id: str
    prompt: str
    image: str | None  # the full image, relative to the report folder
    thumb: str | None
    png: bytes | None  # the thumbnail's bytes, for the HTML page


@dataclass(frozen=True, slots=True)
class Strip:
    model: str
    cells: tuple[StripCell, ...]


def load_strips(report_dir: str | Path, runs: Collection[str] | None = None) -> list[Strip]:
    """The strips of the images under ``report_dir`` (none when compare drew nothing there), of
    the compare ``runs`` given (the report's own: an older run's images left in the folder are
    not shown); a thumbnail whose file is gone is shown as missing."""
    root = Path(report_dir)
    strips = []
    for entry in read_index(root):
        if runs is not None and entry.get("run") not in runs:
            continue
        cells = []
        for row in entry["rows"]:
            if not isinstance(row, dict):
                continue
            thumb = row.get("thumb")
            path = root / thumb if isinstance(thumb, str) else None
            png = path.read_bytes() if path is not None and path.is_file() else None
            image = row.get("image")
            cells.append(
                StripCell(
                    str(row.get("id", "")),
                    str(row.get("prompt", "")),
                    image if isinstance(image, str) and png is not None else None,
                    thumb if png is not None else None,
                    png,
                )
            )
        strips.append(Strip(str(entry.get("model", "")), tuple(cells)))
    return strips


def _columns(strips: Sequence[Strip]) -> list[tuple[str, str]]:
    """Every prompt (id, text) in first-seen order: the strips' shared columns."""
    seen: dict[str, str] = {}
    for strip in strips:
        for cell in strip.cells:
            seen.setdefault(cell.id, cell.prompt)
    return list(seen.items())


def _cell(strip: Strip, ident: str) -> StripCell | None:
    return next((c for c in strip.cells if c.id == ident), None)


def html_strips(strips: Sequence[Strip]) -> str:
    if not strips:
        return ""
    columns = _columns(strips)
    head = "".join(f'<th title="{escape(text)}">{escape(ident)}</th>' for ident, text in columns)
    rows = []
    for strip in strips:
        cells = []
        for ident, text in columns:
            cell = _cell(strip, ident)
            if cell is None or cell.png is None or cell.image is None:
                cells.append(f'<td class="strip">{escape("no image")}</td>')
                continue
            uri = "data:image/png;base64," + base64.b64encode(cell.png).decode("ascii")
            image = f'<img alt="{escape(text)}" title="{escape(text)}" src="{uri}">'
            cells.append(f'<td class="strip"><a href="{escape(cell.image)}">{image}</a></td>')
        rows.append(f"<tr><td>{escape(strip.model)}</td>{''.join(cells)}</tr>\n")
    return (
        f'<h2>Images generated: thumbnails</h2><div class="wide"><table class="strips"><thead>'
        f"<tr><th>model</th>{head}</tr></thead><tbody>\n{''.join(rows)}</tbody></table></div>"
        f'<p class="caption">{escape(STRIPS_TEXT)}</p>'
    )


def markdown_strips(strips: Sequence[Strip]) -> list[str]:
    if not strips:
        return []
    columns = _columns(strips)
    lines = ["## Images generated: thumbnails", ""]
    lines.append("| model | " + " | ".join(_md(ident) for ident, _ in columns) + " |")
    lines.append("|---|" + "---|" * len(columns))
    for strip in strips:
        cells = []
        for ident, _ in columns:
            cell = _cell(strip, ident)
            if cell is None or cell.thumb is None or cell.image is None:
                cells.append("no image")
            else:
                cells.append(f"[![{_md(ident)}]({cell.thumb})]({cell.image})")
        lines.append(f"| {_md(strip.model)} | " + " | ".join(cells) + " |")
    prompts = "; ".join(f"{ident}: {text}" for ident, text in columns)
    return [*lines, "", _md(f"{STRIPS_TEXT} Prompts: {prompts}"), ""]


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("[", "\\[").replace("]", "\\]")
