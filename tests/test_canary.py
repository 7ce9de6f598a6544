"""A canary key through the whole pipeline: no output fmgate writes may show it.

Each test loads a unique fake key into OPENAI_API_KEY and ANTHROPIC_API_KEY, makes calls that
succeed and calls that fail (against a server that quotes the key in every error it sends, see
``canary_wire``), and then greps every output for the key and for each 12-character piece of
it: the SQLite store (file and WAL), JSONL, OpenTelemetry spans, report files, logs, exception
texts and tracebacks, reprs, records, and the command line's stdout and stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import subprocess
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import fmgate
from fmgate._report import write_report
from fmgate.testing import stub_server
from tests.canary_wire import echo_server

WINDOW = 12  # a piece of the key this long is as good as a leak
SDK_LOGGERS = ("openai", "anthropic", "httpx", "httpx2", "httpcore", "httpcore2")
OPENAI = "openai:gpt-4o-mini"
ANTHROPIC = "anthropic:claude-3-5-haiku-latest"
GUARD = Path(__file__).parent / "cli" / "guard"

# Two shapes: one that redact()'s provider-key patterns also catch, and one that only the list
# of keys fmgate loaded can catch.
SHAPES: dict[str, Callable[[], str]] = {
    "sk-shaped": lambda: "sk-canary-" + uuid.uuid4().hex,
    "shapeless": lambda: "canary" + uuid.uuid4().hex + uuid.uuid4().hex[:8],
}


# -- finding the canary ----------------------------------------------------------------------


def pieces(key: str) -> set[bytes]:
    return {key[i : i + WINDOW].encode() for i in range(len(key) - WINDOW + 1)}


def leaks(outputs: Mapping[str, str | bytes], keys: list[str]) -> dict[str, list[str]]:
    """Output name -> the pieces of a key found in it."""
    found: dict[str, list[str]] = {}
    needles = set().union(*(pieces(k) for k in keys))
    for name, text in outputs.items():
        data = text.encode() if isinstance(text, str) else text
        hits = sorted(n.decode() for n in needles if n in data)
        if hits:
            found[name] = hits
    return found


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def error_texts(name: str, error: BaseException) -> dict[str, str]:
    exception = traceback.TracebackException.from_exception(error, capture_locals=False)
    texts = {
        f"{name}: str": str(error),
        f"{name}: repr": repr(error),
        f"{name}: traceback": "".join(exception.format()),
        f"{name}: args": repr(error.args),
    }
    record = getattr(error, "record", None)
    if record is not None:
        texts[f"{name}: record"] = json.dumps(record.to_dict(), default=str)
    return texts


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    with stub_server() as url:
        yield url


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    with echo_server() as url:
        yield url


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed calls are retried for real, but their jittered backoff draws 0 seconds."""
    monkeypatch.setattr(random, "uniform", lambda low, high: low)


