"""``fmgate run``: one prompt, one model, one record."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from ._console import load_model
from ._exit import CALLS_FAILED, OK, USAGE
from ._fmt import summary_line


def add_commands(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="send one prompt to one model; print the text, then the call's record",
        description="Send one prompt to one model. The text goes to stdout as it is generated; "
        "a one-line record summary (tokens, latency, cost, access) goes to stderr. Exits 0 when "
        "the call succeeded, 1 when it failed, 2 when fmgate refused it before sending anything "
        "(a bad parameter, a missing key, offline mode).",
    )
    run.add_argument("model", help="a 'backend:model' spec or an alias from fmgate.toml")
    run.add_argument("prompt", help="the prompt; '-' reads it from stdin")
    run.add_argument("--system", help="a system prompt")
    run.add_argument(
        "--base-url", metavar="URL", help="the endpoint (e.g. a vLLM or Ollama server)"
    )
    run.add_argument("--max-tokens", type=_positive_int, metavar="N")
    run.add_argument("--temperature", type=float, metavar="T")
    run.add_argument("--no-stream", action="store_true", help="one request, no streaming")
    run.add_argument(
        "--json",
        action="store_true",
        help='print one JSON document on stdout: {"text": ..., "error": ..., "record": {...}} '
        "(the text is not streamed)",
    )
    run.set_defaults(handler=_run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _run(args: argparse.Namespace) -> int:
    from .._errors import FmgateError

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    params = {
        k: v
        for k, v in (
            ("max_tokens", args.max_tokens),
            ("temperature", args.temperature),
            ("system", args.system),
        )
        if v is not None
    }
    overrides = {"base_url": args.base_url} if args.base_url else {}
    # With --json, stdout is one JSON document: the text goes inside it, not before it.
    echo = None if args.json else sys.stdout
    with load_model(args.model, **overrides) as model:
        try:
            text, record = _call(model, prompt, params, stream=not args.no_stream, echo=echo)
        except FmgateError as exc:
            return _failed(exc, as_json=args.json)
    _report(record, text=text, as_json=args.json)
    return OK


def _call(
    model: Any, prompt: str, params: dict[str, Any], *, stream: bool, echo: TextIO | None
) -> tuple[str, Any]:
    """The text and the record; the text is written to ``echo`` as it arrives."""
    if not stream:
        response = model.generate(prompt, **params)
        if echo is not None:
            print(response.text, file=echo)
        return response.text, response.record
    parts = []
    with model.stream(prompt, **params) as chunks:
        for chunk in chunks:
            parts.append(chunk.text)
            if echo is not None:
                echo.write(chunk.text)
                echo.flush()
    if echo is not None:
        print(file=echo)
    return "".join(parts), chunks.record


def _failed(exc: Any, *, as_json: bool) -> int:
    """Say why on stderr, report the failed call's record; a call fmgate refused before sending
    (a bad parameter, offline mode, a missing key) is a usage error, not a failed call."""
    from .._errors import ConfigurationError

    print(f"fmgate run: {type(exc).__name__}: {exc}", file=sys.stderr)
    record = getattr(exc, "record", None)
    if record is not None or as_json:
        _report(record, text=None, as_json=as_json, error=exc)
    return USAGE if isinstance(exc, ConfigurationError) else CALLS_FAILED


def _report(record: Any, *, text: str | None, as_json: bool, error: Any = None) -> None:
    if not as_json:
        print(summary_line(record), file=sys.stderr)
        return
    document = {
        "text": text,
        "error": None if error is None else {"type": type(error).__name__, "message": str(error)},
        "record": None if record is None else record.to_dict(),
    }
    print(json.dumps(document, indent=2))
