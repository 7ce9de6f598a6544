"""Generation with a loaded causal model: prompts to tokens, one ``generate`` per batch, tokens to
completions, and text pieces for streams.

Parameters map onto ``model.generate`` as follows (the model's own generation_config.json
supplies everything else, as with a plain ``model.generate``; ``transformers_<name>`` overrides):

- ``max_tokens`` -> ``max_new_tokens`` (``DEFAULT_MAX_TOKENS`` when not given), lowered to the room
  left in the context window; a prompt that alone fills the window is a ContextLengthError.
- ``temperature`` 0 or unset -> greedy (``do_sample=False``); above 0 -> sampling with that
  temperature and ``top_p``. A temperature below ``GREEDY_BELOW`` (1e-5, vLLM's threshold) is
  greedy too: dividing the logits by it overflows to inf, and sampling from that fails, while
  the distribution it asks for is greedy's to within float precision.
- ``seed`` -> ``torch.manual_seed`` inside ``torch.random.fork_rng`` (the caller's RNG is left
  as it was). Sampling draws from torch's process-wide generator, so sampled calls run one at a
  time across the process: that is what makes a seed reproduce the same text. (Plain calls in
  the continuous batch draw from a generator of their own instead: :mod:`.continuous`.)
- ``stop`` -> each row's generated text is decoded as it grows and its new end searched for the
  stop strings (as vLLM does); the stop string and what follows it are cut from the text and
  ``finish_reason`` is ``"stop"``, as with the OpenAI API. Only generated text matches, never
  the prompt. A step costs a few tokens' decoding per row whatever the stop strings are:
  transformers' ``StopStringCriteria`` would read the whole vocabulary for each new set of
  stops (seconds, and a table of vocabulary x stop length, on a real tokenizer), which lets one
  request with new or long stop strings stall every other user of the model.

``transformers_ignore_eos=True`` (vLLM's ``ignore_eos``) generates the whole ``max_tokens`` budget:
the end-of-sequence token is never chosen (``min_new_tokens`` is the budget), as load generators
ask to measure a fixed output length.

Tools and ``output``: a request that offers tools, or holds earlier calls and results, is
rendered with a template that shows them and its calls are read out of the text afterwards
(:mod:`fmgate._local.tools`); ``output`` and forced tool choices constrain each row's tokens to
a grammar (:mod:`fmgate._local.grammar`), which rows of one batch need not share.

Images: a vision-language model (``profile.vision == "chat"``) renders and encodes its prompts
through its processor (:mod:`fmgate._local.vlm`): image parts become the model's image tokens and
``pixel_values`` for ``generate``; everything above applies unchanged, its token counts include
the image tokens.

Decode path: on CUDA (or with the load setting ``compile = true``) ``generate`` runs with a static
KV cache and a compiled decoding step, on the model's own decode thread; grammar-constrained calls
stay eager. ``params["decode_path"]`` in the record says which ran
(:mod:`fmgate._local.fast_decode`).

``finish_reason`` is ``"stop"`` on an end-of-sequence token or a stop string, ``"length"`` when
``max_new_tokens`` ran out (or the grammar closed a structure early because it was about to),
``"tool_calls"`` when the reply is calls. ``output_tokens`` counts the tokens the model
generated, the end-of-sequence token included and padding excluded.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from .._errors import BackendError, ContextLengthError, InvalidRequestError
from .._record import Usage
from .._types import ChatRequest, Completion, GenerationParams, Message
from . import fast_decode, tools, vlm
from .fast_decode import EAGER, DecodePath, DecodePlan
from .grammar import Constrained, constrain
from .loading import LoadedModel

# The row text helpers lived here before text_pieces.py: still importable from here.
from .text_pieces import RowDecoder as RowDecoder
from .text_pieces import RowText as RowText
from .text_pieces import TextPieces as TextPieces
from .text_pieces import cut_at_stop as cut_at_stop
from .text_pieces import decode as decode
from .text_pieces import ends_with_stop as ends_with_stop
from .text_pieces import safe_prefix as safe_prefix

DEFAULT_MAX_TOKENS = 256
# Temperatures below this are greedy (see the module's docstring).
GREEDY_BELOW = 1e-5
# generate() arguments fmgate sets itself: a transformers_<name> parameter may not replace them.
RESERVED = frozenset(
    {
        "inputs",
        "input_ids",
        "attention_mask",
        "streamer",
        "stopping_criteria",
        "stop_strings",
        "tokenizer",
        "max_new_tokens",
        "max_length",
        "return_dict_in_generate",
        "num_return_sequences",
        "generation_config",
        "logits_processor",
        "pixel_values",
    }
)
_RNG_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Batch:
    """Tokenised prompts, left-padded to one width; for a vision-language model, ``extra``
    holds what else its processor made for ``generate`` (``pixel_values``...)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_tokens: list[int]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(self.input_ids.shape[1])