@pytest.fixture(params=sorted(SHAPES))
def keys(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    make = SHAPES[request.param]
    chosen = {"OPENAI_API_KEY": make(), "ANTHROPIC_API_KEY": make()}
    for name, value in chosen.items():
        monkeypatch.setenv(name, value)
    return chosen


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("fmgate", *SDK_LOGGERS):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


class Sinks:
    """A store, a JSONL file and an OpenTelemetry exporter, each given every record."""

    def __init__(self, folder: Path) -> None:
        self.store_path = folder / "own" / "records.sqlite3"
        self.store = fmgate.SqliteStore(self.store_path)
        self.jsonl = fmgate.JsonlSink(folder / "records.jsonl")
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.otel = fmgate.OpenTelemetrySink(provider, include_params=True)
        self.all: tuple[fmgate.Sink, ...] = (self.store, self.jsonl, self.otel)

    def spans(self) -> dict[str, str]:
        return {
            f"span {s.name} #{i}": s.to_json()
            for i, s in enumerate(self.exporter.get_finished_spans())
        }


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[Sinks]:
    made = Sinks(tmp_path / "sinks")
    for sink in made.all:
        fmgate.add_sink(sink)
    try:
        yield made
    finally:
        for sink in made.all:
            fmgate.remove_sink(sink)
        made.store.close()
        made.jsonl.close()


# -- the calls -------------------------------------------------------------------------------


class Calls:
    """Runs each call, keeping what it raised; every call is expected to be recorded."""

    def __init__(self) -> None:
        self.errors: dict[str, BaseException] = {}
        self.ok = 0
        self.reprs: dict[str, str] = {}

    def run(self, name: str, call: Callable[[], object]) -> None:
        try:
            call()
        except fmgate.FmgateError as exc:
            self.errors[name] = exc
        else:
            self.ok += 1

    async def arun(self, name: str, call: Callable[[], Any]) -> None:
        try:
            await call()
        except fmgate.FmgateError as exc:
            self.errors[name] = exc
        else:
            self.ok += 1


def drain(model: fmgate.Model, prompt: str) -> None:
    with model.stream(prompt) as chunks:
        for _ in chunks:
            pass


async def adrain(model: fmgate.Model, prompt: str) -> None:
    async with model.astream(prompt) as chunks:
        async for _ in chunks:
            pass


def models(stub: str, echo: str, dead: str) -> dict[str, fmgate.Model]:
    """For each wire: a working server, a hostile one, a closed port and a wrong path."""
    found: dict[str, fmgate.Model] = {}
    for spec, suffix in ((OPENAI, "/v1"), (ANTHROPIC, "")):
        wire = spec.split(":")[0]
        for where, base in (("ok", stub), ("echo", echo), ("dead", dead), ("404", stub + "/no")):
            found[f"{wire}/{where}"] = fmgate.load(spec, base_url=base + suffix)
    return found


def run_calls(found: Mapping[str, fmgate.Model], calls: Calls) -> None:
    for wire in ("openai", "anthropic"):
        ok, echo = found[f"{wire}/ok"], found[f"{wire}/echo"]
        calls.run(f"{wire} generate", lambda m=ok: m.generate("hi", max_tokens=8))
        calls.run(f"{wire} stream", lambda m=ok: drain(m, "hi"))
        for prompt in ("FAIL-400", "FAIL-401", "FAIL-403", "FAIL-429", "FAIL-500"):
            calls.run(f"{wire} generate {prompt}", lambda m=echo, p=prompt: m.generate(p))
        for prompt in ("FAIL-401", "FAIL-500", "ERROR-IN-200"):
            calls.run(f"{wire} stream {prompt}", lambda m=echo, p=prompt: drain(m, p))
        calls.run(f"{wire} generate ERROR-IN-200", lambda m=echo: m.generate("ERROR-IN-200"))
        calls.run(f"{wire} refused", lambda m=found[f"{wire}/dead"]: m.generate("hi"))
        calls.run(f"{wire} refused stream", lambda m=found[f"{wire}/dead"]: drain(m, "hi"))
        calls.run(f"{wire} 404", lambda m=found[f"{wire}/404"]: m.generate("hi"))
    asyncio.run(run_async_calls(found, calls))


async def run_async_calls(found: Mapping[str, fmgate.Model], calls: Calls) -> None:
    for wire in ("openai", "anthropic"):
        ok, echo, dead = (found[f"{wire}/{w}"] for w in ("ok", "echo", "dead"))
        await calls.arun(f"{wire} agenerate", lambda m=ok: m.agenerate("hi"))
        await calls.arun(f"{wire} astream", lambda m=ok: adrain(m, "hi"))
        await calls.arun(f"{wire} agenerate FAIL-401", lambda m=echo: m.agenerate("FAIL-401"))
        await calls.arun(f"{wire} astream FAIL-500", lambda m=echo: adrain(m, "FAIL-500"))
        await calls.arun(f"{wire} astream ERROR-IN-200", lambda m=echo: adrain(m, "ERROR-IN-200"))
        await calls.arun(f"{wire} arefused", lambda m=dead: m.agenerate("hi"))
        for model in (ok, echo, dead):
            await model.aclose()


def run_calls_with_key_in_body(stub: str, calls: Calls, key: str) -> None:
    """A key passed as a plain parameter value: sent, as asked, but masked in the record."""
    for spec, base in ((OPENAI, f"{stub}/v1"), (ANTHROPIC, stub)):
        wire = spec.split(":")[0]
        with fmgate.load(spec, base_url=base) as model:
            param = {f"{wire}_user": key}
            calls.run(f"{wire} param", lambda m=model, p=param: m.generate("hi", **p))


# -- in process ------------------------------------------------------------------------------


def run_everything(stub: str, echo: str, key: str) -> Calls:
    """Every call, then every model closed and every sink flushed."""
    found = models(stub, echo, f"http://127.0.0.1:{closed_port()}")
    calls = Calls()
    calls.reprs = {
        name: f"{m!r} {m.backend!r} {m.backend} {m.access!r}" for name, m in found.items()
    }
    run_calls(found, calls)
    run_calls_with_key_in_body(stub, calls, key)
    for model in found.values():
        model.close()
    fmgate.flush()
    return calls


def gather(tmp_path: Path, sinks: Sinks, calls: Calls) -> dict[str, str | bytes]:
    """Every output of the run but the logs, by name."""
    outputs: dict[str, str | bytes] = {}
    default_store = Path(os.environ["FMGATE_STORE"])
    assert default_store.is_file()
    for folder in (default_store.parent, sinks.store_path.parent, tmp_path / "report"):
        outputs.update(files_under(folder))  # the -wal and -shm files included
    outputs["jsonl"] = sinks.jsonl.path.read_bytes()
    outputs.update(sinks.spans())
    for name, error in calls.errors.items():
        outputs.update(error_texts(name, error))
    outputs.update({f"repr {name}": text for name, text in calls.reprs.items()})
    outputs["records"] = json.dumps([r.to_dict() for r in fmgate.recent()], default=str)
    return outputs


def split_logs(records: list[logging.LogRecord]) -> tuple[str, str]:
    """(fmgate's log lines, everyone else's), each record with its args and exception."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    own: list[str] = []
    other: list[str] = []
    for record in records:
        line = f"{formatter.format(record)} {record.args!r}"
        mine = record.name == "fmgate" or record.name.startswith("fmgate.")
        (own if mine else other).append(line)
    return "\n".join(own), "\n".join(other)


def test_no_output_of_a_run_shows_the_key(
    keys: dict[str, str],
    stub: str,
    echo: str,
    sinks: Sinks,
    logs: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    calls = run_everything(stub, echo, keys["OPENAI_API_KEY"])
    assert (calls.ok, len(calls.errors)) == (10, 32), [
        f"{k}: {e!r}" for k, e in calls.errors.items()
    ]
    stored = sinks.store.records()
    assert len(stored) == calls.ok + len(calls.errors)
    write_report(tmp_path / "report", stored)
    outputs = gather(tmp_path, sinks, calls)
    outputs["stored records"] = json.dumps([r.to_dict() for r in stored], default=str)
    outputs["fmgate log"], _ = split_logs(logs.records)
    assert "fmgate call" in outputs["fmgate log"]  # DEBUG logging was on

    assert leaks(outputs, list(keys.values())) == {}
    assert [r.params["user"] for r in stored if "user" in r.params] == ["***", "***"]


def test_the_sdks_debug_logs_show_no_key(
    keys: dict[str, str], echo: str, logs: pytest.LogCaptureFixture
) -> None:
    """Outside fmgate's control, but a key there would leak all the same. (The SDKs do log
    request bodies at DEBUG, so a key passed as a parameter would show: none is, here.)"""
    calls = Calls()
    for spec, base in ((OPENAI, f"{echo}/v1"), (ANTHROPIC, echo)):
        with fmgate.load(spec, base_url=base) as model:
            calls.run(f"{spec} generate", lambda m=model: m.generate("hi"))
            calls.run(f"{spec} stream", lambda m=model: drain(m, "hi"))
            calls.run(f"{spec} 401", lambda m=model: m.generate("FAIL-401"))
            calls.run(f"{spec} 500 stream", lambda m=model: drain(m, "FAIL-500"))
    assert (calls.ok, len(calls.errors)) == (4, 4)
    own, sdk = split_logs(logs.records)
    assert "openai._base_client" in sdk and "anthropic._base_client" in sdk
    assert leaks({"fmgate log": own, "SDK log": sdk}, list(keys.values())) == {}


# -- the command line ------------------------------------------------------------------------


def cli_env(tmp_path: Path, keys: Mapping[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN"))}
    return {
        **base,
        **keys,
        "FMGATE_STORE": str(tmp_path / "cli.sqlite3"),
        "PYTHONPATH": os.pathsep.join([str(GUARD), base.get("PYTHONPATH", "")]),
        "COLUMNS": "200",
    }


def cli(args: list[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fmgate", *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_command_line_shows_no_key(stub: str, echo: str, tmp_path: Path) -> None:
    keys = {name: SHAPES["shapeless"]() for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    env = cli_env(tmp_path, keys)
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    runs = {
        "run ok": (0, ["run", OPENAI, "hi", "--base-url", f"{stub}/v1"]),
        "run 401 --json": (1, ["run", OPENAI, "FAIL-401", "--base-url", f"{echo}/v1", "--json"]),
        "run 400": (1, ["run", OPENAI, "FAIL-400", "--base-url", f"{echo}/v1"]),
        "run refused": (1, ["run", OPENAI, "hi", "--base-url", dead, "--no-stream"]),
    }
    started = {name: (code, cli(args, env)) for name, (code, args) in runs.items()}
    outputs: dict[str, str | bytes] = {}
    for name, (code, proc) in started.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == code, (name, err)
        outputs.update({f"{name} stdout": out, f"{name} stderr": err})
    assert "***" in outputs["run 401 --json stderr"]  # the quoted key, masked

    report = cli(["report", "--out", str(tmp_path / "report"), "--store", env["FMGATE_STORE"]], env)
    out, err = report.communicate(timeout=120)
    assert report.returncode == 0, err
    outputs.update({"report stdout": out, "report stderr": err})
    outputs.update(files_under(tmp_path))
    assert (tmp_path / "report" / "report.html").is_file()
    assert leaks(outputs, list(keys.values())) == {}


# -- leaks found once, and fixed ----------------------------------------------------------------


def test_a_key_cut_by_the_anthropic_message_limit_is_still_masked(
    keys: dict[str, str], echo: str, sinks: Sinks
) -> None:
    model = fmgate.load(ANTHROPIC, base_url=echo)
    with pytest.raises(fmgate.BadRequestError) as caught:
        model.generate("LONG-486")  # 486 filler characters, then the key: 14 of its characters fit
    fmgate.flush()
    outputs: dict[str, str | bytes] = dict(error_texts("error", caught.value))
    outputs.update(files_under(sinks.store_path.parent))
    outputs.update(sinks.spans())
    assert leaks(outputs, [keys["ANTHROPIC_API_KEY"]]) == {}


def test_a_key_nested_in_a_parameter_is_masked_in_the_record(
    keys: dict[str, str], stub: str, sinks: Sinks
) -> None:
    key = keys["OPENAI_API_KEY"]
    model = fmgate.load(OPENAI, base_url=f"{stub}/v1")
    record = model.generate("hi", openai_metadata={"note": key}).record
    fmgate.flush()
    outputs: dict[str, str | bytes] = {"record": json.dumps(record.to_dict())}
    outputs.update(files_under(sinks.store_path.parent))
    outputs["jsonl"] = sinks.jsonl.path.read_bytes()
    outputs.update(sinks.spans())
    assert leaks(outputs, [key]) == {}


def test_a_key_put_in_a_tag_is_masked_in_the_record(
    keys: dict[str, str], stub: str, sinks: Sinks
) -> None:
    key = keys["OPENAI_API_KEY"]
    model = fmgate.load(OPENAI, base_url=f"{stub}/v1")
    with fmgate.tagged(note=f"by mistake {key}"):
        record = model.generate("hi").record
    fmgate.flush()
    assert record.tags["note"].startswith("by mistake ")
    outputs: dict[str, str | bytes] = {"record": json.dumps(record.to_dict())}
    outputs.update(files_under(sinks.store_path.parent))
    assert leaks(outputs, [key]) == {}
