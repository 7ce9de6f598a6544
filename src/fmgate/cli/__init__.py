"""The ``fmgate`` command: run a prompt, list models, compare them, rebuild reports, the demo.

Exit codes, for scripts: 0 done and every call succeeded; 1 done, but some calls failed (they
are recorded and in the report); 2 bad arguments or configuration (nothing ran, or fmgate refused
the call before sending it: a bad parameter, a missing key, offline mode); 3 nothing to report (no
records matched); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .._errors import ConfigurationError, FmgateError
from ._exit import CALLS_FAILED, INTERRUPTED, OK, USAGE

EPILOG = """\
examples:
  fmgate demo                                   offline comparison, no keys needed
  fmgate run openai:gpt-4o-mini "Say hi"        one call: the text, then its record
  fmgate models                                 aliases in fmgate.toml, with their access
  fmgate compare -m local-small -m gpt -m claude --prompts prompts.jsonl \\
                 --scorer contains --out report/   the same prompts through three models
  fmgate report --since 7d --out report/        rebuild a report from stored records
  fmgate bench local-small --p90-target 2       capacity: calls/s at 1, 2, 4, ... in flight
  fmgate breakeven --hardware aws-g5-xlarge     the volume from which self-hosting costs less
  fmgate serve local-small --port 8008          the model as an OpenAI-compatible API

exit codes: 0 ok; 1 some calls failed (recorded, and in the report); 2 bad arguments or
configuration, or a call refused before sending; 3 no records to report; 130 interrupted.
Models are 'backend:model' specs (fmgate backends lists the backends) or aliases from fmgate.toml.
"""


def build_parser() -> argparse.ArgumentParser:
    from . import _bench, _comparing, _demo, _listing, _run, _serve

    parser = argparse.ArgumentParser(
        prog="fmgate",
        description="Compare open local models and commercial APIs on your own prompts: "
        "cost, latency, quality and accessibility, call by call.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fmgate {_version()}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the fmgate.toml to use (default: $FMGATE_CONFIG, "
        "./fmgate.toml, then the user config dir)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (_demo, _run, _listing, _comparing, _bench, _serve):
        module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `fmgate` asks what it can do
        parser.print_help()
        return OK
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        if args.config:
            _use_config(args.config)
        return handler(args)
    except KeyboardInterrupt:
        print("fmgate: interrupted", file=sys.stderr)
        return INTERRUPTED
    except ConfigurationError as exc:
        print(f"fmgate {args.command}: error: {exc}", file=sys.stderr)
        return USAGE
    except FmgateError as exc:
        print(f"fmgate {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return CALLS_FAILED
    finally:
        from .._recording import flush

        flush()


def _use_config(path: str) -> None:
    import os
    from pathlib import Path

    from .._config import CONFIG_ENV, load_config

    load_config(Path(path))  # a missing or broken file fails here, with its name
    os.environ[CONFIG_ENV] = str(Path(path).resolve())  # the store's [store] table follows it


def _version() -> str:
    from .. import __version__

    return __version__


def entry() -> None:
    sys.exit(main())