# -- prompts -------------------------------------------------------------------------------------


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The text the model reads: the chat template applied, or a lone user prompt as it is.

    A model without a chat template (a base model) continues plain text: a single user message
    with no system prompt is passed raw; anything else cannot be rendered faithfully.
    """
    if has_chat_template(tokenizer):
        chat = [{"role": m.role, "content": m.content} for m in messages]
        text: str = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return text
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].content
    raise InvalidRequestError(
        "This model has no chat template, so it cannot read roles or a system prompt: pass one "
        "plain str prompt (it is continued as text) or use a chat model."
    )


def encode(
    loaded: LoadedModel, requests: Sequence[ChatRequest], plans: Sequence[tools.Plan]
) -> Batch:
    """The prompts as token ids; a vision-language model's through its processor, images and
    all (:mod:`fmgate._local.vlm`), so ``prompt_tokens`` counts image tokens too."""
    with loaded.tokenizer_lock:
        if vlm.reads_images(loaded):
            return _batch(loaded, vlm.encode(loaded, requests, plans))
        tokenizer = loaded.tokenizer
        texts = [
            p.render(tokenizer, r) if p.shown is not None else render(tokenizer, r.messages)
            for r, p in zip(requests, plans, strict=True)
        ]
        # A chat template writes its own special tokens (BOS included); raw text the usual ones.
        enc = tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            add_special_tokens=not has_chat_template(tokenizer),
        )
    return _batch(loaded, enc)


def _batch(loaded: LoadedModel, enc: Any) -> Batch:
    mask = enc["attention_mask"]
    extra = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    return Batch(
        enc["input_ids"].to(loaded.device),
        mask.to(loaded.device),
        [int(n) for n in mask.sum(dim=1).tolist()],
        extra,
    )


def max_new_tokens(loaded: LoadedModel, batch: Batch, params: GenerationParams) -> int:
    wanted = params.max_tokens or DEFAULT_MAX_TOKENS
    window = loaded.profile.context_window
    if window is None:
        return wanted
    longest = max(batch.prompt_tokens)
    if longest >= window:
        error = ContextLengthError(
            f"The prompt is {longest} tokens long and {loaded.name} reads at most {window}: "
            "shorten the prompt.",
            provider="transformers",
        )
        error.window, error.prompt_tokens = window, longest
        raise error
    return min(wanted, window - longest)


# -- generate() arguments ------------------------------------------------------------------------


def generate_kwargs(loaded: LoadedModel, params: GenerationParams, budget: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": budget,
        "pad_token_id": loaded.tokenizer.pad_token_id,
    }
    if sampling(params):
        kwargs.update(do_sample=True, temperature=params.temperature)
        if params.top_p is not None:
            kwargs["top_p"] = params.top_p
    else:
        kwargs["do_sample"] = False
    clash = RESERVED.intersection(params.extra)
    if clash:
        raise InvalidRequestError(
            f"transformers_{sorted(clash)[0]} cannot be passed through: fmgate sets it (use "
            "max_tokens for the length and stop for stop strings)."
        )
    extra = dict(params.extra)
    ignore_eos = extra.pop("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise InvalidRequestError(
            f"transformers_ignore_eos must be True or False, not {ignore_eos!r}."
        )
    if ignore_eos:  # EOS is never chosen before the budget is spent
        kwargs["min_new_tokens"] = budget
    kwargs.update(extra)
    return kwargs


def sampling(params: GenerationParams) -> bool:
    return params.temperature is not None and params.temperature >= GREEDY_BELOW


@contextlib.contextmanager
def rng(loaded: LoadedModel, params: GenerationParams) -> Iterator[None]:
    """Greedy calls need no randomness; sampled ones take the process RNG, seeded if asked."""
    if not sampling(params) and "do_sample" not in params.extra:
        yield
        return
    with _RNG_LOCK:
        if params.seed is None:
            yield
            return
        cuda = loaded.device.startswith("cuda")
        devices = [torch.device(loaded.device).index or 0] if cuda else []
        with torch.random.fork_rng(devices=devices, device_type="cuda" if cuda else None):
            torch.manual_seed(params.seed)
            yield


def eos_ids(loaded: LoadedModel) -> list[int]:
    eos = loaded.model.generation_config.eos_token_id
    if eos is None:
        eos = loaded.tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in eos] if isinstance(eos, list | tuple) else [int(eos)]


# -- watching the decoding loop ------------------------------------------------------------------


class Tracker(StoppingCriteria):
    """Called by ``generate`` after every step: stamps the first token, finds stop strings per
    row and stops everything when the caller cancels (a stream closed early)."""

    def __init__(
        self,
        loaded: LoadedModel,
        width: int,
        stops: tuple[str, ...],
        cancel: threading.Event | None,
    ) -> None:
        self.first_token_at: float | None = None
        # row -> number of generated tokens when its stop string appeared
        self.stopped_at: dict[int, int] = {}
        self._width = width
        self._stops = stops
        self._tokenizer = loaded.tokenizer
        self._ends = frozenset(eos_ids(loaded))
        self._rows: list[RowDecoder] = []
        self._seen = 0  # generated tokens already handed to the row decoders
        self._cancel = cancel
        self._none: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        if self._none is None:
            self._none = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        done = self._none
        if self._stops:
            done = self._watch(input_ids)
        if self._cancel is not None and self._cancel.is_set():
            return torch.ones_like(done)
        return done

    def _watch(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Decode each row's new tokens and look for a stop string in the text they end."""
        if not self._rows:
            self._rows = [RowDecoder(self._tokenizer, self._ends) for _ in range(len(input_ids))]
        steps = int(input_ids.shape[1]) - self._width
        new = input_ids[:, self._width + self._seen :].tolist()
        self._seen = steps
        for row, (decoder, ids) in enumerate(zip(self._rows, new, strict=True)):
            if row in self.stopped_at:
                continue
            if ends_with_stop(decoder, decoder.feed(ids), self._stops):
                self.stopped_at[row] = steps
        done = torch.zeros(len(self._rows), dtype=torch.bool)
        for row in self.stopped_at:
            done[row] = True
        return done.to(input_ids.device)


