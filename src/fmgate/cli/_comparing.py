"""``fmgate compare`` and ``fmgate report``."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from . import _economics
from ._console import console, load_model
from ._exit import CALLS_FAILED, NOTHING, OK
from ._filters import add_filters, select_records
from ._run import _positive_int

if TYPE_CHECKING:
    from .._report.economics import EconomicsOptions

FORMATS = ("html", "md", "csv", "jsonl")
MESSAGE_CHARS = 300  # of the first error message shown per failing model


def add_commands(commands: Any) -> None:
    compare = commands.add_parser(
        "compare",
        help="run a prompt set through several models and write a report",
        description="Run every prompt through every model (local models batched, APIs "
        "concurrent), grade the answers if a scorer is given, store the records and write a "
        "report: a table here, and Markdown, HTML with plots, CSV and JSONL under --out. A model "
        "with failed calls gets a line on stderr: the error types, counted, and the first message. "
        "Under FMGATE_OFFLINE=1, models (and a judge) that would send prompts off this machine are "
        "refused before anything loads or runs (exit 2): leave them out to compare the others. "
        "A set whose rows have a 'label' (langid) is classified instead: classifiers such as "
        "fastText with their own labels, chat models zero-shot among the set's labels; grade it "
        "with --scorer accuracy or macro_f1. Rows may ask for structure: a 'schema' the reply "
        "must match (units; --scorer json_schema) or 'tools' to call with an 'expected_tool' "
        "(tools; --scorer tool_call); the report then shows the share of replies that validated "
        "and the tool calls made. An image set (a folder, or a CSV of path,label or "
        "path,label,x0,y0,x1,y1 rows) is classified (--scorer top1 or top5) or searched for "
        "objects (--scorer recall@0.5) by image classifiers, detectors and chat models that "
        "read images; the report adds an Images table (per image: quality, latency, cost). An "
        'image-generation set (rows with "task": "image", or size, seed, steps, '
        "negative_prompt; the bundled image-prompts) is drawn by diffusers pipelines and images "
        "APIs: the images go under --out DIR/images/<model>/ and the report adds an Images "
        "generated table and a thumbnail strip per model (no quality score).",
    )
    compare.add_argument(
        "-m",
        "--model",
        action="append",
        required=True,
        dest="models",
        metavar="MODEL",
        help="a spec or alias; repeat for each model",
    )
    compare.add_argument(
        "--prompts",
        required=True,
        metavar="FILE|DIR|NAME",
        help="a .jsonl or .csv file with 'prompt' and optional 'expected' and 'id' (or "
        "'text' and 'label' to classify; 'schema', 'tools', 'tool_choice', 'expected_tool' and "
        "'expected_arguments' to ask for structure), or a bundled set (capitals, arithmetic, "
        "pairs, langid, units, tools, image-prompts to draw); or an image set: a folder (a "
        "subfolder per label, or a labels.csv), a .csv with 'path' and 'label' (and x0, y0, "
        "x1, y1 for boxes), or a bundled one (skimage-photos, skimage-objects; the vision extra)",
    )
    compare.add_argument(
        "--scorer",
        metavar="NAME",
        help="exact, contains, regex (expected is a pattern) or judge:<model>; accuracy or "
        "macro_f1 for a set with labels; json_schema (the reply matches the row's schema and "
        "equals its expected value) or tool_call (the expected tool, with the expected "
        "arguments) for rows that ask for structure; top1, top5 (image classification) or "
        "recall@0.5 (detection) for an image set",
    )
    compare.add_argument(
        "--repeat",
        type=_positive_int,
        default=1,
        metavar="N",
        help="passes over the prompt set (default 1)",
    )
    compare.add_argument(
        "--warmup",
        type=_non_negative_int,
        default=1,
        metavar="N",
        help="calls per model before timing starts, left out of the statistics (default 1)",
    )
    compare.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="requests in flight per API or self-hosted model (default 8)",
    )
    compare.add_argument("--max-tokens", type=_positive_int, metavar="N")
    compare.add_argument("--temperature", type=float, metavar="T")
    _add_output(compare, default_out=None)
    _economics.add_options(compare)
    compare.set_defaults(handler=_compare)

    report = commands.add_parser(
        "report",
        help="rebuild a report from stored records",
        description="Read records (and their scores) from the store and write the same report "
        "as compare. Filters combine with AND.",
    )
    add_filters(report)
    _add_output(report, default_out=None)
    _economics.add_options(report)
    report.set_defaults(handler=_report)
    _economics.add_commands(commands)  # fmgate breakeven: the same filters, the same options


def _add_output(parser: argparse.ArgumentParser, *, default_out: str | None) -> None:
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=default_out,
        help="write the report files here (report.html, report.md, summary.csv, "
        "records.jsonl, records.csv)",
    )
    parser.add_argument(
        "--format",
        metavar="LIST",
        default=",".join(FORMATS),
        type=_formats,
        help=f"which files to write (default {','.join(FORMATS)})",
    )
    parser.add_argument("--title", default=None, help="the report's title")


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _formats(text: str) -> tuple[str, ...]:
    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(FORMATS)}; got {text!r}")
    return chosen


def _compare(args: argparse.Namespace) -> int:
    from .._compare import check_scorer, get_scorer, load_set

    items = load_set(args.prompts)
    _refuse_offline([*args.models, *_judge(args.scorer)])
    scorer = get_scorer(args.scorer) if args.scorer else None
    check_scorer(items, scorer)  # before any model loads: exact cannot grade a label
    params = {
        k: v
        for k, v in (("max_tokens", args.max_tokens), ("temperature", args.temperature))
        if v is not None
    }
    economics = _economics.economics_options(args)  # a bad option fails before any model loads
    with ExitStack() as stack:
        models = [stack.enter_context(load_model(spec)) for spec in args.models]
        run = _run_with_progress(models, items, args, scorer, params)
    title = args.title or f"fmgate compare {run.run_id}"
    show(
        run.records, run.scores, title=title, out=args.out, formats=args.format, economics=economics
    )
    for line in failures(run.records):
        print(line, file=sys.stderr)
    print(
        f"run id: {run.run_id} (fmgate report --run {run.run_id} rebuilds this report)",
        file=sys.stderr,
    )
    return CALLS_FAILED if run.errors else OK


def _judge(scorer: str | None) -> list[str]:
    kind, colon, judge = (scorer or "").strip().partition(":")
    return [judge.strip()] if kind.lower() == "judge" and colon and judge.strip() else []


def _refuse_offline(names: Sequence[str]) -> None:
    """Under FMGATE_OFFLINE=1, a model that would send prompts off this machine is refused
    before anything loads or runs: every one of its calls would fail."""
    from .._errors import OfflineError
    from .._offline import OFFLINE_ENV, offline
    from ._profile import leaves_machine

    if not offline():
        return
    leaving = [name for name in dict.fromkeys(names) if leaves_machine(name)]
    if leaving:
        raise OfflineError(
            f"{OFFLINE_ENV}=1, and {', '.join(leaving)} would send prompts off this machine: "
            f"leave {'it' if len(leaving) == 1 else 'them'} out, or unset {OFFLINE_ENV}. "
            "Nothing was run."
        )


def failures(records: Sequence[Any]) -> list[str]:
    """Per model with failed calls (warm-up included), one line: how many, of which error
    types, and the first (redacted) message, e.g.
    ``gpt: 12 of 12 calls failed: OfflineError x 12 (first: ...)``."""
    from .._report.aggregate import label_of

    calls: Counter[str] = Counter(label_of(r) for r in records)
    failed: dict[str, list[Any]] = {}
    for record in records:
        if not record.ok:
            failed.setdefault(label_of(record), []).append(record)
    return [_failure_line(label, calls[label], bad) for label, bad in failed.items()]


def _failure_line(label: str, calls: int, failed: Sequence[Any]) -> str:
    kinds = Counter(r.outcome.error_type or "unknown error" for r in failed)
    types = ", ".join(f"{kind} x {n}" for kind, n in kinds.most_common())
    first = " ".join((failed[0].outcome.error_message or "").split())
    if len(first) > MESSAGE_CHARS:
        first = first[: MESSAGE_CHARS - 3] + "..."
    why = f" (first: {first})" if first else ""
    return f"{label}: {len(failed)} of {calls} calls failed: {types}{why}"


def _run_with_progress(
    models: Sequence[Any],
    items: Sequence[Any],
    args: argparse.Namespace,
    scorer: Any,
    params: dict[str, Any],
) -> Any:
    from .._compare import run_compare

    with progress(models, items, repeat=args.repeat, warmup=args.warmup) as on_progress:
        return run_compare(
            models,
            items,
            repeat=args.repeat,
            warmup=args.warmup,
            scorer=scorer,
            concurrency=args.concurrency,
            params=params,
            on_progress=on_progress,
            image_dir=args.out,  # an image-generation set's drawings, beside the report
        )


@contextmanager
def progress(
    models: Sequence[Any], items: Sequence[Any], *, repeat: int, warmup: int
) -> Iterator[Any]:
    """A rich progress bar per model on stderr; yields the ``on_progress(label, done)`` hook."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .._compare import planned_calls

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(stderr=True),
    )
    totals = {
        m.alias or m.spec: planned_calls([m], items, repeat=repeat, warmup=warmup) for m in models
    }
    tasks = {label: bar.add_task(label, total=total) for label, total in totals.items()}

    def on_progress(label: str, done: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=None)
        bar.update(tasks[label], completed=done)

    with bar:
        yield on_progress


