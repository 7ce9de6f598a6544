"""``Model``: the one interface over every backend, and the recording wrapper around each call."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from . import _classify, _detect, _embed, _image_gen, _tool_loop
from . import _retry as retry
from ._batching import TextListener, arun_many, many_rows, run_many
from ._errors import (
    FmgateError,
    InvalidRequestError,
    OfflineError,
    UnsupportedFeatureError,
    UnsupportedTaskError,
)
from ._image_gen import Images
from ._offline import offline
from ._record import Access, Task
from ._recording import CallTimer, Recorded, Sink
from ._retry import NO_RETRIES, RetryPolicy
from ._stream import AsyncStream, Stream
from ._tools import check_tool_choice, to_output, to_tools
from ._types import (
    ChatRequest,
    Classifications,
    Detections,
    Embeddings,
    GenerationParams,
    Prompt,
    Response,
    make_params,
    normalize_messages,
)
from .backends._base import Backend


class Model:
    """A model behind one interface, whatever runs it. Build it with :func:`fmgate.load`.

    Every call returns (or, for streams, ends with) a :class:`CallRecord`; failed calls are
    recorded too, then raised as an :class:`fmgate.FmgateError`.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        alias: str | None = None,
        defaults: GenerationParams | None = None,
        system: str | None = None,
        sinks: Sequence[Sink] = (),
        load_s: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._backend = backend
        remote = backend.distribution != "local"
        # Local failures (out of memory, a bad input) do not heal with time: no retries there.
        self._retry = retry or (RetryPolicy() if remote else NO_RETRIES)
        self._alias = alias
        self._defaults = backend.default_params().merged(defaults or GenerationParams())
        self._system = system
        self._sinks = tuple(sinks)
        self._load_s = load_s
        self._load_lock = threading.Lock()
        self._access: Access | None = None
        self._prefixes = tuple(dict.fromkeys((backend.wire, backend.config.name)))
        self._tasks = backend.tasks  # read once: generate's check is then a set lookup

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def retry(self) -> RetryPolicy:
        return self._retry

    @property
    def alias(self) -> str | None:
        return self._alias

    @property
    def spec(self) -> str:
        return f"{self._backend.config.name}:{self._backend.model}"

    @property
    def sinks(self) -> tuple[Sink, ...]:
        return self._sinks

    @property
    def tasks(self) -> frozenset[Task]:
        """The tasks the model serves (``chat``, ``embed``, ``classify``); any other task is
        refused with an :class:`UnsupportedTaskError` that names these."""
        return self._tasks

    @property
    def access(self) -> Access:
        """The accessibility profile (open weights, licence, network, key, ...), without a call."""
        if self._access is None:
            self._access = self._backend.access()
        return self._access

    def take_load_s(self) -> float | None:
        """The cold-start time, reported once: on the first call after the model was built."""
        with self._load_lock:
            load_s, self._load_s = self._load_s, None
        return load_s

    def __repr__(self) -> str:
        name = f"{self._alias!r} -> " if self._alias else ""
        return f"<Model {name}{self.spec}>"

    # -- calls ----------------------------------------------------------------------------------

    def generate(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        output: Any = None,
        run_tools: bool = False,
        max_tool_rounds: int = 10,
        **backend_params: Any,
    ) -> Response:
        """Generate a reply to ``prompt`` (text or ``{"role", "content"}`` messages).

        ``tools``: functions (or OpenAI function schemas) the model may call; its calls come
        back in ``Response.tool_calls``, and ``tool_choice`` says whether it may (``auto``),
        must (``required``, or a tool's name) or must not (``none``). With ``run_tools=True``
        fmgate runs them and sends the results back until the model answers in text (one
        record per model call; docs/tools.md; ``agenerate`` awaits async tools). ``output``: a
        Pydantic model class or a JSON schema the reply must satisfy; ``Response.parsed`` holds
        the validated value. Backend-specific parameters pass through with their prefix
        (``openai_logprobs=True``).
        """
        params = _params(max_tokens, temperature, top_p, stop, seed, backend_params)
        params.update(tools=tools, tool_choice=tool_choice, output=output)
        if run_tools:
            return _tool_loop.run_tools(self, prompt, system, params, max_tool_rounds)
        timer, request = self.prepare(prompt, system, stream=False, params=params)
        with Recorded(timer, self._backend.provider):
            completion = retry.call(
                self._retry, timer, lambda: self._backend.complete(request), self._backend.provider
            )
        return timer.respond(completion)

    async def agenerate(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        output: Any = None,
        run_tools: bool = False,
        max_tool_rounds: int = 10,
        **backend_params: Any,
    ) -> Response:
        """Generate a reply to ``prompt`` (text or ``{"role", "content"}`` messages).

        ``tools``: functions (or OpenAI function schemas) the model may call; its calls come
        back in ``Response.tool_calls``, and ``tool_choice`` says whether it may (``auto``),
        must (``required``, or a tool's name) or must not (``none``). With ``run_tools=True``
        fmgate runs them and sends the results back until the model answers in text (one
        record per model call; docs/tools.md; ``agenerate`` awaits async tools). ``output``: a
        Pydantic model class or a JSON schema the reply must satisfy; ``Response.parsed`` holds
        the validated value. Backend-specific parameters pass through with their prefix
        (``openai_logprobs=True``).
        """
        params = _params(max_tokens, temperature, top_p, stop, seed, backend_params)
        params.update(tools=tools, tool_choice=tool_choice, output=output)
        if run_tools:
            return await _tool_loop.arun_tools(self, prompt, system, params, max_tool_rounds)
        timer, request = self.prepare(prompt, system, stream=False, params=params)
        with Recorded(timer, self._backend.provider):
            completion = await retry.acall(
                self._retry, timer, lambda: self._backend.acomplete(request), self._backend.provider
            )
        return timer.respond(completion)

    def stream(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        output: Any = None,
        **backend_params: Any,
    ) -> Stream:
        """Stream a reply as :class:`Chunk` objects; afterwards ``.response`` and ``.record``.

        The request is sent when iteration starts; TTFT runs from then to the first text.
        """
        params = _params(max_tokens, temperature, top_p, stop, seed, backend_params)
        params.update(tools=tools, tool_choice=tool_choice, output=output)
        timer, request = self.prepare(prompt, system, stream=True, params=params)
        return Stream(self, timer, request)

    def astream(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        system: str | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        output: Any = None,
        **backend_params: Any,
    ) -> AsyncStream:
        """Stream a reply as :class:`Chunk` objects; afterwards ``.response`` and ``.record``.

        The request is sent when iteration starts; TTFT runs from then to the first text.
        """
        params = _params(max_tokens, temperature, top_p, stop, seed, backend_params)
        params.update(tools=tools, tool_choice=tool_choice, output=output)
        timer, request = self.prepare(prompt, system, stream=True, params=params)
        return AsyncStream(self, timer, request)

    @overload
    def generate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        batch_size: int | None = None,
        return_exceptions: Literal[False] = False,
        tags: Sequence[Mapping[str, str]] | None = None,
        on_text: Sequence[TextListener | None] | None = None,
        **params: Any,
    ) -> list[Response]: ...

    @overload
    def generate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        batch_size: int | None = None,
        return_exceptions: Literal[True],
        tags: Sequence[Mapping[str, str]] | None = None,
        on_text: Sequence[TextListener | None] | None = None,
        **params: Any,
    ) -> list[Response | FmgateError]: ...

    def generate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        batch_size: int | None = None,
        return_exceptions: bool = False,
        tags: Sequence[Mapping[str, str]] | None = None,
        on_text: Sequence[TextListener | None] | None = None,
        **params: Any,
    ) -> list[Response] | list[Response | FmgateError]:
        """Generate for each prompt; results keep the prompts' order, one record per prompt.

        Backends that batch (local models) run ``batch_size`` prompts per forward pass (default:
        the backend's maximum); the others make ``concurrency`` calls at a time. With
        ``return_exceptions=True`` a failed prompt gives its error in place of a Response (every
        call is recorded either way); otherwise the first failure is raised. ``tags``, one
        mapping per prompt, label each prompt's record on top of the tags in force.
        ``on_text``, one callable (or None) per prompt, receives that prompt's text as it is
        generated (its record then says ``stream=True``); a callable that returns ``False`` says
        its reader has gone, and the record ends ``client_closed``. ``fmgate serve`` streams
        its batches this way.
        """
        rows = many_rows(prompts, tags, on_text)
        size = self._batch_size(concurrency, batch_size)
        return run_many(self, rows, params, size, concurrency, return_exceptions)

    @overload
    async def agenerate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        batch_size: int | None = None,
        return_exceptions: Literal[False] = False,
        tags: Sequence[Mapping[str, str]] | None = None,
        on_text: Sequence[TextListener | None] | None = None,
        **params: Any,
    ) -> list[Response]: ...

    @overload
    async def agenerate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        batch_size: int | None = None,
        return_exceptions: Literal[True],
        tags: Sequence[Mapping[str, str]] | None = None,
        on_text: Sequence[TextListener | None] | None = None,
        **params: Any,
    ) -> list[Response | FmgateError]: ...

    async def agenerate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        batch_size: int | None = None,
        return_exceptions: bool = False,
        tags: Sequence[Mapping[str, str]] | None = None,
        on_text: Sequence[TextListener | None] | None = None,
        **params: Any,
    ) -> list[Response] | list[Response | FmgateError]:
        """Generate for each prompt; results keep the prompts' order, one record per prompt.

        Backends that batch (local models) run ``batch_size`` prompts per forward pass (default:
        the backend's maximum); the others make ``concurrency`` calls at a time. With
        ``return_exceptions=True`` a failed prompt gives its error in place of a Response (every
        call is recorded either way); otherwise the first failure is raised. ``tags``, one
        mapping per prompt, label each prompt's record on top of the tags in force.
        ``on_text``, one callable (or None) per prompt, receives that prompt's text as it is
        generated (its record then says ``stream=True``); a callable that returns ``False`` says
        its reader has gone, and the record ends ``client_closed``. ``fmgate serve`` streams
        its batches this way.
        """
        rows = many_rows(prompts, tags, on_text)
        size = self._batch_size(concurrency, batch_size)
        return await arun_many(self, rows, params, size, concurrency, return_exceptions)

    def embed(self, texts: str | Sequence[str]) -> Embeddings:
        """One embedding vector per text (embedding models only)."""
        return _embed.embed(self, texts)

    async def aembed(self, texts: str | Sequence[str]) -> Embeddings:
        """One embedding vector per text (embedding models only)."""
        return await _embed.aembed(self, texts)

    def classify(
        self,
        inputs: Any,
        *,
        labels: Sequence[str] | None = None,
        top_k: int = 1,
        max_tokens: int | None = None,
    ) -> Classifications:
        """Label each text or image: per input, ``top_k`` ``(label, score)`` pairs best first.

        ``inputs`` is a text, an image (a path, bytes, a PIL image, an HxWx3 uint8 array) or a
        list of either kind. Without ``labels``, the model's own classifier (fastText, a
        classification head, an image classifier). With ``labels``, a chat model chooses one of
        them zero-shot (score 1.0, not a probability; ``max_tokens`` bounds its answer, 16 by
        default); for images the chat model must read images. One record per call
        (docs/tasks.md).
        """
        return _classify.classify(self, inputs, labels, top_k, max_tokens)

    async def aclassify(
        self,
        inputs: Any,
        *,
        labels: Sequence[str] | None = None,
        top_k: int = 1,
        max_tokens: int | None = None,
    ) -> Classifications:
        """Label each text or image: per input, ``top_k`` ``(label, score)`` pairs best first.

        ``inputs`` is a text, an image (a path, bytes, a PIL image, an HxWx3 uint8 array) or a
        list of either kind. Without ``labels``, the model's own classifier (fastText, a
        classification head, an image classifier). With ``labels``, a chat model chooses one of
        them zero-shot (score 1.0, not a probability; ``max_tokens`` bounds its answer, 16 by
        default); for images the chat model must read images. One record per call
        (docs/tasks.md).
        """
        return await _classify.aclassify(self, inputs, labels, top_k, max_tokens)

    def detect(
        self,
        images: Any,
        *,
        threshold: float = 0.5,
        labels: Sequence[str] | None = None,
        max_tokens: int | None = None,
    ) -> Detections:
        """Find objects in each image: per image, ``Detection(label, score, box)`` best first,
        ``box = (x0, y0, x1, y1)`` in the image's pixels.

        ``images`` is an image (a path, bytes, a PIL image, an HxWx3 uint8 array) or a list of
        them. An object detector keeps what scores at least ``threshold``. A vision chat model
        with structured output detects zero-shot (boxes score 1.0, not a probability), among
        ``labels`` where given; ``max_tokens`` bounds its answer (512 by default). One record
        per call (docs/tasks.md).
        """
        return _detect.detect(self, images, threshold, labels, max_tokens)

    async def adetect(
        self,
        images: Any,
        *,
        threshold: float = 0.5,
        labels: Sequence[str] | None = None,
        max_tokens: int | None = None,
    ) -> Detections:
        """Find objects in each image: per image, ``Detection(label, score, box)`` best first,
        ``box = (x0, y0, x1, y1)`` in the image's pixels.

        ``images`` is an image (a path, bytes, a PIL image, an HxWx3 uint8 array) or a list of
        them. An object detector keeps what scores at least ``threshold``. A vision chat model
        with structured output detects zero-shot (boxes score 1.0, not a probability), among
        ``labels`` where given; ``max_tokens`` bounds its answer (512 by default). One record
        per call (docs/tasks.md).
        """
        return await _detect.adetect(self, images, threshold, labels, max_tokens)

    def generate_image(
        self,
        prompt: str,
        *,
        size: str = "512x512",
        n: int = 1,
        seed: int | None = None,
        steps: int | None = None,
        negative_prompt: str | None = None,
        **backend_params: Any,
    ) -> Images:
        """Draw ``n`` images for ``prompt``: ``Images`` with ``.images`` (PIL), ``.save(folder)``
        and ``.record``.

        ``size`` is ``"WIDTHxHEIGHT"`` in pixels; ``seed`` makes a local pipeline draw the same
        image again on the same device; ``steps`` sets the denoising steps (the pipeline's
        default otherwise); ``negative_prompt`` says what to avoid, where the model takes it.
        Backend-specific settings go with the backend's prefix (``openai_quality="high"``). One
        record per call, ``task == "image"`` (docs/tasks.md).
        """
        options = dict(
            size=size,
            n=n,
            seed=seed,
            steps=steps,
            negative_prompt=negative_prompt,
            **backend_params,
        )
        return _image_gen.generate_image(self, prompt, options)

    async def agenerate_image(
        self,
        prompt: str,
        *,
        size: str = "512x512",
        n: int = 1,
        seed: int | None = None,
        steps: int | None = None,
        negative_prompt: str | None = None,
        **backend_params: Any,
    ) -> Images:
        """Draw ``n`` images for ``prompt``: ``Images`` with ``.images`` (PIL), ``.save(folder)``
        and ``.record``.

        ``size`` is ``"WIDTHxHEIGHT"`` in pixels; ``seed`` makes a local pipeline draw the same
        image again on the same device; ``steps`` sets the denoising steps (the pipeline's
        default otherwise); ``negative_prompt`` says what to avoid, where the model takes it.
        Backend-specific settings go with the backend's prefix (``openai_quality="high"``). One
        record per call, ``task == "image"`` (docs/tasks.md).
        """
        options = dict(
            size=size,
            n=n,
            seed=seed,
            steps=steps,
            negative_prompt=negative_prompt,
            **backend_params,
        )
        return await _image_gen.agenerate_image(self, prompt, options)

    def recording(self, task: Task, *, params: Mapping[str, Any] | None = None) -> Recorded:
        """The recording path of a task (``embed``, ``classify``, each in its own module):
        ``with model.recording("embed") as timer:`` checks offline mode, times what runs inside
        and records a failure there (a refusal as a call that sent nothing), raised as an fmgate
        error; after it, ``timer.succeed(...)`` records the success."""
        timer = CallTimer(self, task=task, stream=False, params=dict(params or {}))
        with Recorded(timer, self._backend.provider):
            self._check_online()
        return Recorded(timer, self._backend.provider)

    def close(self) -> None:
        self._backend.close()

    async def aclose(self) -> None:
        await self._backend.aclose()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Model:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the recording wrapper ------------------------------------------------------------------

    def prepare(
        self, prompt: Prompt, system: str | None, *, stream: bool, params: dict[str, Any]
    ) -> tuple[CallTimer, ChatRequest]:
        """The first step of a recorded chat call: the checks (offline mode, the prompt, the
        parameters: a refusal is recorded and raised), then the call's timer and request.

        For code that drives the backend itself, as ``generate_many``'s batches do; the timer
        then records the call (``respond`` or ``fail``). Most code calls ``generate``.
        """
        try:
            if "chat" not in self._tasks:
                raise self._backend.unsupported("chat")
            self._check_online()
            params = dict(params)
            tools = to_tools(params.pop("tools", None))
            choice = check_tool_choice(params.pop("tool_choice", None), tools)
            output = to_output(params.pop("output", None))
            merged = self._defaults.merged(make_params(params, self._prefixes))
            messages = normalize_messages(prompt, system if system is not None else self._system)
            request = ChatRequest(messages, merged, tools, choice, output)
            self._check_features(request)
        except (InvalidRequestError, OfflineError, UnsupportedTaskError) as exc:
            CallTimer(self, task="chat", stream=stream, params={}).fail(exc, sent=False)
            raise
        timer = CallTimer(self, task="chat", stream=stream, params=merged.to_record())
        timer.asked(request)
        return timer, request

    def _check_features(self, request: ChatRequest) -> None:
        """Refuse what the backend cannot honour, rather than drop it (Backend.features)."""
        features = self._backend.features
        uses_tools = bool(request.tools) or any(
            m.tool_calls or m.role == "tool" for m in request.messages
        )
        for feature, used, what in (
            ("images", any(m.parts for m in request.messages), "images in messages"),
            ("tools", uses_tools, "tools (and tool calls or results in the messages)"),
            ("output", request.output is not None, "structured output (output=)"),
        ):
            if used and feature not in features:
                raise UnsupportedFeatureError(
                    f"{self.spec} cannot take {what}: fmgate's {self._backend.config.name} "
                    f"backend does not support it for this model, and will not drop it "
                    f"silently. Leave it out, or use a model whose backend does.",
                    feature=feature,
                )

    def _check_online(self) -> None:
        """In offline mode, refuse before sending unless the model is known not to need the
        network (in-process, or a server on loopback)."""
        if offline() and self.access.requires_network is not False:
            where = self._backend.endpoint or "an endpoint fmgate cannot place"
            raise OfflineError(
                f"{self.spec} is reached over the network ({where}) and FMGATE_OFFLINE is set: "
                "nothing was sent. Unset FMGATE_OFFLINE, or use a local model or a server on "
                "loopback (base_url http://127.0.0.1:...)."
            )

    def _batch_size(self, concurrency: int, batch_size: int | None) -> int | None:
        """Rows per pass for a backend that batches (local models), None for one that does not."""
        _check_positive("concurrency", concurrency)
        if batch_size is not None:
            _check_positive("batch_size", batch_size)
        if self._backend.default_batch_size <= 1:
            return None
        return batch_size or self._backend.default_batch_size


def _params(
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: str | Sequence[str] | None,
    seed: int | None,
    backend_params: dict[str, Any],
) -> dict[str, Any]:
    common = dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop)
    return dict(common, seed=seed, **backend_params)


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(f"{name} must be a positive int, not {value!r}.")