# -- running a batch -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ran:
    """What one ``generate`` gave: a completion per request, the streamer when streaming, and
    the record's ``params`` about the decode path (:mod:`fmgate._local.fast_decode`)."""

    completions: list[Completion]
    pieces: TextPieces | None
    params: dict[str, str]


def run(
    loaded: LoadedModel,
    requests: Sequence[ChatRequest],
    *,
    cancel: threading.Event | None = None,
    on_text: Sequence[Callable[[str], bool | None] | None] | None = None,
    decode: DecodePlan = EAGER,
    on_warm: Callable[[float], None] | None = None,
) -> Ran:
    """One ``generate`` for requests that share their parameters; the streamer when streaming.

    ``on_text``, one entry per request, receives that row's text pieces as they are decoded
    (``None``: the row is not streamed). With tools offered, a row's text is held back from
    where a call begins (the whole reply, for formats whose calls have no trigger).
    ``decode`` is the model's decode path; ``on_warm`` gets the seconds a warm-up of a new
    shape took before the generation (a cold start, not the call's latency).
    """
    params = requests[0].params
    stops = params.stop or ()
    # Tokenizing takes the lock too: a fast tokenizer is not safe to share between threads (its
    # padding settings are set per call: "RuntimeError: Already borrowed").
    with loaded.lock:
        plans = [tools.plan(loaded, r) for r in requests]
        streamer = _streamer(loaded, stops, plans, on_text)
        batch = encode(loaded, requests, plans)
        budget = max_new_tokens(loaded, batch, params)
        kwargs = generate_kwargs(loaded, params, budget)
        grammar = _constrain(loaded, requests, plans, batch, budget, kwargs)
        path, reason = fast_decode.choose(decode, constrained=grammar is not None)
        tracker = Tracker(loaded, batch.width, stops, cancel)
        out = _decode(path, decode, loaded, batch, params, tracker, streamer, kwargs, on_warm)
        rows = finish(loaded, out[:, batch.width :], tracker, stops)
    completions = [
        tools.with_calls(
            Completion(
                text,
                "length" if grammar is not None and i in grammar.closed else reason,
                Usage(prompt, generated, source="tokenizer"),
                first_token_at=tracker.first_token_at,
            ),
            request,
            how.form,
        )
        for i, ((text, reason, generated), prompt, request, how) in enumerate(
            zip(rows, batch.prompt_tokens, requests, plans, strict=True)
        )
    ]
    return Ran(completions, streamer, fast_decode.record_params(path, reason))


def _streamer(
    loaded: LoadedModel,
    stops: tuple[str, ...],
    plans: Sequence[tools.Plan],
    on_text: Sequence[Callable[[str], bool | None] | None] | None,
) -> TextPieces | None:
    if on_text is None:
        return None
    holds = [p.hold() for p in plans]
    emits = [emit if hold is not None else None for emit, hold in zip(on_text, holds, strict=True)]
    if all(emit is None for emit in emits):
        return None
    rows = [hold or () for hold in holds]
    return TextPieces(loaded.tokenizer, stops, eos_ids(loaded), emits, rows)


