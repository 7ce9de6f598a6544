"""Continuous batching: a request joins the running batch at the next decoding step, and leaves it
when it ends (end-of-sequence, its token budget, a stop string, or its reader gone).

One :class:`Engine` per loaded model runs a decode loop on a thread of its own:

- **Admission**: between two steps, waiting rows (up to ``max_batch`` in flight) are prefilled
  together (their prompts left-padded into one forward pass with a fresh ``DynamicCache``), each
  samples its first token, and they join the running batch: the two caches are left-padded to
  the longer length and concatenated on the batch axis, the attention masks likewise.
- **Step**: one forward pass of every row's last token, each row at its own position (its real
  tokens so far), greedy or sampled per row (temperature, top-p); each row's ``on_token`` sees its
  token and may end the row.
- **Leaving**: ended rows are dropped from the cache at once, and the columns that are padding in
  every remaining row are cut from the left, so a departed long prompt stops costing attention.
- **Time**: each row accrues its processor-sharing share of the loop's time: a step's seconds
  divided among the rows in it, a prefill's among the rows it admitted. That share is the call's
  part of the machine, which prices it.

transformers ships a continuous-batching manager too (``model.init_continuous_batching``, what
``transformers serve --continuous-batching`` runs). It is built around paged attention for GPUs;
on a CPU its scheduler and paged-cache bookkeeping cost more per step than the model does for
small models, and it takes no per-request stop strings. fmgate's engine keeps transformers'
model, ``DynamicCache`` and attention masks, and schedules rows itself; docs/serve.md has the
measurements.

**Compiled** (``compile = true`` off CUDA): the step runs through ``torch.compile`` with dynamic
shapes, so rows joining and leaving and the cache growing reuse one graph. torch specialises a
dimension of size 1, so a lone row is a graph of its own: ``warm`` compiles both at load (their
time is the load's), prompts are padded to two columns at least (a one-column cache would be a
third), and the cache is kept contiguous (the graph guards on strides). On a small model the
step is then about half as long on a CPU: the forward pass is mostly per-operation overhead.

Which calls run here (the transformers backend's ``continuous_engine`` decides): plain text chat
(no tools, output schema, images or ``transformers_`` settings; greedy or sampled, seeded or
not) on a model whose cache is a
plain ``DynamicCache`` of full-attention layers; anything else runs as a static batch, as before.
"""

from __future__ import annotations

import atexit
import collections
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

logger = logging.getLogger("fmgate")

# seconds a decode loop with nothing to do waits before its thread ends
IDLE_EXIT_S = 10.0
# tokens each warm-up row decodes (``Engine.warm``)
WARM_TOKENS = 3


@dataclass(eq=False)
class Row:
    """One request in the engine: its prompt ids and how to sample, then what happened.

    ``on_token`` is called on the engine's thread with each new token (end-of-sequence tokens
    included); it returns False to end the row there (a stop string, a reader gone).
    ``cancel()`` ends it at the next step from any thread.
    """

    prompt: list[int]
    budget: int
    eos: frozenset[int]
    on_token: Callable[[int], bool]
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None  # a sampled row's seed: its draws are its own (see ``generator``)
    # filled in by the engine
    finish: str | None = None  # "stop" (end-of-sequence or on_token), "length", "cancelled"
    error: BaseException | None = None
    generated: int = 0
    share_s: float = 0.0
    first_token_at: float | None = None
    peak_rows: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    on_done: Callable[[], object] | None = None  # called once the row has ended, any thread
    cancelled: bool = False
    # a sampled row's random stream, seeded with ``seed`` (else fresh entropy) when it joins:
    # rows never share a stream, so a seed gives the same text whatever else is in the batch, and
    # the process's generator (which seeded static generates fork) is never drawn from here
    generator: torch.Generator | None = None

    def end(self) -> None:
        """Mark the row ended (``done`` set, ``on_done`` called): the engine's, once."""
        if not self.done.is_set():
            self.done.set()
            if self.on_done is not None:
                self.on_done()

    def cancel(self) -> None:
        self.cancelled = True


# Engines whose loop may be running: stopped at exit, so that no loop is inside a forward pass
# while the interpreter shuts down (torch's C++ runtime aborts the process then).
_RUNNING: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for engine in list(_RUNNING):
        engine.close()


