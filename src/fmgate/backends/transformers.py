"""The transformers backend (``transformers:``, alias ``hf:``): open models inside this process.

    m = load("transformers:Qwen/Qwen2.5-0.5B-Instruct", device="auto", dtype="auto")
    m = load("hf:./models/my-llama", revision=None, trust_remote_code=False)

The model id is a local folder or a Hugging Face repo id (downloaded with ``huggingface_hub``,
pinned by ``revision=``; the resolved commit is the record's ``revision``). Settings: ``device``
(``auto`` picks CUDA, then MPS, then CPU), ``dtype`` (``auto``: bfloat16 on CUDA where supported,
else float16; float32 on CPU and MPS), ``revision``, ``trust_remote_code``, and the cost settings
of :mod:`fmgate._local.energy` (``usd_per_kwh``, ``cpu_watts``, ``gpu_watts``,
``hardware_usd_per_hour``), and ``compile`` (the fast decode path: a static KV cache and a
compiled decoding step; left out, on for CUDA and off elsewhere; compiled and warmed at load, so
its time is ``load_s``: :mod:`fmgate._local.fast_decode`; off CUDA, ``compile = true`` also
compiles the continuous batch's step, which plain calls join: :mod:`fmgate._local.continuous`).
How parameters map onto ``generate`` is documented in :mod:`fmgate._local.generation`;
``record.params["decode_path"]`` is ``eager``, ``static_compiled`` or ``dynamic_compiled``.

Inference runs on worker threads for the async methods and for streams, so the event loop never
waits on the model; a per-model lock runs one ``generate`` at a time (transformers models are not
safe for concurrent generation, and it keeps each call's metered energy its own). Causal models
generate; encoder models (BERT, DistilBERT, RoBERTa, MobileBERT, MiniLM) embed; a folder whose
architecture is a ``*ForSequenceClassification`` head classifies (its only task), with labels from
its config's ``id2label`` (see :mod:`fmgate._local.classification`). A vision-language model
(LLaVA, Idefics3, Qwen2-VL...) reads image parts in chat through its processor (see
:mod:`fmgate._local.vlm`). A ``.gguf`` file, or a folder
holding one, loads too (see :mod:`fmgate._local.gguf`).

Tools and structured output: ``tools=`` are shown through the model's chat template and its calls
read from its output (Hermes/Qwen ``<tool_call>`` blocks, Llama 3 JSON; a ChatML template without
tools, as SmolLM2's, gets fmgate's Hermes template: :mod:`fmgate._local.tools`). ``output=`` and
``tool_choice="required"`` or a tool's name are enforced by constrained decoding with llguidance,
so the JSON is valid by construction (:mod:`fmgate._local.grammar`); ``record.output.mode`` is
``grammar``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from .._errors import ConfigurationError, ContextLengthError, FmgateError, InvalidRequestError
from .._local import fast_decode
from .._local.continuous import Engine, EngineUnsupported, run_rows
from .._local.energy import SETTINGS as COST_SETTINGS
from .._local.energy import CostSettings, make_meter
from .._local.fast_decode import SETTING as COMPILE_SETTING
from .._local.fast_decode import DecodePlan, plan_for, read_setting, warm_at_load
from .._local.generation import DEFAULT_MAX_TOKENS, Ran, run
from .._local.loading import (
    LoadedModel,
    dtype_name,
    hardware_name,
    hub_offline,
    load_model,
    peak_memory_bytes,
)
from .._record import Access, Task, Usage
from .._types import (
    ChatRequest,
    ClassifyResult,
    Completion,
    Delta,
    DetectResult,
    GenerationParams,
    OnText,
)
from ._base import Backend, BackendConfig, EmbeddingResult, Meter

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from .._local.embedding import SentenceTransformersConfig

_END = object()
_Push = Callable[[object], None]
_CLASSIFY: frozenset[Task] = frozenset({"classify"})
_DETECT: frozenset[Task] = frozenset({"detect"})
# tools through the chat template, calls read from the model's format; structured output
# and forced calls by constrained decoding (see _local/tools.py and _local/grammar.py)
_CHAT_FEATURES = frozenset({"tools", "output"})
# the load setting: false runs every call in static batches (see _local/continuous.py)
CONTINUOUS_SETTING = "continuous_batching"
_VISION_CHAT_FEATURES = frozenset({"tools", "output", "images"})


class TransformersBackend(Backend):
    """A Hugging Face transformers model in this process: chat generation or embeddings."""

    wire = "transformers"
    library = "transformers"
    supports_embeddings = True
    default_batch_size = 8
    streams_batches = True
    # vLLM's request extensions honoured as transformers_<name> (fmgate serve passes them on)
    vllm_extensions: ClassVar[frozenset[str]] = frozenset({"ignore_eos"})
    settings: ClassVar[dict[str, tuple[type, ...]]] = {
        "device": (str,),
        "dtype": (str,),
        "revision": (str,),
        "trust_remote_code": (bool,),
        COMPILE_SETTING: (bool,),
        CONTINUOUS_SETTING: (bool,),
        **COST_SETTINGS,
    }

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._cost = CostSettings.from_options(config.options)
        compile_setting = read_setting(config.options)
        loaded = load_model(config.model, config.options)
        plan = plan_for(loaded, compile_setting)
        with loaded.lock:  # compiled and warmed here, so its time is the load's
            self._decode: DecodePlan = warm_at_load(plan, loaded, asked=compile_setting is True)
        self._loaded: LoadedModel | None = loaded
        self._profile = loaded.profile
        self._source = loaded.source
        self._device = loaded.device
        self._dtype = dtype_name(loaded.dtype)
        self._license: str | None = None
        self._license_read = False
        self._continuous_on = config.options.get(CONTINUOUS_SETTING, True) is not False
        # compile = true off CUDA: plain calls run in the continuous batch with its step compiled,
        # compiled here (CUDA's fast path takes them instead: static cache, CUDA graphs)
        self._engine_compiled = (
            compile_setting is True
            and self._continuous_on
            and not loaded.device.startswith("cuda")
            and self._joins(loaded)
        )
        if self._engine_compiled:
            self._engine_compiled = self._warm_engine(loaded)

    def __repr__(self) -> str:
        return f"<TransformersBackend {self.config.name}:{self.model} on {self._device}>"

    # -- facts ----------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return "in-process"

    @property
    def revision(self) -> str | None:
        """The Hub commit the weights came from; None for a local folder."""
        return self._source.revision

    @property
    def loaded(self) -> LoadedModel:
        """The model and tokenizer in memory (shared with other loads of the same model)."""
        if self._loaded is None:
            raise InvalidRequestError(f"{self.config.name}:{self.model} was closed.")
        return self._loaded

    @property
    def tasks(self) -> frozenset[Task]:
        """``classify`` for a sequence- or image-classification head, ``detect`` for an object
        detector; else chat and embed (the model's kind decides which of the two runs)."""
        if self._profile.vision == "detector":
            return _DETECT
        if self._profile.is_classifier or self._profile.vision == "image-classifier":
            return _CLASSIFY
        return super().tasks

    @property
    def features(self) -> frozenset[str]:  # type: ignore[override]
        """Tools and structured output; images too for a vision-language model."""
        if self._profile.vision == "chat":
            return _VISION_CHAT_FEATURES
        return _CHAT_FEATURES

    @property
    def classifies(self) -> Literal["text", "image"]:
        return "image" if self._profile.vision == "image-classifier" else "text"

    @property
    def output_mode(self) -> str:
        """Structured output by constrained decoding: a grammar masks each token."""
        return "grammar"

    def default_params(self) -> GenerationParams:
        return GenerationParams(max_tokens=DEFAULT_MAX_TOKENS)

    def access(self) -> Access:
        profile = self._profile
        return Access(
            open_weights=True,
            license=self._read_license(),
            parameters=profile.parameters,
            dtype=self._dtype,
            quantization=profile.quantization,
            weights_bytes=profile.weights_bytes,
            peak_memory_bytes=self.peak_memory_bytes(),
            context_window=profile.context_window,
            data_leaves_machine=False,
            requires_network=False,
            requires_api_key=False,
            offline_capable=True,
            hardware=hardware_name(self._device),
        )

    def peak_memory_bytes(self) -> int | None:
        """The process's peak memory so far: CUDA peak allocation on GPU, else peak RSS."""
        return peak_memory_bytes(self._device)

    def _read_license(self) -> str | None:
        if not self._license_read:
            self._license = self._profile.license
            if self._license is None and self._source.repo_id is not None and not hub_offline():
                from .._local.profile import hub_license

                self._license = hub_license(self._source.repo_id, self._source.revision)
            self._license_read = True
        return self._license

    def start_meter(self) -> Meter:
        return make_meter(self._device, self._cost)

    # -- chat -----------------------------------------------------------------------------------

    def complete(self, request: ChatRequest) -> Completion:
        return self._generate([request])[0]

    async def acomplete(self, request: ChatRequest) -> Completion:
        return (await self._agenerate([request]))[0]

    def complete_batch(
        self,
        requests: Sequence[ChatRequest],
        on_text: Sequence[OnText | None] | None = None,
        window: int | None = None,
    ) -> list[Completion | FmgateError]:
        """The requests in one left-padded ``generate`` (one per distinct parameter set).

        ``on_text``, one entry per request, is called on the generating thread with each piece
        of that request's text as it is decoded (``fmgate serve`` streams a batch this way);
        the pieces add up to the start of the row's final text, its stop string cut. With
        ``window``, at most that many rows run at once: in the continuous batch, the next joins
        as one ends (``generate_many`` passes its ``batch_size`` so).
        """
        return self._generate_rows(requests, on_text=on_text, window=window)

    async def acomplete_batch(
        self,
        requests: Sequence[ChatRequest],
        on_text: Sequence[OnText | None] | None = None,
        window: int | None = None,
    ) -> list[Completion | FmgateError]:
        cancel = threading.Event()
        try:
            rows = functools.partial(self._generate_rows, on_text=on_text, window=window)
            return await asyncio.to_thread(rows, requests, cancel)
        finally:  # a cancelled caller stops the generation at its next token
            cancel.set()

    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        items: queue.SimpleQueue[object] = queue.SimpleQueue()
        cancel = threading.Event()
        worker = threading.Thread(
            target=self._produce,
            args=(request, cancel, items.put),
            name="fmgate-generate",
            daemon=True,
        )
        worker.start()
        try:
            while (item := items.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, Delta)
                yield item
        finally:  # closed early: stop generating at the next token, then let the thread end
            cancel.set()
            worker.join()

    async def astream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def push(item: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed under an abandoned stream
                loop.call_soon_threadsafe(items.put_nowait, item)

        done = loop.run_in_executor(None, self._produce, request, cancel, push)
        try:
            while (item := await items.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, Delta)
                yield item
        finally:
            cancel.set()
            await done

    def _produce(self, request: ChatRequest, cancel: threading.Event, push: _Push) -> None:
        """On the generating thread: text pieces as decoded, then the closing delta or an error."""
        try:
            engine = self.continuous_engine([request])
            if engine is not None:
                emit = [lambda text: push(Delta(text))]
                (done,), sent_texts = run_rows(
                    self._causal(), engine, [request], cancel=cancel, on_text=emit
                )
                if isinstance(done, BaseException):
                    raise done
                rest = done.text[len(sent_texts.sent(0)) :]
                end = Delta(
                    rest,
                    done.finish_reason,
                    done.usage,
                    machine_s=done.machine_s,
                    params=done.params,
                )
                push(_noted(end, self._engine_params))
                push(_END)
                return
            ran = self._run([request], cancel, [lambda text: push(Delta(text))])
            (completion,), pieces = ran.completions, ran.pieces
            sent = pieces.sent(0) if pieces is not None else ""
            rest = completion.text[len(sent) :] if completion.text.startswith(sent) else ""
            reason, usage, calls = completion.finish_reason, completion.usage, completion.tool_calls
            push(_noted(Delta(rest, reason, usage, tool_calls=calls), ran.params))
            push(_END)
        except BaseException as exc:  # raised again on the consumer's side
            push(exc)

    def _generate(
        self,
        requests: Sequence[ChatRequest],
        cancel: threading.Event | None = None,
        on_text: Sequence[OnText | None] | None = None,
    ) -> list[Completion]:
        engine = self.continuous_engine(requests)
        if engine is not None:
            done = self._continuously(engine, requests, cancel, on_text)
            for item in done:
                if isinstance(item, FmgateError):
                    raise item
            return [item for item in done if isinstance(item, Completion)]
        results: dict[int, Completion] = {}
        for indices in _same_params(requests):
            rows = [on_text[i] for i in indices] if on_text is not None else None
            ran = self._run([requests[i] for i in indices], cancel, rows)
            noted = [_noted(c, ran.params) for c in ran.completions]
            results.update(zip(indices, noted, strict=True))
        return [results[i] for i in range(len(requests))]

    def _run(
        self,
        requests: Sequence[ChatRequest],
        cancel: threading.Event | None,
        on_text: Sequence[OnText | None] | None,
    ) -> Ran:
        """One ``generate`` on the model's decode path; a warm-up of a new shape is cold start."""
        loaded = self._causal()
        return run(
            loaded,
            requests,
            cancel=cancel,
            on_text=on_text,
            decode=self._decode,
            on_warm=self.add_setup_s,
        )

    @property
    def decode_plan(self) -> DecodePlan:
        """The model's decode path: the fast path (static cache, compiled step) or eager."""
        return self._decode

    def _generate_rows(
        self,
        requests: Sequence[ChatRequest],
        cancel: threading.Event | None = None,
        on_text: Sequence[OnText | None] | None = None,
        window: int | None = None,
    ) -> list[Completion | FmgateError]:
        """Like _generate, but a prompt too long for the window fails alone, not its batch.

        Each parameter set is tried whole, then (if a prompt does not fit) row by row: the window
        is checked before anything is generated, so no row's text is produced twice.
        """
        engine = self.continuous_engine(requests)
        if engine is not None:
            return self._continuously(engine, requests, cancel, on_text, window)
        if window is not None and len(requests) > window:  # static batches of ``window`` rows
            done: list[Completion | FmgateError] = []
            for start in range(0, len(requests), window):
                part = on_text[start : start + window] if on_text is not None else None
                done += self._generate_rows(requests[start : start + window], cancel, part)
            return done
        if len(requests) == 1:
            return list(self._generate(requests, cancel, on_text))
        rows: dict[int, Completion | FmgateError] = {}
        for indices in _same_params(requests):
            group = [requests[i] for i in indices]
            listeners = [on_text[i] for i in indices] if on_text is not None else None
            try:
                rows.update(zip(indices, self._generate(group, cancel, listeners), strict=True))
                continue
            except ContextLengthError:
                pass
            for n, i in enumerate(indices):
                try:
                    one = [listeners[n]] if listeners is not None else None
                    rows[i] = self._generate([requests[i]], cancel, one)[0]
                except ContextLengthError as exc:
                    rows[i] = exc
        return [rows[i] for i in range(len(requests))]

    async def _agenerate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._generate, requests, cancel)
        finally:  # a cancelled caller stops the generation at its next token
            cancel.set()

    def continuous_engine(self, requests: Sequence[ChatRequest] = ()) -> Engine | None:
        """The model's continuous-batching engine, when ``requests`` can all join it: plain text
        chat on a causal model's eager path (:func:`_plain`); ``None`` sends them to static
        batches. One engine per loaded model, shared by its
        loads, started at its first call."""
        if not self._continuous_on or self._loaded is None:
            return None
        if self._decode.static and not self._engine_compiled:  # CUDA's fast path
            return None
        loaded = self._loaded
        if not self._joins(loaded):
            return None
        if not all(_plain(request) for request in requests):
            return None
        engine = loaded.memo.get(self._engine_key)  # no lock once made: a static generate holds it
        if engine is None:
            engine = self._new_engine(loaded)
        assert isinstance(engine, Engine)
        return None if engine.unsupported is not None else engine

    @staticmethod
    def _joins(loaded: LoadedModel) -> bool:
        """Whether the model can have a continuous batch: a causal text model."""
        profile = loaded.profile
        return not (loaded.is_encoder or profile.is_classifier or profile.vision)

    def _new_engine(self, loaded: LoadedModel) -> Engine:
        with _ENGINES_MADE:  # not the model's lock: a static generate holds it for its whole run
            engine = loaded.memo.get(self._engine_key)
            if engine is None:
                tokenizer = loaded.tokenizer
                pad = tokenizer.pad_token_id
                if pad is None:
                    pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
                compiled = self._engine_compiled and fast_decode.COMPILE_STEP
                engine = Engine(
                    loaded.model, pad_id=int(pad), device=loaded.device, compiled=compiled
                )
                loaded.memo[self._engine_key] = engine
        assert isinstance(engine, Engine)
        return engine

    def _warm_engine(self, loaded: LoadedModel) -> bool:
        """At load (its time is the load's): compile the continuous batch's step and warm it.
        False when the model's cache cannot be batched continuously (its calls run static
        batches); a failed compile is a ConfigurationError (``compile = true`` asked for it)."""
        engine = self._new_engine(loaded)
        with loaded.tokenizer_lock:
            prompt = loaded.tokenizer("Hello, world.", add_special_tokens=False)["input_ids"]
        try:
            engine.warm(list(prompt) or [0, 0])
        except EngineUnsupported:
            return False
        except Exception as exc:  # torch.compile fails in many types (no C++ compiler, ...)
            raise ConfigurationError(
                f"compile = true, but compiling the continuous batch's decoding step of "
                f"{loaded.name} failed ({type(exc).__name__}: {str(exc)[:300]}): set compile = "
                "false, or give torch.compile what it needs (a C++ compiler on CPU)."
            ) from exc
        return True

    @property
    def _engine_key(self) -> str:
        """The engine's key in the loaded model's memo: loads of one model share it, a compiled
        one apart (loads with and without ``compile`` share the weights, not the step)."""
        return "continuous_compiled" if self._engine_compiled else "continuous"

    @property
    def _engine_params(self) -> dict[str, str]:
        """The decode path of a continuous batch's rows, for their records."""
        return {"decode_path": "dynamic_compiled" if self._engine_compiled else "eager"}

    def _continuously(
        self,
        engine: Engine,
        requests: Sequence[ChatRequest],
        cancel: threading.Event | None,
        on_text: Sequence[OnText | None] | None,
        window: int | None = None,
    ) -> list[Completion | FmgateError]:
        done, _ = run_rows(
            self._causal(), engine, requests, cancel=cancel, on_text=on_text, window=window
        )
        if engine.unsupported is not None:  # found at its first prefill: static from now on
            return self._generate_rows(requests, cancel, on_text, window)
        return [
            _noted(item, self._engine_params)
            if isinstance(item, Completion)
            else item
            if isinstance(item, FmgateError)
            else _engine_error(item)
            for item in done
        ]

    def _causal(self) -> LoadedModel:
        loaded = self.loaded
        if loaded.profile.is_classifier:
            raise self.unsupported("chat")
        if loaded.is_encoder:
            raise InvalidRequestError(
                f"{self.model} is an encoder ({self._profile.model_type}): it computes embeddings "
                "and cannot generate text. Call embed(), or load a causal language model."
            )
        return loaded

    # -- embeddings -----------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        loaded = self.loaded
        if loaded.profile.is_classifier:
            raise self.unsupported("embed")
        if not loaded.is_encoder:
            raise InvalidRequestError(
                f"{self.model} is a causal language model ({self._profile.model_type}): embed() "
                "needs an encoder model such as BERT or all-MiniLM-L6-v2."
            )
        from .._local.embedding import embed_texts

        how = _embedding_settings(loaded)
        with loaded.lock:
            vectors, tokens = embed_texts(
                loaded.model,
                loaded.tokenizer,
                list(texts),
                device=loaded.device,
                normalize=how.normalize,
                max_length=how.max_length,
                pooling=how.pooling,
            )
        return EmbeddingResult(vectors, Usage(tokens, 0, source="tokenizer"))

    async def aembed(self, texts: Sequence[str]) -> EmbeddingResult:
        return await asyncio.to_thread(self.embed, texts)

    # -- classification -------------------------------------------------------------------------

    def classify(self, texts: Sequence[str], *, top_k: int) -> ClassifyResult:
        """Per text, the head's ``top_k`` labels with their softmax scores, best first."""
        loaded = self.loaded
        if not loaded.profile.is_classifier:
            raise self.unsupported("classify")
        from .._local.classification import classify_texts

        with loaded.lock:
            ranked, tokens = classify_texts(
                loaded.model, loaded.tokenizer, texts, device=loaded.device, top_k=top_k
            )
        return ClassifyResult(ranked, Usage(tokens, 0, source="tokenizer"))

    async def aclassify(self, texts: Sequence[str], *, top_k: int) -> ClassifyResult:
        return await asyncio.to_thread(self.classify, texts, top_k=top_k)

    # -- vision ---------------------------------------------------------------------------------

    def classify_images(self, images: Sequence[PILImage], *, top_k: int) -> ClassifyResult:
        """Per image, the head's ``top_k`` labels with their softmax scores, best first,
        preprocessed by the model's own image processor."""
        loaded = self.loaded
        if loaded.profile.vision != "image-classifier":
            raise self.unsupported("classify")
        from .._local.vision import classify_images

        with loaded.lock:
            ranked = classify_images(loaded, images, top_k=top_k)
        return ClassifyResult(ranked, Usage())

    def detect(self, images: Sequence[PILImage], *, threshold: float) -> DetectResult:
        """Per image, the detector's objects scoring at least ``threshold``, best first, boxes
        in the image's pixels (the image processor's own post-processing)."""
        loaded = self.loaded
        if loaded.profile.vision != "detector":
            raise self.unsupported("detect")
        from .._local.vision import detect_images

        with loaded.lock:
            found = detect_images(loaded, images, threshold=threshold)
        return DetectResult(found, Usage())

    def close(self) -> None:
        """Let go of the weights: they are freed once no other loaded Model shares them."""
        self._loaded = None


_Noted = TypeVar("_Noted", Completion, Delta)
# held while a continuous-batching engine is looked up and made, so a model gets one
_ENGINES_MADE = threading.Lock()


def _noted(item: _Noted, params: dict[str, str]) -> _Noted:
    """``item`` with the decode path's params for the record (``params["decode_path"]``)."""
    return dataclasses.replace(item, params={**(item.params or {}), **params})


def _plain(request: ChatRequest) -> bool:
    """A call the continuous batch can run: text chat, no tools, output schema or
    ``transformers_`` settings (those need generate's processors: static batches)."""
    if request.tools or request.tool_choice is not None or request.output is not None:
        return False
    if any(m.tool_calls or m.role == "tool" or m.parts for m in request.messages):
        return False
    return not request.params.extra


def _engine_error(exc: BaseException) -> FmgateError:
    from .._errors import BackendError

    error = BackendError(f"continuous batch failed: {exc}", provider="transformers")
    error.__cause__ = exc
    return error


def _same_params(requests: Sequence[ChatRequest]) -> list[list[int]]:
    """Indices of the requests grouped by parameters: each group is one ``generate``."""
    groups: list[tuple[GenerationParams, list[int]]] = []
    for i, request in enumerate(requests):
        for params, members in groups:
            if params == request.params:
                members.append(i)
                break
        else:
            groups.append((request.params, [i]))
    return [members for _, members in groups]


def _embedding_settings(loaded: LoadedModel) -> SentenceTransformersConfig:
    """A sentence-transformers folder says how to pool, normalise and truncate; other encoders get
    mean pooling and L2 normalisation, as all-MiniLM-L6-v2. Read once per model."""
    from .._local.embedding import SentenceTransformersConfig, read_sentence_transformers_config

    how = loaded.memo.get("sentence-transformers")
    if how is None:
        found = read_sentence_transformers_config(loaded.source.path)
        how = found or SentenceTransformersConfig(pooling="mean", normalize=True)
        loaded.memo["sentence-transformers"] = how
    assert isinstance(how, SentenceTransformersConfig)
    return how