def _constrain(
    loaded: LoadedModel,
    requests: Sequence[ChatRequest],
    plans: Sequence[tools.Plan],
    batch: Batch,
    budget: int,
    kwargs: dict[str, Any],
) -> Constrained | None:
    """The grammar processor for the batch, put into ``kwargs``; None when no row has one."""
    forms = [p.form for p in plans]
    ends = eos_ids(loaded)
    processor = constrain(loaded, requests, forms, width=batch.width, budget=budget, ends=ends)
    if processor is None:
        return None
    if "min_new_tokens" in kwargs and processor.ends_by_grammar:
        raise InvalidRequestError(
            "transformers_ignore_eos cannot be combined with output= or a forced tool_choice: "
            "the grammar must be free to end the reply."
        )
    kwargs["logits_processor"] = LogitsProcessorList([processor])
    return processor


def _decode(
    path: DecodePath,
    decode: DecodePlan,
    loaded: LoadedModel,
    batch: Batch,
    params: GenerationParams,
    tracker: Tracker,
    streamer: TextPieces | None,
    kwargs: dict[str, Any],
    on_warm: Callable[[float], None] | None,
) -> torch.Tensor:
    """``generate`` on the path chosen: eager here, or on the model's decode thread with the
    static cache, after warming the batch's shape if it is new."""
    if path == "eager":
        return _generate(loaded, batch, params, tracker, streamer, kwargs)
    length = fast_decode.cache_len(loaded, batch.width + int(kwargs["max_new_tokens"]))
    for key, value in fast_decode.static_kwargs(decode, loaded, length).items():
        kwargs.setdefault(key, value)  # a transformers_<name> the caller passed stays theirs
    rows = len(batch.prompt_tokens)

    def work() -> tuple[float, torch.Tensor]:
        warm_s = fast_decode.warm(decode, loaded, rows, length)
        return warm_s, _generate(loaded, batch, params, tracker, streamer, kwargs)

    warm_s, out = fast_decode.on_decode_thread(loaded, work)
    if warm_s and on_warm is not None:
        on_warm(warm_s)
    return out


def _generate(
    loaded: LoadedModel,
    batch: Batch,
    params: GenerationParams,
    tracker: Tracker,
    streamer: TextPieces | None,
    kwargs: dict[str, Any],
) -> torch.Tensor:
    with rng(loaded, params), torch.inference_mode():
        try:
            out: torch.Tensor = loaded.model.generate(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                stopping_criteria=StoppingCriteriaList([tracker]),
                streamer=streamer,
                **batch.extra,
                **kwargs,
            )
        except (ValueError, TypeError) as exc:
            raise InvalidRequestError(
                f"transformers refused the generation settings: {exc}"
            ) from exc
        except torch.OutOfMemoryError as exc:
            raise BackendError(
                f"{loaded.device} ran out of memory generating for {len(batch.prompt_tokens)} "
                "prompt(s): lower batch_size or max_tokens, or load with a smaller dtype.",
                provider="transformers",
            ) from exc
    return out


def finish(
    loaded: LoadedModel,
    generated: torch.Tensor,
    tracker: Tracker,
    stops: tuple[str, ...],
) -> list[tuple[str, str, int]]:
    """Per row: the text, why it ended and how many tokens the model generated for it."""
    ends = eos_ids(loaded)
    hits = torch.isin(generated, torch.tensor(ends, device=generated.device)) if ends else None
    rows = []
    for row, ids in enumerate(generated.tolist()):
        eos_at = int(hits[row].nonzero()[0]) if hits is not None and bool(hits[row].any()) else None
        rows.append(row_result(loaded.tokenizer, ids, eos_at, tracker.stopped_at.get(row), stops))
    return rows


def row_result(
    tokenizer: Any, ids: list[int], eos_at: int | None, stop_n: int | None, stops: tuple[str, ...]
) -> tuple[str, str, int]:
    """One row's text, why it ended and its generated-token count, from its token ids: cut at
    its first end-of-sequence token (``eos_at``) or where a stop string showed (``stop_n``)."""
    if stop_n is not None and (eos_at is None or eos_at >= stop_n):
        return cut_at_stop(decode(tokenizer, ids[:stop_n]), stops), "stop", stop_n
    if eos_at is not None:
        kept, reason, count = ids[:eos_at], "stop", eos_at + 1
    else:
        kept, reason, count = ids, "length", len(ids)
    text = decode(tokenizer, kept)
    cut = cut_at_stop(text, stops)
    if cut != text:  # a stop string the token matcher cannot see (one holding U+FFFD, say)
        return cut, "stop", _tokens_to_stop(tokenizer, kept, stops)
    return text, reason, count


def _tokens_to_stop(tokenizer: Any, ids: list[int], stops: tuple[str, ...]) -> int:
    """How many of ``ids`` it takes for the text to show a stop string (once shown, it stays)."""

    def shows(count: int) -> bool:
        text = decode(tokenizer, ids[:count])
        return cut_at_stop(text, stops) != text

    low, high = 1, len(ids)
    while low < high:
        middle = (low + high) // 2
        if shows(middle):
            high = middle
        else:
            low = middle + 1
    return low
