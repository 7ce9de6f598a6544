"""``fmgate serve``: models as an OpenAI-compatible API."""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

from ._console import load_model
from ._exit import OK, USAGE
from ._run import _positive_int


def add_commands(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve models as an OpenAI-compatible API (chat completions, embeddings, models)",
        description="Serve one or more models (aliases or 'backend:model' specs) over "
        "OpenAI's HTTP API, so that any OpenAI client can use them and the same model can be "
        "measured in-process, through this server and through a provider. Every call is "
        "recorded in the store, tagged fmgate.served=true. Bearer keys come from "
        "$FMGATE_SERVE_KEYS (comma-separated); an address other than loopback needs one.",
        epilog="example: fmgate serve local-small --port 8008, then "
        "OpenAI(base_url='http://127.0.0.1:8008/v1', api_key='-')",
    )
    serve.add_argument("models", nargs="+", metavar="MODEL", help="aliases or specs to serve")
    serve.add_argument("--host", default=None, help="the address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="the port to listen on (8008)")
    serve.add_argument(
        "--max-batch",
        type=_positive_int,
        metavar="N",
        help="local models: the most requests generated in one batch (16)",
    )
    serve.add_argument(
        "--max-wait-ms",
        type=float,
        metavar="MS",
        help="local models: the longest a request waits for others to batch with (10)",
    )
    serve.add_argument(
        "--max-queue",
        type=_positive_int,
        metavar="N",
        help="requests per model waiting or running before the server answers 429 (256)",
    )
    serve.add_argument(
        "--max-body-kb",
        type=_positive_int,
        metavar="KB",
        help="the largest request body accepted, in KiB (20480: photos come inline)",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from .. import serve

    host = args.host or serve.DEFAULT_HOST
    keys = serve.keys_from_env()
    serve.check_bind(host, keys)  # before loading anything: a refusal is instant
    settings: dict[str, Any] = {}
    if args.max_batch is not None:
        settings["max_batch"] = args.max_batch
    if args.max_wait_ms is not None:
        settings["max_wait_ms"] = args.max_wait_ms
    if args.max_queue is not None:
        settings["max_queue"] = args.max_queue
    if args.max_body_kb is not None:
        settings["max_body_bytes"] = args.max_body_kb * 1024
    port = serve.DEFAULT_PORT if args.port is None else args.port
    check_port(host, port)  # before loading: a local model takes seconds to load
    models = {name: load_model(name) for name in dict.fromkeys(args.models)}
    where = f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"
    auth = f"{len(keys)} key(s) from ${serve.KEYS_ENV}" if keys else "no key (loopback only)"
    print(f"fmgate serve: {', '.join(models)} at {where}, {auth}", file=sys.stderr)
    try:
        serve.run(models, host=host, port=port, keys=keys, **settings)
    except SystemExit as exc:  # uvicorn could not listen (the port is taken): it logged why
        return USAGE if exc.code else OK
    finally:
        for model in models.values():
            model.close()
    return OK


def check_port(host: str, port: int) -> None:
    """Refuse, in one line, a port this process cannot listen on (taken, or privileged): bind it
    as uvicorn will (SO_REUSEADDR, so a port in TIME_WAIT is free) and let it go."""
    from .._errors import ConfigurationError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): is another server "
                "(another fmgate serve?) using it? Choose a free one with --port."
            ) from exc