def show(
    records: Sequence[Any],
    scores: Sequence[Any],
    *,
    title: str,
    out: str | None,
    formats: Sequence[str],
    notes: Sequence[str] = (),
    economics: EconomicsOptions | None = None,
) -> None:
    """Print the summary table, and the break-even table where the records hold a self-hosted
    and API pair (``economics``: its options; ``None``: the defaults); write the report files
    when ``out`` is given."""
    from .._report import rich_table, summarize, write_report
    from .._report.economics import DEFAULT_ECONOMICS, breakevens, terminal_table

    economics = economics or DEFAULT_ECONOMICS
    screen = console()
    screen.print(rich_table(summarize(records, scores), title=title))
    found = breakevens(records, scores, economics)
    if found:
        screen.print(terminal_table(found))
    if out is not None:
        written = write_report(
            out, records, scores, title=title, formats=formats, notes=notes, pairs=found
        )
        screen.print("Written: " + ", ".join(str(path) for path in written.values()))
        for why in written.skipped.values():  # the HTML page without matplotlib
            print(f"report.html not written: {why}", file=sys.stderr)


def _report(args: argparse.Namespace) -> int:
    economics = _economics.economics_options(args)
    records, scores = select_records(args)
    if not records:
        print(
            "fmgate report: no records match; widen --since or check --store/--run.",
            file=sys.stderr,
        )
        return NOTHING
    title = args.title or "fmgate report"
    show(records, scores, title=title, out=args.out, formats=args.format, economics=economics)
    return OK
