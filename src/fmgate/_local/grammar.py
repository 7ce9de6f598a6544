"""Constrained decoding for local models: structured output and tool calls valid by construction.

Before each token, a grammar says which tokens may come next and every other token's logit is
set to -inf (a ``LogitsProcessor`` in ``model.generate``), so the text is always a prefix of
something the grammar accepts: the JSON of ``output=``'s schema, or a call of one of the tools in
its family's format (:mod:`fmgate._local.tools`) with arguments valid against that tool's
schema. Rows of one batch each have their own grammar (or none). JSON is written on one line,
with the separators ``", "`` and ``": "`` that models trained on ``json.dumps`` output expect.

**The library is llguidance** (guidance-ai, MIT; the ``local`` extra), measured against xgrammar
0.2.9 with llguidance 1.9.1 by ``benchmarks/constrained_decoding.py`` (CPU, 2 threads, greedy,
a nested schema, medians of 9 rounds; constrained / unconstrained time per decoded token):

=================  ==========  ========  ===============================
model              llguidance  xgrammar  fmgate's whole ``generate``
=================  ==========  ========  ===============================
tiny llama         1.14        0.99      1.27
SmolLM2-135M       1.00        1.04      1.01
=================  ==========  ========  ===============================

Both stay within 1.3x (a mask costs about 0.05 ms on the tiny model's 640 tokens and 0.2 ms on
SmolLM2's 49k, against 1.4 and 70 ms per token), so speed does not separate them. Their view of
a tokenizer is built once per model (llguidance 13 and 340 ms, xgrammar 3 and 230 ms); a schema
costs llguidance 2 ms and xgrammar 2.4 and 7.5 ms. llguidance was chosen for:

- **Nothing to compile**: it computes masks lazily from the grammar (an Earley parser over a
  lexer of regex derivatives), so a schema costs the same 2 ms whatever the vocabulary, and each
  request may bring its own. xgrammar precompiles a token-mask cache per schema, which grows
  with the schema and the vocabulary.
- **No dependencies**: one abi3 wheel (any Python 3, about 8 MB) that pulls in nothing;
  xgrammar 0.2.9 requires torch, transformers, pydantic, numpy, apache-tvm-ffi and triton (about
  1 GB installed on Linux).
- **Lark grammars with JSON schemas inside** (``%json {...}``) and lazy triggers, which express
  tool calls in free text ("auto": text, and any ``<tool_call>`` block then well formed) without
  a second mechanism.
- Maintained and used in production: vLLM, SGLang and TensorRT-LLM ship it as a structured-output
  backend, and llama.cpp can build with it.

**Within the token budget.** A grammar cannot make a model stop: a string may go on until
``max_tokens`` runs out, cutting the JSON. So every few tokens fmgate measures how many
tokens it would take to close the open structure (:func:`closing`: the tokens the
grammar forces, such as a required key, else a quote, ``}``, ``]``, ``,`` or ``0``, the first
of them allowed, so that a string ends, a number ends and brackets close; then end of text),
and when no more than twice that are left, writes them. The reply is valid JSON, and its
``finish_reason`` is ``"length"``, saying it was cut short. Text outside any structure (tools
offered with ``tool_choice="auto"``) is never cut this way; a call begun in it is closed. A
budget too small for even the shortest valid reply still cuts it (``OutputValidationError``).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import LogitsProcessor

from .._errors import UnsupportedFeatureError
from .._extras import missing_extra
from .._types import ChatRequest
from .tools import TAGS, ToolFormat

if TYPE_CHECKING:
    from llguidance import LLMatcher, LLTokenizer

    from .loading import LoadedModel

__all__ = ["Constrained", "Grammar", "OPTIONS", "closing", "constrain", "grammar_for"]

_log = logging.getLogger(__name__)

# llguidance's JSON options: compact JSON with json.dumps's separators; keywords it cannot
# enforce are ignored (the reply is still validated against the schema afterwards, by Model).
OPTIONS: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "lenient": True,
    "coerce_one_of": True,
}
# When the budget nears its end, these close a structure fastest (see the module's docstring).
_CLOSERS = ('"', "}", "]", ",", "0")
_CACHED = 64  # grammars kept per model, ready to copy
_LONGEST_CLOSE = 64  # tokens a closing walk may take before it gives up


@dataclass(frozen=True, slots=True)
class Grammar:
    """A row's grammar in llguidance's Lark; ``free_text``: text outside any structure is
    allowed, so the budget guard leaves an accepting row alone."""

    lark: str
    free_text: bool = False


def grammar_for(
    request: ChatRequest, form: ToolFormat | None, specials: Container[str] = ()
) -> Grammar | None:
    """The grammar a request's reply must follow, or None when it is free.

    Tools offered (``tool_choice`` not ``none``): ``required`` forces one or more calls, a tool's
    name one call of it; ``auto`` with ``output`` forces either the output's JSON or calls, and
    without it lets text run with every call well formed (formats whose calls have a trigger).
    Otherwise ``output`` forces its JSON. ``specials``: the format's tags that the tokenizer
    holds as special tokens.
    """
    tools = request.tools if request.tool_choice != "none" else ()
    output = request.output
    if tools and form is not None:
        choice = request.tool_choice or "auto"
        if choice == "required":
            calls = form.grammar(tools, many=True, options=OPTIONS, specials=specials)
            return Grammar(f"start: calls\n{calls}")
        if choice != "auto":
            named = [t for t in tools if t.name == choice]
            calls = form.grammar(named, many=False, options=OPTIONS, specials=specials)
            return Grammar(f"start: calls\n{calls}")
        if output is not None:
            calls = form.grammar(tools, many=True, options=OPTIONS, specials=specials)
            return Grammar(f"start: output | calls\n{_output_rule(output.schema)}\n{calls}")
        lazy = form.lazy_grammar(tools, options=OPTIONS, specials=specials)
        return Grammar(lazy, free_text=True) if lazy is not None else None
    if output is not None:
        return Grammar(f"start: output\n{_output_rule(output.schema)}")
    return None


def _output_rule(schema: Any) -> str:
    return f"output: %json {json.dumps({**schema, 'x-guidance': OPTIONS})}"


def closing(matcher: LLMatcher, closers: Sequence[int], ends: Sequence[int]) -> list[int]:
    """The tokens that close ``matcher``'s open structure by the shortest path this greedy walk
    finds: forced tokens as they come (a required key), else the first of ``closers`` allowed,
    else the first token allowed; then an end of text (none if ``ends`` is empty). The matcher
    itself is not moved (the walk runs on a copy)."""
    walk = matcher.deep_copy()
    tokens: list[int] = []
    while not walk.is_accepting() and len(tokens) < _LONGEST_CLOSE:
        forced = walk.compute_ff_tokens()
        if forced:
            if not walk.consume_tokens(forced):
                break
            tokens.extend(forced)
            continue
        mask = walk.compute_bitmask()
        token = next((t for t in closers if _allows(mask, t)), None)
        if token is None:
            bits = np.unpackbits(np.frombuffer(mask, dtype=np.uint8), bitorder="little")
            allowed = np.flatnonzero(bits)
            token = int(allowed[0]) if len(allowed) else None
        if token is None or not walk.consume_token(token):
            break
        tokens.append(token)
    if ends and walk.is_accepting():
        tokens.append(ends[0])
    return tokens


def _allows(mask: bytes, token: int) -> bool:
    return token // 8 < len(mask) and bool(mask[token // 8] >> (token % 8) & 1)


class Constrained(LogitsProcessor):
    """Masks each row's logits to what its grammar allows next; in the budget's last tokens,
    closes a structure that would not end in time. ``closed`` holds the rows it closed (their
    finish_reason is "length")."""

    def __init__(
        self,
        matchers: Sequence[LLMatcher | None],
        grammars: Sequence[Grammar | None],
        *,
        width: int,
        budget: int,
        closers: Sequence[int],
        ends: Sequence[int],
        vocab: int,
    ) -> None:
        self._matchers = list(matchers)
        self._free = [g is not None and g.free_text for g in grammars]
        self._width = width
        self._budget = budget
        self._closers = list(closers)
        self._ends = list(ends)
        self._words = (vocab + 31) // 32
        self._mask = torch.full((len(self._matchers), self._words), -1, dtype=torch.int32)
        self._need = [-1] * len(self._matchers)  # tokens a close took when last measured
        self._plans: dict[int, list[int]] = {}
        self.closed: set[int] = set()

    @property
    def ends_by_grammar(self) -> bool:
        """Whether some row's grammar decides where it ends (not free text)."""
        rows = zip(self._matchers, self._free, strict=True)
        return any(m is not None and not free for m, free in rows)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        steps = int(input_ids.shape[1]) - self._width
        if steps > 0:
            self._consume(input_ids[:, -1].tolist())
        rows = [i for i, m in enumerate(self._matchers) if m is not None]
        if not rows:
            return scores
        self._fill(rows)
        scores.masked_fill_(self._refused(scores), float("-inf"))
        left = self._budget - steps
        for row in rows:
            token = self._closer(row, left)
            if token is not None:
                scores[row].fill_(float("-inf"))
                scores[row, token] = 0.0
        return scores

    def _consume(self, tokens: list[int]) -> None:
        for row, token in enumerate(tokens):
            matcher = self._matchers[row]
            if matcher is None:
                continue
            # A stopped matcher has read its end of text: the row is padded from here on. One
            # that refuses a token was ended by something else (a stop string): let it go.
            if matcher.is_stopped():
                self._matchers[row] = None
            elif not matcher.consume_token(token):
                error = matcher.get_error()
                _log.debug("row %d left its grammar at token %d: %s", row, token, error)
                self._matchers[row] = None

    def _fill(self, rows: list[int]) -> None:
        self._mask.fill_(-1)
        size = self._words * 4
        base = self._mask.data_ptr()
        for row in rows:
            matcher = self._matchers[row]
            assert matcher is not None
            matcher.unsafe_compute_mask_ptr(base + row * size, size)

    def _refused(self, scores: torch.Tensor) -> torch.Tensor:
        """The masks inverted, as booleans over the logits' width: True where a token is not
        allowed (a token past the tokenizer's vocabulary, padding in the embedding matrix,
        never is)."""
        bits = np.unpackbits(~self._mask.numpy().view(np.uint8), axis=1, bitorder="little")
        vocab = int(scores.shape[1])
        if bits.shape[1] < vocab:
            bits = np.pad(bits, ((0, 0), (0, vocab - bits.shape[1])), constant_values=1)
        refused = torch.from_numpy(bits).view(torch.bool)[:, :vocab]
        return refused if scores.device.type == "cpu" else refused.to(scores.device)

    def _closer(self, row: int, left: int) -> int | None:
        """The token that ``row`` must take now to close in time, or None (the model chooses).

        The closing walk is measured at the first token, then every 16 tokens, and every 4 once
        the tokens left come near twice what it took last time (the model may open more at any
        token). Once no more tokens are left than twice what it takes (and 4 for the tokens
        since it was measured), its tokens are forced one per step.
        """
        plan = self._plans.get(row)
        if plan is None:
            need = self._need[row]
            near = need >= 0 and left <= 2 * need + 16
            if need >= 0 and left % (4 if near else 16):
                return None
            matcher = self._matchers[row]
            assert matcher is not None
            if self._free[row] and matcher.is_accepting():
                return None
            walk = closing(matcher, self._closers, () if self._free[row] else self._ends)
            self._need[row] = len(walk)
            # Twice the need: one token of the model's can open a great deal (a "," in a list
            # of objects with many required keys), so closing starts with room to spare.
            if not walk or left > 2 * len(walk) + 4:
                return None
            plan = self._plans[row] = walk
            self.closed.add(row)
        if not plan:
            del self._plans[row]  # free text: closed, the model goes on
            return None
        return plan.pop(0)


