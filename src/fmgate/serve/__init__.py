"""``fmgate serve``: any fmgate model as an OpenAI-compatible API.

    fmgate serve local-small --port 8008                      # 127.0.0.1 unless told otherwise
    FMGATE_SERVE_KEYS=k1,k2 fmgate serve local-small --host 0.0.0.0

    from fmgate.serve import build_app, serving
    app = build_app({"local-small": load("local-small")})     # an ASGI app for any ASGI server
    with serving({"local-small": model}) as base_url:          # a background server, for tests
        OpenAI(base_url=base_url, api_key="-").chat.completions.create(...)

Local models batch the requests that arrive together (see :mod:`fmgate.serve._batcher`); API
models behind the server make one call per request (a gateway). Every call is recorded by the
served Model, tagged ``fmgate.served=true``. Needs the ``serve`` extra (starlette, uvicorn):
``pip install 'fmgate[serve]'``. docs/serve.md has the details.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from .._extras import missing_extra
from .._model import Model
from ._auth import KEYS_ENV, check_bind, is_loopback, keys_from_env

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_WAIT_MS",
    "DEFAULT_PORT",
    "DEFAULT_READ_TIMEOUT_S",
    "KEYS_ENV",
    "build_app",
    "check_bind",
    "is_loopback",
    "keys_from_env",
    "run",
    "serving",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8008
# room for a few photos inline (base64 adds a third); a text request is far smaller
DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_QUEUE = 256
DEFAULT_MAX_BATCH = 16
DEFAULT_MAX_WAIT_MS = 10.0
# Slow clients: a request's headers, then its body, must each arrive within this; and at most
# this many connections are open at once (well under the usual limit of 1024 open files).
DEFAULT_READ_TIMEOUT_S = 15.0
DEFAULT_MAX_CONNECTIONS = 512

Models = Mapping[str, Model] | Sequence[Model]


def build_app(
    models: Models,
    *,
    keys: Iterable[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
) -> Starlette:
    """The ASGI app serving ``models`` (a name -> Model mapping, or Models named by their alias
    or spec). ``keys``: the bearer keys accepted (none: no check). ``max_queue``: requests per
    model waiting or running before 429. ``max_batch`` and ``max_wait_ms``: the dynamic batcher's
    largest batch and longest wait for one to fill. ``read_timeout_s``: the time a request's
    body may take to arrive (408 after it)."""
    _require()
    from ._app import Limits, Server
    from ._auth import Keys

    named = _named(models)
    for name, value in (
        ("max_body_bytes", max_body_bytes),
        ("max_queue", max_queue),
        ("max_batch", max_batch),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"{name} must be a positive int, not {value!r}.")
    if not max_wait_ms >= 0:
        raise ConfigurationError(f"max_wait_ms must be 0 or more, not {max_wait_ms!r}.")
    _check_timeout(read_timeout_s)
    limits = Limits(max_body_bytes, max_queue, max_batch, max_wait_ms / 1000, read_timeout_s)
    return Server(named, Keys(keys), limits).app()


def run(
    models: Models,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    keys: Iterable[str] | None = None,
    log_level: str = "info",
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    **settings: Any,
) -> None:
    """Serve ``models`` until interrupted; in-flight requests finish first (a second Ctrl-C
    stops at once). ``keys`` default to ``$FMGATE_SERVE_KEYS``; a host other than loopback
    needs at least one (ConfigurationError otherwise). ``read_timeout_s``: the time a request's
    headers, then its body, may take to arrive (the connection is closed, or answered 408);
    ``max_connections``: connections beyond it are closed as they open. ``settings`` go to
    :func:`build_app`."""
    keys = keys_from_env() if keys is None else tuple(keys)
    check_bind(host, keys)
    app = build_app(models, keys=keys, read_timeout_s=read_timeout_s, **settings)
    server = _server(app, host, port, log_level, read_timeout_s, max_connections)
    with _stopped_by_signal():
        server.run()


@contextlib.contextmanager
def serving(
    models: Models,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    keys: Iterable[str] = (),
    log_level: str = "warning",
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    **settings: Any,
) -> Iterator[str]:
    """Run the server on a background thread (port 0: a free one) for the block; yields its
    base URL, ``http://127.0.0.1:<port>/v1``. Leaving the block lets in-flight requests finish.
    The settings are :func:`run`'s."""
    keys = tuple(keys)
    check_bind(host, keys)
    app = build_app(models, keys=keys, read_timeout_s=read_timeout_s, **settings)
    server = _server(app, host, port, log_level, read_timeout_s, max_connections)
    thread = threading.Thread(target=server.run, name="fmgate-serve", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"fmgate serve could not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{_url_host(host)}:{bound}/v1"
    finally:
        server.should_exit = True
        thread.join()


class _Stop(BaseException):
    pass


@contextlib.contextmanager
def _stopped_by_signal() -> Iterator[None]:
    """uvicorn shuts down gracefully on SIGINT or SIGTERM, then raises the signal again for the
    handler that was there before: make that handler end :func:`run` normally, so that the
    caller goes on (and the store writes the last records) instead of the process dying."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise _Stop

    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Stop:
        pass
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _server(
    app: Starlette,
    host: str,
    port: int,
    log_level: str,
    read_timeout_s: float,
    max_connections: int,
) -> Any:
    import uvicorn

    from ._guard import guarded_h11

    if isinstance(max_connections, bool) or not isinstance(max_connections, int):
        raise ConfigurationError(f"max_connections must be an int, not {max_connections!r}.")
    if max_connections < 1:
        raise ConfigurationError(f"max_connections must be positive, not {max_connections}.")
    # No access log: the store has a record of every call, and a log line per request would
    # cost more than a loopback request itself. h11 always (not httptools, where installed):
    # the slow-client guard is written for it.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        ws="none",
        lifespan="on",
        http=guarded_h11(read_timeout_s, max_connections),
        timeout_keep_alive=5,
    )
    return uvicorn.Server(config)


def _check_timeout(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"read_timeout_s must be a positive number, not {value!r}.")


def _named(models: Models) -> dict[str, Model]:
    if isinstance(models, Mapping):
        named = dict(models)
    else:
        named = {}
        for model in models:
            named[model.alias or model.spec] = model
    if not named:
        raise ConfigurationError("fmgate serve needs at least one model.")
    return named


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _require() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise missing_extra("fmgate serve", "serve", exc.name) from exc
