"""What a self-hosted server tells about the model it serves, and what a call to it cost.

For rows whose distribution is ``self_hosted`` (vLLM, Ollama, llama.cpp, LM Studio, or such a
row pointed elsewhere with ``base_url``), the OpenAI backend:

- asks the server once, at its first call, what it serves: ``GET /v1/models`` (fmgate serve's
  ``fmgate`` object, vLLM's ``max_model_len``, llama.cpp's ``meta``) and, for Ollama,
  ``POST /api/show``. :func:`models_facts` and :func:`ollama_facts` read the answers; a failure
  leaves the row's facts as they were. The server's word never decides
  ``data_leaves_machine``: that follows from the endpoint;
- prices each call (:class:`SelfHosted`): with the server's own price where it gives one
  (fmgate serve's ``usage.fmgate``, basis ``server_reported``), else with the hourly rate the
  user gave (``hardware_usd_per_hour``, basis ``hardware_time``) times the call's share of the
  server's busy time (:class:`BusyClock`); else not at all (basis ``unknown``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx2

from .._clean import clean_text
from .._cost import unknown
from .._errors import ConfigurationError
from .._local.profile import _SPDX
from .._record import Access, Cost
from ._deadline import Clock, until

if TYPE_CHECKING:
    import openai

    from ._base import BackendConfig

FACTS_TIMEOUT_S = 2.0
"""How long the facts of a server may take: they are a detail, never worth a slow first call."""
FACTS_MAX_BYTES = 4 * 2**20
LEARN_WAIT_S = 2 * FACTS_TIMEOUT_S + 1.0
"""How long a call waits for another that is asking the facts (two requests at most)."""
MODELS_PATH = "/models"
OLLAMA_SHOW_PATH = "/api/show"
_MAX_TEXT = 200  # a fact longer than this is not a licence id or a dtype
MAX_CALL_USD = Decimal(1_000_000)
"""A reported cost above this is no real call's: taken as malformed (as an impossible token
count is), so that one absurd value cannot swamp every sum it enters."""
_MAX_COUNT = 2**63 - 1
_MONEY = Context(prec=12)
_S_PER_HOUR = Decimal(3600)
RATE_SETTING = "hardware_usd_per_hour"

# -- the hourly rate -----------------------------------------------------------------------------


def hourly_rate(options: Mapping[str, Any], row: str, self_hosted: bool) -> Decimal | None:
    """``hardware_usd_per_hour`` from the alias or load() settings: a finite amount >= 0, and
    only for a self-hosted row (an API's calls have list prices)."""
    value = options.get(RATE_SETTING)
    if value is None:
        return None
    if not self_hosted:
        raise ConfigurationError(
            f"{RATE_SETTING} prices the time of a server you run; {row} is a third party's API, "
            "priced from its list prices: remove the setting."
        )
    try:
        rate = None if isinstance(value, bool) else Decimal(str(value).strip())
    except InvalidOperation:
        rate = None
    if rate is None or not rate.is_finite() or rate < 0:
        raise ConfigurationError(
            f"{RATE_SETTING} must be a finite amount of USD per hour >= 0 (e.g. 1.2), "
            f"not {value!r}."
        )
    return rate


# -- busy time, shared by the calls in flight ----------------------------------------------------


class BusyClock:
    """Processor sharing over this client's calls in flight to one server.

    ``V(t)`` grows by ``dt / n(t)`` while ``n(t) > 0`` calls are in flight; a call's share of
    the server's busy time is ``V(end) - V(start)``. Overlapping calls split the time they
    overlap, so the shares of all calls add up to the time the server was busy with them,
    never more: two calls of 10 s that overlap by 5 s are billed 7.5 s each, 15 s in all.
    """

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._v = 0.0
        self._n = 0
        self._at = now()

    def _advance(self) -> None:
        t = self._now()
        if self._n:
            self._v += (t - self._at) / self._n
        self._at = t

    def start(self) -> float:
        """A call starts: its mark, for :meth:`stop`."""
        with self._lock:
            self._advance()
            self._n += 1
            return self._v

    def stop(self, mark: float) -> float:
        """The call that started at ``mark`` ends: its share-seconds."""
        with self._lock:
            self._advance()
            self._n -= 1
            return self._v - mark


_CLOCKS: dict[str, BusyClock] = {}
_CLOCKS_LOCK = threading.Lock()


def busy_clock(endpoint: str) -> BusyClock:
    """The clock of the server at ``endpoint``, shared by every backend that calls it."""
    with _CLOCKS_LOCK:
        return _CLOCKS.setdefault(endpoint, BusyClock())


# -- pricing one call ----------------------------------------------------------------------------


class Span:
    """One call's pricing, from its start to :meth:`cost`."""

    __slots__ = ("_clock", "_mark", "_rate", "_where", "share_s")

    def __init__(self, clock: BusyClock, rate: Decimal | None, where: str) -> None:
        self._clock = clock
        self._rate = rate
        self._where = where
        self._mark: float | None = clock.start()
        self.share_s: float | None = None

    def end(self) -> None:
        if self._mark is not None:
            self.share_s = self._clock.stop(self._mark)
            self._mark = None

    def cost(self, extension: Any) -> Cost | None:
        """The call's cost: the server's own (``usage.fmgate``) when valid, else its share of
        the server's time at the user's rate, else None (the recording says unknown).
        A malformed price from the server is ignored and says so."""
        self.end()
        reported, problem = server_cost(extension, self._where)
        if reported is not None:
            return reported
        if self._rate is not None and self.share_s is not None:
            return hardware_cost(self._rate, self.share_s)
        return unknown(problem) if problem is not None else None


def hardware_cost(rate: Decimal, share_s: float) -> Cost:
    amount = _MONEY.multiply(Decimal(repr(share_s)), rate) / _S_PER_HOUR
    how = (
        f"hardware time: {share_s:.4g} s, this call's share of the server's busy time "
        f"(processor sharing among this client's calls in flight) x ${rate}/h"
    )
    return Cost(_MONEY.plus(amount), "hardware_time", source=how)


def server_cost(extension: Any, where: str) -> tuple[Cost | None, str | None]:
    """(the server's price as a Cost, or None; why it was not taken, or None when absent).

    ``extension`` is fmgate serve's ``usage.fmgate`` object; its strings are the server's and
    are cleaned as every server string is before it enters a record."""
    if extension is None:
        return None, None
    if not isinstance(extension, Mapping):
        return None, f"{where} sent a usage.fmgate that is not an object: ignored"
    raw = extension.get("cost_usd")
    basis = _text(extension.get("cost_basis")) or "unknown"
    source = _text(extension.get("cost_source"))
    said = f"{basis}: {source}" if source else basis
    if raw is None:
        return None, f"{where} could not price the call ({said})"
    amount = _amount(raw)
    if amount is None:
        return None, f"{where} sent a cost that is not a decimal amount >= 0: ignored"
    how = f"{where}: {said}"
    return Cost(amount, "server_reported", source=how, energy_j=_joules(extension)), None


def _amount(raw: Any) -> Decimal | None:
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    try:
        amount = Decimal(raw.strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and 0 <= amount <= MAX_CALL_USD else None


def _joules(extension: Mapping[str, Any]) -> float | None:
    value = extension.get("energy_j")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    joules = float(value)
    return joules if math.isfinite(joules) and joules >= 0 else None


@dataclass(frozen=True, slots=True)
class NativeFacts:
    """A server's own API for its model's facts, asked besides ``/v1/models``: POST ``path``
    (from the server's root) with ``{"model": name}``, read by ``read``."""

    path: str
    read: Callable[[Any], dict[str, Any]]


def self_hosted(config: BackendConfig, endpoint: str, base_url: str) -> SelfHosted | None:
    """What a backend keeps for a self-hosted row; None for an API's."""
    row = config.provider
    rate = hourly_rate(config.options, row.name, row.distribution == "self_hosted")
    if row.distribution != "self_hosted":
        return None
    return SelfHosted(endpoint, base_url, rate, row.name)


class SelfHosted:
    """What the OpenAI backend keeps for a self-hosted server: its facts, once learnt, and how
    its calls are priced. :meth:`claim` hands the one fetch of facts to the first caller."""

    def __init__(self, endpoint: str, base_url: str, rate: Decimal | None, row: str) -> None:
        self.where = f"fmgate serve at {endpoint}"
        self.base_url = base_url
        self.rate = rate
        self.native = NATIVE_FACTS.get(row)
        self.facts: dict[str, Any] = {}
        self._clock = busy_clock(endpoint)
        self._claimed = False
        self._learnt = threading.Event()
        self._lock = threading.Lock()

    def claim(self) -> bool:
        """True once: to the caller that is to fetch the facts. The others wait for them
        (:meth:`settled`): a call recorded meanwhile would fix the row's facts in its model's
        access, which a model reads once."""
        with self._lock:
            claimed, self._claimed = self._claimed, True
            return not claimed

    def settled(self) -> None:
        """Wait until the facts are learnt, or given up (at most :data:`LEARN_WAIT_S`); never
        on an event loop's thread, where the call asking them may be the one that would wait."""
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            return
        self._learnt.wait(LEARN_WAIT_S)

    async def asettled(self) -> None:
        if not self._learnt.is_set():
            await asyncio.to_thread(self._learnt.wait, LEARN_WAIT_S)

    def learn(self, client: openai.OpenAI, model: str) -> float:
        """Ask the server what it serves (see the module's docstring); the seconds it took."""
        t0 = time.perf_counter()
        try:
            models = _answer(lambda: client.get(MODELS_PATH, **_facts_request()))
            native = None
            if self.native is not None:
                url, body = self._native_request(model)
                native = _answer(lambda: client.post(url, body=body, **_facts_request()))
            self.keep(models, model, native)
        finally:
            self._learnt.set()
        return time.perf_counter() - t0

    async def alearn(self, client: openai.AsyncOpenAI, model: str) -> float:
        t0 = time.perf_counter()
        try:
            models = await _aanswer(client.get(MODELS_PATH, **_facts_request()))
            native = None
            if self.native is not None:
                url, body = self._native_request(model)
                native = await _aanswer(client.post(url, body=body, **_facts_request()))
            self.keep(models, model, native)
        finally:
            self._learnt.set()
        return time.perf_counter() - t0

    def keep(self, models: Any, model: str, native: Any = None) -> None:
        """Keep the facts of the answers (None where a request failed); the native API's
        facts win over the list's."""
        facts = models_facts(models, model)
        if native is not None and self.native is not None:
            facts.update({k: v for k, v in self.native.read(native).items() if v is not None})
        self.facts = facts

    def _native_request(self, model: str) -> tuple[str, dict[str, Any]]:
        """The URL of the server's own API (from its root, not from ``/v1``), and the body."""
        assert self.native is not None
        parts = urlsplit(self.base_url)
        root = parts.path.rstrip("/").removesuffix("/v1")
        url = urlunsplit((parts.scheme, parts.netloc, root + self.native.path, "", ""))
        return url, {"model": model}

    def access(self, row: Access) -> Access:
        """The row's access with what the server said over it; the network facts stay the
        row's, computed from the endpoint."""
        return dataclasses.replace(row, **self.facts) if self.facts else row

    @contextlib.contextmanager
    def span(self) -> Iterator[Span]:
        span = Span(self._clock, self.rate, self.where)
        try:
            yield span
        finally:
            span.end()


def _facts_request() -> dict[str, Any]:
    options: openai.RequestOptions = {
        "security": {"bearer_auth": True},
        "timeout": FACTS_TIMEOUT_S,
        "max_retries": 0,
    }
    return {"cast_to": httpx2.Response, "options": options}


def _facts_clock() -> Clock:
    clock = Clock(FACTS_TIMEOUT_S, f"the deadline for a server's facts ({FACTS_TIMEOUT_S:g} s)")
    clock.budget = FACTS_MAX_BYTES
    return clock


def _answer(send: Callable[[], httpx2.Response]) -> Any:
    """The JSON a facts request got back, or None however it failed: facts are a detail, never
    a reason for the call that asks them to fail (a server without the route, a proxy's HTML,
    a timeout, a refused connection)."""
    try:
        with until(_facts_clock()):
            return json.loads(send().content)
    except Exception:
        return None


async def _aanswer(sending: Awaitable[httpx2.Response]) -> Any:
    try:
        with until(_facts_clock()):
            return json.loads((await sending).content)
    except Exception:
        return None


# -- reading what servers publish ----------------------------------------------------------------

_FMGATE_FACTS: Mapping[str, type] = {
    "open_weights": bool,
    "license": str,
    "parameters": int,
    "dtype": str,
    "quantization": str,
    "weights_bytes": int,
    "context_window": int,
    "hardware": str,
}


def models_facts(body: Any, model: str) -> dict[str, Any]:
    """Access facts from a ``/v1/models`` list: the entry named ``model`` (or the only one: a
    llama.cpp server answers whatever name it is sent). fmgate serve's ``fmgate`` object comes
    first; then vLLM's ``max_model_len``, then llama.cpp's ``meta`` (``n_ctx``, the window it
    serves, else ``n_ctx_train``; ``n_params``; ``size``, the weights' bytes)."""
    entry = _entry(body, model)
    if entry is None:
        return {}
    meta = _object(entry.get("meta"))
    found = {
        "context_window": _count(meta.get("n_ctx_train")),
        "parameters": _count(meta.get("n_params")),
        "weights_bytes": _count(meta.get("size")),
    }
    found["context_window"] = _count(meta.get("n_ctx")) or found["context_window"]
    found["context_window"] = _count(entry.get("max_model_len")) or found["context_window"]
    ours = entry.get("fmgate")
    if isinstance(ours, Mapping):
        for key, kind in _FMGATE_FACTS.items():
            value = _typed(ours.get(key), kind)
            if value is not None:
                found[key] = value
    return {k: v for k, v in found.items() if v is not None}


def _entry(body: Any, model: str) -> Mapping[str, Any] | None:
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, list):
        return None
    entries = [e for e in data if isinstance(e, Mapping)]
    for entry in entries:
        aliases = entry.get("aliases")
        if entry.get("id") == model or (isinstance(aliases, list) and model in aliases):
            return entry
    return entries[0] if len(entries) == 1 else None


def ollama_facts(body: Any) -> dict[str, Any]:
    """Access facts from Ollama's ``POST /api/show``: ``model_info``'s
    ``general.parameter_count`` and ``<architecture>.context_length``, ``details``'
    ``quantization_level``, and the ``license`` text's SPDX id where it plainly is one."""
    if not isinstance(body, Mapping):
        return {}
    info, details = _object(body.get("model_info")), _object(body.get("details"))
    arch = info.get("general.architecture")
    window = info.get(f"{arch}.context_length") if isinstance(arch, str) else None
    return {
        "parameters": _count(info.get("general.parameter_count")),
        "context_window": _count(window),
        "quantization": _typed(details.get("quantization_level"), str),
        "license": license_id(body.get("license")),
    }


# Licence texts whose opening names them beyond doubt: (words the first lines hold, SPDX id).
_LICENSE_OPENINGS = (
    (("apache license", "version 2.0"), "Apache-2.0"),
    (("mit license",), "MIT"),
)


def license_id(text: Any) -> str | None:
    """The SPDX id of a licence text, where it plainly is one: an ``SPDX-License-Identifier``
    line, a text that is itself a known id, or the opening of the Apache 2.0 or MIT licence.
    Otherwise None: a model licence (Llama's, Gemma's) is not guessed from its prose."""
    if not isinstance(text, str) or not text.strip():
        return None
    for line in text.splitlines()[:40]:
        _, tag, ident = line.partition("SPDX-License-Identifier:")
        if tag:
            return _known_spdx(ident.strip())
    spdx = _known_spdx(text.strip())
    if spdx is not None:
        return spdx
    opening = " ".join(text.lower().split()[:12])
    for words, ident in _LICENSE_OPENINGS:
        if all(w in opening for w in words):
            return ident
    return None


def _known_spdx(ident: str) -> str | None:
    return _SPDX.get(ident.lower()) if 0 < len(ident) <= 40 else None


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_COUNT:
        return None
    return value


def _typed(value: Any, kind: type) -> Any:
    if kind is int:
        return _count(value)
    if kind is bool:
        return value if isinstance(value, bool) else None
    return _text(value)


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return clean_text(value.strip()[:_MAX_TEXT], "server_fact", [])


# Rows whose server has its own API for a model's facts, by row name.
NATIVE_FACTS: Mapping[str, NativeFacts] = {"ollama": NativeFacts(OLLAMA_SHOW_PATH, ollama_facts)}