# -- building one for a batch --------------------------------------------------------------------


@dataclass(slots=True)
class _ModelGrammars:
    """Per model: llguidance's tokenizer, the closing tokens, the tool tags that are special
    tokens, compiled grammars to copy."""

    tokenizer: LLTokenizer
    closers: list[int]
    specials: frozenset[str]
    compiled: OrderedDict[str, LLMatcher]


def constrain(
    loaded: LoadedModel,
    requests: Sequence[ChatRequest],
    forms: Sequence[ToolFormat | None],
    *,
    width: int,
    budget: int,
    ends: Sequence[int],
) -> Constrained | None:
    """The processor for a batch of ``requests`` (``forms``: the tool format each is read in),
    or None when no row's reply is constrained."""
    if not any(r.output is not None or (r.tools and r.tool_choice != "none") for r in requests):
        return None
    state = _state(loaded, ends)
    grammars = [grammar_for(r, f, state.specials) for r, f in zip(requests, forms, strict=True)]
    if all(g is None for g in grammars):
        return None
    matchers = [_matcher(state, g.lark) if g is not None else None for g in grammars]
    return Constrained(
        matchers,
        grammars,
        width=width,
        budget=budget,
        closers=state.closers,
        ends=ends,
        vocab=state.tokenizer.vocab_size,
    )