class EngineUnsupported(Exception):
    """The model's cache cannot be merged (sliding windows, recurrent layers): static batches."""


class Engine:
    """The decode loop of one model. ``run(row)`` blocks until the row ends; ``submit`` does not."""

    def __init__(
        self, model: Any, *, pad_id: int, device: Any, max_batch: int = 32, compiled: bool = False
    ) -> None:
        self._model = model
        # the decoding step, compiled (``compiled``: torch.compile with dynamic shapes, so rows
        # joining and leaving and the cache growing do not recompile; see ``warm``) or the model
        self.compiled = compiled
        self._stepper = torch.compile(model.forward, dynamic=True) if compiled else model
        self._pad = pad_id
        self._device = device
        self.max_batch = max_batch
        self._waiting: collections.deque[Row] = collections.deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.unsupported: str | None = None  # why this model cannot batch continuously
        # the running batch
        self._rows: list[Row] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # [rows, columns]: 1 a real token, 0 padding
        self._next: torch.Tensor | None = None  # [rows, 1]: the token each row feeds next
        self._pos: torch.Tensor | None = None  # [rows, 1]: that token's position
        self._keep_logits, self._cache_arg = _forward_names(model)
        # sdpa reads a boolean 4D mask as it is (eager attention adds its mask: it gets the 2D
        # one, and transformers builds the rest, as for any other implementation)
        self._mask_4d = getattr(model.config, "_attn_implementation", None) == "sdpa"

    # -- callers' side --------------------------------------------------------------------------

    def submit(self, *rows: Row) -> None:
        """Queue ``rows``; they join the batch together at the next step (as room allows)."""
        with self._wake:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._waiting.extend(rows)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="fmgate-continuous", daemon=True
                )
                _RUNNING.add(self)
                self._thread.start()
            self._wake.notify()

    def run(self, row: Row) -> Row:
        self.submit(row)
        row.done.wait()
        if row.error is not None:
            raise row.error
        return row

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def warm(self, prompt: Sequence[int]) -> None:
        """Compile the step before any call needs it: two rows, then three (the first graph is
        specialised to the batch it saw, the second is dynamic), then one (torch.compile
        specialises a dimension of size 1: a graph of its own), each a few tokens of ``prompt``.
        Raises what compiling raised."""
        for rows in (2, 3, 1):
            batch = [Row(list(prompt), WARM_TOKENS, frozenset(), _keep) for _ in range(rows)]
            self.submit(*batch)
            for row in batch:
                row.done.wait()
                if row.error is not None:
                    raise row.error

    @property
    def in_flight(self) -> int:
        return len(self._rows) + len(self._waiting)

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._rows and not self._closed:
                    # an idle loop ends, so that its thread does not keep the weights alive
                    # after the last Model using them is gone; the next call starts another
                    if not self._wake.wait(IDLE_EXIT_S) and not self._waiting:
                        self._thread = None
                        return
                if self._closed:
                    self._fail(RuntimeError("the model was closed"), self._rows + [*self._waiting])
                    return
                new: list[Row] = []
                while self._waiting and len(self._rows) + len(new) < self.max_batch:
                    row = self._waiting.popleft()
                    if row.cancelled:
                        self._end(row, "cancelled")
                    else:
                        new.append(row)
            try:
                with torch.inference_mode():
                    if new:
                        self._admit(new)
                    if self._rows:
                        self._step()
            except EngineUnsupported as exc:
                self.unsupported = str(exc)
                self._fail(exc, self._rows + new)
            except BaseException as exc:  # one failed pass fails its rows, not the engine
                logger.exception("fmgate: a continuous batch failed")
                self._fail(exc, self._rows + [r for r in new if not r.done.is_set()])

    def _fail(self, exc: BaseException, rows: Sequence[Row]) -> None:
        for row in rows:
            if not row.done.is_set():
                row.error = exc
                row.finish = "error"
                row.end()
        self._reset()

    def _reset(self) -> None:
        self._rows, self._cache, self._mask, self._next, self._pos = [], None, None, None, None

    def _admit(self, new: list[Row]) -> None:
        from transformers import DynamicCache

        t0 = time.perf_counter()
        for row in new:
            if row.temperature > 0 and row.generator is None:
                row.generator = torch.Generator(device=self._device)
                row.generator.manual_seed(
                    row.seed if row.seed is not None else secrets.randbits(63)
                )
        # at least two columns: a cache one column long would be a shape of its own to compile
        width = max(2, *(len(row.prompt) for row in new))
        ids = [[self._pad] * (width - len(r.prompt)) + r.prompt for r in new]
        mask = [[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in new]
        ids_t = torch.tensor(ids, device=self._device)
        mask_t = torch.tensor(mask, device=self._device)
        pos = (mask_t.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        extra = {"logits_to_keep": 1} if self._keep_logits else {}
        out = self._model(
            input_ids=ids_t,
            attention_mask=mask_t,
            position_ids=pos,
            use_cache=True,
            **{self._cache_arg: cache},
            **extra,
        )
        _check_cache(cache)
        tokens = _sample(out.logits[:, -1, :], new)
        spent = (time.perf_counter() - t0) / len(new)
        for row in new:
            row.share_s += spent
        self._merge(cache, mask_t, pos[:, -1:] + 1, tokens, new)
        self._deliver(tokens.view(-1).tolist(), range(len(self._rows) - len(new), len(self._rows)))

    def _merge(
        self,
        cache: Any,
        mask: torch.Tensor,
        pos: torch.Tensor,
        tokens: torch.Tensor,
        new: list[Row],
    ) -> None:
        if self._cache is None:
            if self.compiled:  # a prefill's keys are a transposed view: strides are guarded on
                for layer in cache.layers:
                    layer.keys, layer.values = layer.keys.contiguous(), layer.values.contiguous()
            self._cache, self._mask, self._pos, self._next = cache, mask, pos, tokens
            self._rows = list(new)
            return
        assert self._mask is not None and self._pos is not None and self._next is not None
        old_w, new_w = self._mask.shape[1], mask.shape[1]
        width = max(old_w, new_w)
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)])
            mine.values = torch.cat(
                [_left_pad(mine.values, width), _left_pad(theirs.values, width)]
            )
        self._mask = torch.cat([_left_pad_2d(self._mask, width), _left_pad_2d(mask, width)])
        self._pos = torch.cat([self._pos, pos])
        self._next = torch.cat([self._next, tokens])
        self._rows.extend(new)

    def _step(self) -> None:
        assert self._mask is not None and self._pos is not None and self._next is not None
        t0 = time.perf_counter()
        mask = torch.cat([self._mask, self._mask.new_ones((self._mask.shape[0], 1))], dim=1)
        # one query per row: the mask is which columns it may read, given ready-made in 4D
        # ([rows, 1, 1, columns], True: attend), so transformers builds none at each step
        out = self._stepper(
            input_ids=self._next,
            attention_mask=mask[:, None, None, :].bool() if self._mask_4d else mask,
            position_ids=self._pos,
            use_cache=True,
            **{self._cache_arg: self._cache},
        )
        self._mask = mask
        tokens = _sample(out.logits[:, -1, :], self._rows)
        self._next = tokens
        self._pos = self._pos + 1
        spent = (time.perf_counter() - t0) / len(self._rows)
        for row in self._rows:
            row.share_s += spent
        self._deliver(tokens.view(-1).tolist(), range(len(self._rows)))

    def _deliver(self, tokens: list[int], indices: Sequence[int]) -> None:
        """Hand each row its token; then drop the rows that ended."""
        now = time.perf_counter()
        n = len(self._rows)
        for token, i in zip(tokens[-len(indices) :], indices, strict=True):
            row = self._rows[i]
            row.generated += 1
            row.peak_rows = max(row.peak_rows, n)
            if row.first_token_at is None:
                row.first_token_at = now
            try:
                keep = row.on_token(token)
            except BaseException as exc:  # a listener's bug ends its row, not the batch
                row.error = exc
                keep = False
            if row.cancelled:
                row.finish = "cancelled"
            elif token in row.eos or not keep:
                row.finish = "stop"
            elif row.generated >= row.budget:
                row.finish = "length"
        self._drop()

    def _drop(self) -> None:
        ended = [i for i, row in enumerate(self._rows) if row.finish is not None]
        if not ended:
            return
        for i in ended:
            self._rows[i].end()
        kept = [i for i, row in enumerate(self._rows) if row.finish is None]
        if not kept:
            self._reset()
            return
        assert self._mask is not None and self._pos is not None and self._next is not None
        index = torch.tensor(kept, device=self._mask.device)
        mask = self._mask.index_select(0, index)
        # columns that are padding in every row left: cut from the left of the cache and mask
        real = mask.any(dim=0).nonzero()
        cut = int(real[0]) if real.numel() else 0
        for layer in self._cache.layers:
            # cut, then selected: the result is contiguous (a compiled step guards on strides)
            layer.keys = layer.keys[:, :, cut:, :].index_select(0, index)
            layer.values = layer.values[:, :, cut:, :].index_select(0, index)
        self._mask = mask[:, cut:]
        self._pos = self._pos.index_select(0, index)
        self._next = self._next.index_select(0, index)
        self._rows = [self._rows[i] for i in kept]

    def _end(self, row: Row, finish: str) -> None:
        row.finish = finish
        row.end()


