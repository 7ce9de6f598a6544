"""Rebuild the sample report from its records and look at it in a real browser (not run by CI).

    python scripts/screenshot_report.py                   # docs/sample-report -> /tmp PNGs
    python scripts/screenshot_report.py --commit-shot     # also docs/sample-report/report-1366.png

Reads ``docs/sample-report/records.jsonl`` (written by ``fmgate demo``, with its scores as
``score_<scorer>`` columns), rewrites the report files next to it with the demo's title and notes,
then renders ``report.html`` in headless Chromium at 1366 and 1920 px wide. Needs the ``report``
extra and a Chromium (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fmgate._record import CallRecord, Score
from fmgate._report import write_report
from fmgate.cli._demo import (
    CHAT,
    TITLE,
    Names,
    Vision,
    breakeven_notes,
    breakeven_options,
    notes,
    vision_notes,
)

SAMPLE = Path(__file__).resolve().parent.parent / "docs" / "sample-report"
WIDTHS = (1366, 1920)


def read_records(path: Path) -> tuple[list[CallRecord], list[Score]]:
    """Records and their scores back from a report's records.jsonl."""
    records: list[CallRecord] = []
    scores: list[Score] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        record = CallRecord.from_dict(row)
        records.append(record)
        for key, value in row.items():
            if key.startswith("score_") and not key.endswith("_detail") and value is not None:
                scorer, detail = key.removeprefix("score_"), row.get(f"{key}_detail")
                scores.append(Score(record.id, scorer, value, record.started_at, detail=detail))
    return records, scores


def screenshot(html: Path, png: Path, width: int, height: int) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("no chromium on PATH: apt-get install -y chromium")
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            html.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "fmgate-shots")
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--commit-shot", action="store_true", help="write report-1366.png too")
    args = parser.parse_args()
    records, scores = read_records(SAMPLE / "records.jsonl")
    # records.jsonl is the source: rewrite the others from it
    formats = ("html", "md", "csv")
    names = Names(
        "smollm2",
        "smollm2-served",
        classifiers=("efficientnet-lite0", "mobilenet-v2"),
        detectors=("ssd-mobilenet-v2-coco",),
    )
    economics = breakeven_options(names)  # the demo's: against the API models it did not run
    demo_notes = notes(names, CHAT) + vision_notes(names, Vision())
    demo_notes += breakeven_notes(names, records, economics)
    write_report(
        SAMPLE,
        records,
        scores,
        title=TITLE,
        formats=formats,
        notes=demo_notes,
        economics=economics,
    )
    (SAMPLE / "records.csv").unlink(missing_ok=True)  # the JSONL already holds every record
    args.out.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        png = args.out / f"report-{width}.png"
        screenshot(SAMPLE / "report.html", png, width, args.height)
        print(png)
    if args.commit_shot:
        shot = SAMPLE / "report-1366.png"
        screenshot(SAMPLE / "report.html", shot, 1366, 1630)  # to the first plots
        print(shot)


if __name__ == "__main__":
    main()