def _state(loaded: LoadedModel, ends: Sequence[int]) -> _ModelGrammars:
    state = loaded.memo.get("llguidance")
    if state is None:
        tokenizer = _tokenizer(loaded, ends)
        specials = _specials(loaded.tokenizer, tokenizer)
        state = _ModelGrammars(tokenizer, _closers(loaded.tokenizer), specials, OrderedDict())
        loaded.memo["llguidance"] = state
    assert isinstance(state, _ModelGrammars)
    return state


def _tokenizer(loaded: LoadedModel, ends: Sequence[int]) -> LLTokenizer:
    """llguidance's view of the model's tokenizer (about 0.5 s for a 49k vocabulary, once)."""
    try:
        import llguidance
    except ImportError as exc:
        raise missing_extra(
            "Structured output and forced tool calls on a local model", "local", "llguidance"
        ) from exc
    backend = getattr(loaded.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UnsupportedFeatureError(
            f"{loaded.name} has a slow (Python) tokenizer: constrained decoding, which output= "
            "and forced tool calls need, reads a fast (tokenizers) one.",
            feature="output",
        )
    spec = backend.to_str()
    head = loaded.model.get_output_embeddings()
    logits = int(head.weight.shape[0]) if head is not None else 0
    # a vision-language model's config keeps vocab_size under text_config (LLaVA's has none)
    config = loaded.model.config
    size = getattr(config, "vocab_size", None) or getattr(config.get_text_config(), "vocab_size", 0)
    vocab = max(logits, int(size or 0), len(loaded.tokenizer))
    return llguidance.LLTokenizer(spec, n_vocab=vocab, eos_token=list(ends))


def _specials(tokenizer: Any, view: LLTokenizer) -> frozenset[str]:
    """The tool tags that are one token which llguidance holds special (an added token, such
    as Qwen 2.5's ``<tool_call>``): grammars must name them, not spell them."""
    found = set()
    for tag in TAGS:
        token = tokenizer.convert_tokens_to_ids(tag)
        if isinstance(token, int) and token != tokenizer.unk_token_id and token < view.vocab_size:
            if view.is_special_token(token):
                found.add(tag)
    return frozenset(found)


def _closers(tokenizer: Any) -> list[int]:
    """The ids of the single-character tokens in _CLOSERS, in their order."""
    ids = []
    for char in _CLOSERS:
        token = tokenizer.convert_tokens_to_ids(char)
        if isinstance(token, int) and tokenizer.decode([token]) == char:
            ids.append(token)
    return ids


def _matcher(state: _ModelGrammars, lark: str) -> LLMatcher:
    """A fresh matcher for ``lark``: a copy of the compiled one, compiled on first use."""
    import llguidance

    pristine = state.compiled.get(lark)
    if pristine is None:
        pristine = llguidance.LLMatcher(
            state.tokenizer, llguidance.LLMatcher.grammar_from_lark(lark), log_level=0
        )
        if pristine.is_error():
            raise UnsupportedFeatureError(
                f"fmgate cannot constrain decoding to this schema: {pristine.get_error()}",
                feature="output",
            )
        state.compiled[lark] = pristine
        if len(state.compiled) > _CACHED:
            state.compiled.popitem(last=False)
    else:
        state.compiled.move_to_end(lark)
    return pristine.deep_copy()