def _keep(token: int) -> bool:
    return True


def _left_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """``[rows, heads, columns, dim]`` padded with zeros on the left to ``width`` columns."""
    short = width - t.shape[2]
    if short == 0:
        return t
    return torch.cat([t.new_zeros((t.shape[0], t.shape[1], short, t.shape[3])), t], dim=2)


def _left_pad_2d(t: torch.Tensor, width: int) -> torch.Tensor:
    short = width - t.shape[1]
    return t if short == 0 else torch.cat([t.new_zeros((t.shape[0], short)), t], dim=1)


def _check_cache(cache: Any) -> None:
    """Only full-attention layers that grow by concatenation can be padded and merged."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        kinds = sorted({type(layer).__name__ for layer in layers or []})
        raise EngineUnsupported(
            f"this model's cache ({', '.join(kinds) or 'none'}) cannot be batched continuously"
        )


def _sample(logits: torch.Tensor, rows: Sequence[Row]) -> torch.Tensor:
    """One token per row, ``[rows, 1]``: greedy rows take the most likely token, sampled rows
    draw at their temperature from their top-p nucleus, each from its own generator."""
    greedy = logits.argmax(dim=-1, keepdim=True)
    drawn = [i for i, row in enumerate(rows) if row.temperature > 0]
    if not drawn:
        return greedy
    index = torch.tensor(drawn, device=logits.device)
    temps = torch.tensor([rows[i].temperature for i in drawn], device=logits.device)
    top_p = torch.tensor([rows[i].top_p for i in drawn], device=logits.device)
    probs = torch.softmax(logits.index_select(0, index).float() / temps[:, None], dim=-1)
    ordered, order = probs.sort(dim=-1, descending=True)
    outside = ordered.cumsum(dim=-1) - ordered > top_p[:, None]  # the most likely always stays
    ordered = ordered.masked_fill(outside, 0.0)
    draws = torch.cat(
        [torch.multinomial(ordered[j], 1, generator=rows[i].generator) for j, i in enumerate(drawn)]
    )
    picked = order.gather(-1, draws[:, None])
    return greedy.index_copy(0, index, picked)


def _forward_names(model: Any) -> tuple[bool, str]:
    """Whether ``forward`` takes ``logits_to_keep``, and its cache argument's name
    (``past_key_values``, renamed ``cache`` in recent transformers)."""
    import inspect

    try:
        names = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False, "past_key_values"
    return "logits_to_keep" in names, "cache" if "cache" in names else "past_key_values"


# -- a call's rows ---------------------------------------------------------------------------------


class _Watch:
    """One row's text as its tokens arrive: stop strings found, streamed pieces handed out (less
    any tail that could still begin a stop string), the listener's "gone" heard."""

    def __init__(
        self,
        tokenizer: Any,
        stops: tuple[str, ...],
        ends: frozenset[int],
        emit: Callable[[str], bool | None] | None,
    ) -> None:
        from .text_pieces import RowDecoder

        self._decoder = RowDecoder(tokenizer, ends)
        self.stops = stops
        self._emit = emit
        self.ids: list[int] = []
        self.stopped_at: int | None = None  # tokens generated when a stop string showed
        self.sent = ""
        self.gone = False

    def on_token(self, token: int) -> bool:
        from .text_pieces import ends_with_stop, safe_prefix

        self.ids.append(token)
        if not self.stops and self._emit is None:  # nothing to look for or show: decode at the end
            return True
        piece = self._decoder.feed([token])
        if self.stops and ends_with_stop(self._decoder, piece, self.stops):
            self.stopped_at = len(self.ids)
        if self._emit is not None and piece:
            safe = safe_prefix(self._decoder.text, self.stops)
            if len(safe) > len(self.sent):
                shown, self.sent = safe[len(self.sent) :], safe
                if self._emit(shown) is False:
                    self.gone = True
        return self.stopped_at is None and not self.gone


