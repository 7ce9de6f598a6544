"""A generation's text as it grows: each row decoded incrementally as its tokens arrive, stop
strings found in what was generated, and the pieces a stream may already show.

Decoding is incremental, as in vLLM and TGI (:class:`RowDecoder`); a streamed row holds back any
tail that could still begin a stop string (:class:`RowText`); :class:`TextPieces` is the
``generate`` streamer that feeds the rows being streamed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer


def ends_with_stop(decoder: RowDecoder, piece: str, stops: tuple[str, ...]) -> bool:
    """Whether the text, grown by ``piece``, now holds a stop string: only the end it could lie
    in is searched, so the cost of a step does not grow with the text."""
    if not piece:
        return False
    text = decoder.text
    start = len(text) - len(piece)
    return any(text.find(stop, max(0, start - len(stop) + 1)) >= 0 for stop in stops)


class RowDecoder:
    """The text of one row, decoded incrementally as its tokens arrive.

    Decoding is incremental, as in vLLM and TGI: each step decodes a few tokens of context plus
    the new one, so a token that only completes a character (or merges with the one before) is
    never shown broken, and a trailing U+FFFD (an incomplete UTF-8 sequence) waits for the rest
    of its character. The row ends at its first end-of-sequence token: what a batch pads it with
    afterwards is not its text.
    """

    def __init__(self, tokenizer: Any, ends: frozenset[int]) -> None:
        self._tokenizer = tokenizer
        self._ends = ends
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0
        self._ended = False
        self.text = ""

    def feed(self, ids: Sequence[int]) -> str:
        """Take the row's next tokens; return the text they add (maybe none yet)."""
        if self._ended:
            return ""
        for i, token in enumerate(ids):
            if token in self._ends:
                self._ended = True
                ids = ids[:i]
                break
        self._ids.extend(ids)
        before = decode(self._tokenizer, self._ids[self._prefix : self._read])
        now = decode(self._tokenizer, self._ids[self._prefix :])
        if len(now) <= len(before) or now.endswith("\ufffd"):
            return ""
        piece = now[len(before) :]
        self.text += piece
        self._prefix, self._read = self._read, len(self._ids)
        return piece


class RowText:
    """The text of one streamed row, handed out as it is decoded (:class:`RowDecoder`), less
    what might still change: any tail that could begin a stop string is held back."""

    def __init__(
        self,
        tokenizer: Any,
        stops: tuple[str, ...],
        ends: frozenset[int],
        emit: Callable[[str], bool | None],
    ) -> None:
        self._decoder = RowDecoder(tokenizer, ends)
        self._stops = stops
        self._emit = emit
        self.sent = ""

    def feed(self, ids: Sequence[int]) -> None:
        if self._decoder.feed(ids):
            self._flush()

    def _flush(self) -> None:
        safe = safe_prefix(self._decoder.text, self._stops)
        if len(safe) > len(self.sent):
            piece = safe[len(self.sent) :]
            self.sent = safe
            self._emit(piece)


class TextPieces(BaseStreamer):
    """Turns the tokens of a ``generate`` into text pieces as they are decoded, row by row: each
    row with a listener gets its own :class:`RowText`; rows without one are not decoded.
    ``holds``, per row, adds strings its text is held back at as at a stop string (a tool
    call's trigger)."""

    def __init__(
        self,
        tokenizer: Any,
        stops: tuple[str, ...],
        ends: Sequence[int],
        emits: Sequence[Callable[[str], bool | None] | None],
        holds: Sequence[tuple[str, ...]] | None = None,
    ) -> None:
        end_ids = frozenset(ends)
        extra = holds if holds is not None else [()] * len(emits)
        self.rows = [
            RowText(tokenizer, stops + hold, end_ids, emit) if emit is not None else None
            for emit, hold in zip(emits, extra, strict=True)
        ]
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt
            self._prompt_seen = True
            return
        for row, ids in zip(self.rows, value.reshape(len(self.rows), -1).tolist(), strict=True):
            if row is not None:
                row.feed(ids)

    def sent(self, row: int) -> str:
        """The text row ``row`` has been given so far."""
        text = self.rows[row]
        return text.sent if text is not None else ""

    def end(self) -> None:
        pass


def safe_prefix(text: str, stops: tuple[str, ...]) -> str:
    """``text`` up to the first stop string, less any tail that could start one."""
    text = cut_at_stop(text, stops)
    hold = max((_stop_begun(text, stop) for stop in stops), default=0)
    return text[: len(text) - hold]


def _stop_begun(text: str, stop: str) -> int:
    """The length of the longest end of ``text`` that begins ``stop`` (and is shorter)."""
    if len(stop) < 2:
        return 0
    tail = text[-(len(stop) - 1) :]
    at = tail.find(stop[0])
    while at >= 0:  # the longest candidate first; each check is one comparison in C
        if stop.startswith(tail[at:]):
            return len(tail) - at
        at = tail.find(stop[0], at + 1)
    return 0


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[: min(found)] if found else text


def decode(tokenizer: Any, ids: Sequence[int]) -> str:
    # No clean-up of spaces: it would make a prefix's text differ from the whole text's start.
    text: str = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return text
