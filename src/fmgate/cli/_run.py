"""``fmgate run``, ``fmgate models`` and ``fmgate backends``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import CALLS_FAILED, OK
from ._fmt import count, summary_line, yes_no
from ._profile import profile


def add_commands(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="send one prompt to one model; print the text, then the call's record",
        description="Send one prompt to one model. The text goes to stdout as it is generated; "
        "a one-line record summary (tokens, latency, cost, access) goes to stderr.",
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
    run.add_argument("--json", action="store_true", help="print the full record as JSON")
    run.set_defaults(handler=_run)

    models = commands.add_parser(
        "models", help="list the aliases of fmgate.toml with their access profile"
    )
    models.set_defaults(handler=_models)
    backends = commands.add_parser("backends", help="list the backend names a spec may use")
    backends.set_defaults(handler=_backends)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _run(args: argparse.Namespace) -> int:
    from .._errors import FmgateError
    from .._load import load

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
    with load(args.model, **overrides) as model:
        try:
            record = _call(model, prompt, params, stream=not args.no_stream)
        except FmgateError as exc:
            record = getattr(exc, "record", None)
            print(f"fmgate run: {type(exc).__name__}: {exc}", file=sys.stderr)
            if record is not None:
                _report(record, as_json=args.json)
            return CALLS_FAILED
    _report(record, as_json=args.json)
    return OK


def _call(model: Any, prompt: str, params: dict[str, Any], *, stream: bool) -> Any:
    if not stream:
        response = model.generate(prompt, **params)
        print(response.text)
        return response.record
    with model.stream(prompt, **params) as chunks:
        for chunk in chunks:
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
    print()
    return chunks.record


def _report(record: Any, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record.to_dict(), indent=2))
    else:
        print(summary_line(record), file=sys.stderr)


def _models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .._config import load_config

    config = load_config()
    console = Console()
    if not config.models:
        console.print(
            "No aliases: add [models.<name>] tables to fmgate.toml (see docs/quickstart.md)."
        )
        return OK
    table = Table(title=f"Models in {config.path}")
    for head in (
        "alias",
        "spec",
        "channel",
        "open weights",
        "licence",
        "params",
        "data leaves machine",
        "needs key",
        "key set",
    ):
        table.add_column(head)
    for alias, entry in config.models.items():
        facts = profile(entry)
        table.add_row(
            alias,
            f"{entry.backend}:{entry.model}",
            facts.channel,
            yes_no(facts.open_weights),
            facts.license or "–",
            count(facts.parameters),
            yes_no(facts.data_leaves_machine),
            yes_no(facts.requires_api_key),
            yes_no(facts.key_set),
        )
    console.print(table)
    return OK


def _backends(args: argparse.Namespace) -> int:
    from .._registry import backend_names

    print("\n".join(backend_names()))
    return OK