@dataclass(frozen=True, slots=True)
class Sent:
    """The text each streamed row was handed (what ``generation.Ran.pieces`` gives)."""

    texts: list[str]

    def sent(self, row: int) -> str:
        return self.texts[row]


def run_rows(
    loaded: Any,
    engine: Engine,
    requests: Sequence[Any],
    *,
    cancel: threading.Event | None = None,
    on_text: Sequence[Callable[[str], bool | None] | None] | None = None,
    window: int | None = None,
) -> tuple[list[Any], Sent]:
    """Each request as a row of the model's continuous batch; returns when all have ended.

    Each row has its own settings (budget, temperature, top-p, stop strings). ``on_text``, per
    request, receives its text pieces as decoded; a listener that returns False ends its row at
    once. ``cancel`` ends every row at its next step. ``window`` rows of this call at most are
    in the batch at once (the next joins as one ends): ``generate_many``'s ``batch_size``.
    Returns a Completion (or the row's error) per request, and the text each was handed.
    """
    from .._errors import ContextLengthError
    from .._record import Usage
    from .._types import Completion
    from .generation import (
        Batch,
        eos_ids,
        has_chat_template,
        max_new_tokens,
        render,
        row_result,
        sampling,
    )

    called = time.perf_counter()
    tokenizer = loaded.tokenizer
    ends = frozenset(eos_ids(loaded))
    # not the model's lock: a static generate holds it for its whole run
    with loaded.tokenizer_lock:
        texts = [render(tokenizer, r.messages) for r in requests]
        encoded = tokenizer(texts, add_special_tokens=not has_chat_template(tokenizer))
    prompts: list[list[int]] = [list(ids) for ids in encoded["input_ids"]]
    slots = threading.Semaphore(window or len(requests))
    rows: list[Row | None] = []
    waited: list[float] = []
    watches: list[_Watch] = []
    results: list[Any] = []
    empty = torch.empty(0)
    for i, (request, ids) in enumerate(zip(requests, prompts, strict=True)):
        params = request.params
        stops = tuple(params.stop or ())
        watch = _Watch(tokenizer, stops, ends, on_text[i] if on_text is not None else None)
        watches.append(watch)
        try:
            budget = max_new_tokens(loaded, Batch(empty, empty, [len(ids)]), params)
        except ContextLengthError as exc:
            rows.append(None)
            waited.append(0.0)
            results.append(exc)
            continue
        added = Row(
            ids,
            budget,
            ends,
            watch.on_token,
            temperature=float(params.temperature) if sampling(params) else 0.0,
            top_p=float(params.top_p) if params.top_p is not None else 1.0,
            seed=params.seed,
            on_done=slots.release,
        )
        rows.append(added)
        results.append(None)
        slots.acquire()
        waited.append(time.perf_counter() - called if window else 0.0)
        if cancel is not None and cancel.is_set():
            added.cancel()
        engine.submit(added)
    for pending in rows:
        if pending is None:
            continue
        while not pending.done.wait(0.05):
            if cancel is not None and cancel.is_set():
                for other in rows:
                    if other is not None:
                        other.cancel()
    for i, (ran, watch) in enumerate(zip(rows, watches, strict=True)):
        if ran is None:
            continue
        if ran.error is not None:
            results[i] = ran.error
            continue
        eos_at = next((n for n, t in enumerate(watch.ids) if t in ends), None)
        text, reason, count = row_result(
            tokenizer, watch.ids, eos_at, watch.stopped_at, watch.stops
        )
        if ran.finish == "cancelled":  # stopped from outside, as a static batch's cancel is
            reason = "length"
        results[i] = Completion(
            text,
            reason,
            Usage(len(prompts[i]), count, source="tokenizer"),
            first_token_at=ran.first_token_at,
            machine_s=ran.share_s,
            waited_s=waited[i],
            params={"batch_peak": ran.peak_rows},
        )
    return results, Sent([w.sent for w in watches])
