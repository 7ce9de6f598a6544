"""The seam between :class:`fmgate.Model` and what varies: one small abstract class.

A backend translates a :class:`ChatRequest` to its wire or runtime and back. It does not time,
price or record anything: the recording wrapper in ``Model`` does that for every backend alike.
It maps its library's exceptions onto :mod:`fmgate._errors` (``raise ... from``).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from .._errors import FmgateError, UnsupportedTaskError
from .._providers import ProviderInfo
from .._record import Access, Cost, Distribution, Task, Usage
from .._secrets import Secret
from .._types import (
    ChatRequest,
    ClassifyResult,
    Completion,
    Delta,
    DetectResult,
    GenerationParams,
    OnText,
)

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from .._image_gen import ImageRequest, ImageResult


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """Everything a backend is built from: the provider row plus the user's settings."""

    name: str
    model: str
    provider: ProviderInfo
    base_url: str | None = None
    api_key_env: str | None = None
    # A key given in the config file itself; backends prefer it to the env var.
    api_key: Secret | None = None
    timeout: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: list[list[float]]
    usage: Usage
    model_id: str | None = None


class Meter(Protocol):
    """Measures what one call consumed, for local cost: started when the call starts."""

    def stop(self, busy_s: float, share: float = 1.0) -> Cost:
        """The call's cost; ``share`` is its part of a batch that ran as one."""
        ...


class Backend(ABC):
    """Base class of every backend.

    ``wire`` names the request format and is the prefix of backend-specific parameters
    (``openai_logprobs=True``); ``library`` is the distribution whose version is recorded.
    """

    wire: ClassVar[str]
    library: ClassVar[str | None] = None
    supports_embeddings: ClassVar[bool] = False
    # What a backend honours beyond plain chat: "images" (image parts in user messages), "tools"
    # (tools, tool_choice, tool calls and tool results in messages) and "output" (structured
    # output). Model refuses a request that needs one the backend lacks, with an
    # UnsupportedFeatureError: never dropped silently. A backend whose features depend on the
    # model loaded (a vision-language model) overrides it with a property.
    features: ClassVar[frozenset[str]] = frozenset()
    # Backends that run several prompts in one forward pass (local models) set this above 1 and
    # implement complete_batch; Model.generate_many then batches instead of using threads.
    default_batch_size: ClassVar[int] = 1
    # complete_batch hands each row's text to on_text as it is decoded (fmgate serve streams so)
    streams_batches: ClassVar[bool] = False
    # Load-time settings this backend accepts besides the common ones (in fmgate.toml or
    # load(...)), with their types; they reach the backend in ``config.options``.
    settings: ClassVar[Mapping[str, tuple[type, ...]]] = {}

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self._setup_s = 0.0

    def add_setup_s(self, seconds: float) -> None:
        """Time spent building clients inside a call (an async client for a new event loop):
        the recording wrapper reports it as that call's ``load_s``, not as its latency."""
        self._setup_s += seconds

    def take_setup_s(self) -> float:
        setup, self._setup_s = self._setup_s, 0.0
        return setup

    def default_params(self) -> GenerationParams:
        """Settings the backend sends when the user gives none (e.g. a required ``max_tokens``).

        ``Model`` merges them under the user's, so the record shows what was really sent.
        """
        return GenerationParams()

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def provider(self) -> str:
        return self.config.provider.name

    @property
    def distribution(self) -> Distribution:
        return self.config.provider.distribution

    @property
    def revision(self) -> str | None:
        """The exact weights served: a Hugging Face commit, or an API snapshot, where known."""
        return None

    def peak_memory_bytes(self) -> int | None:
        """Peak memory the model has used so far (local models: CUDA peak or process RSS)."""
        return None

    @property
    def price_provider(self) -> str | None:
        """The genai-prices provider id for list prices, or None when not priced that way."""
        return self.config.provider.prices_provider

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """``in-process`` or the ``host:port`` the calls go to."""

    @abstractmethod
    def access(self) -> Access:
        """The model's accessibility profile, without making a call."""

    @abstractmethod
    def complete(self, request: ChatRequest) -> Completion: ...

    @abstractmethod
    async def acomplete(self, request: ChatRequest) -> Completion: ...

    @abstractmethod
    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        """Yield deltas; the last ones carry finish reason, usage and model id when known.

        Closing the generator early must release the connection.
        """

    @abstractmethod
    def astream(self, request: ChatRequest) -> AsyncIterator[Delta]: ...

    def complete_batch(
        self, requests: Sequence[ChatRequest], on_text: Sequence[OnText | None] | None = None
    ) -> list[Completion | FmgateError]:
        """Several requests in one pass (used where ``default_batch_size > 1``).

        A row that fails on its own (a prompt too long for the window) is returned as its
        error, so that the other rows still succeed; raising fails the whole batch. A backend
        with ``streams_batches = True`` calls ``on_text[i]`` (where not None) with each piece
        of row i's text as it is decoded; the others may ignore it.
        """
        return [self.complete(r) for r in requests]

    async def acomplete_batch(
        self, requests: Sequence[ChatRequest], on_text: Sequence[OnText | None] | None = None
    ) -> list[Completion | FmgateError]:
        return [await self.acomplete(r) for r in requests]

    def start_meter(self) -> Meter | None:
        """A meter for local cost, started now; API backends are priced from usage instead."""
        return None

    @property
    def tasks(self) -> frozenset[Task]:
        """The tasks this backend serves; ``Model`` refuses the others before calling it.

        By default chat, and embed where ``supports_embeddings``; a backend whose tasks depend
        on the model loaded (a classifier head) overrides it.
        """
        return _EMBED_TASKS if self.supports_embeddings else _CHAT_TASKS

    @property
    def output_mode(self) -> str | None:
        """How this backend asks for structured output, as ``record.output.mode`` says it:
        ``native`` (the provider's own structured output) by default where ``output`` is in
        :attr:`features`; a backend that uses a forced tool or a grammar says so."""
        return "native" if "output" in self.features else None

    def unsupported(self, task: Task) -> UnsupportedTaskError:
        """The error for a task this backend does not serve, naming those it does."""
        return unsupported_task(self.config.name, self.model, task, self.tasks)

    def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        raise self.unsupported("embed")

    async def aembed(self, texts: Sequence[str]) -> EmbeddingResult:
        raise self.unsupported("embed")

    @property
    def classifies(self) -> Literal["text", "image"]:
        """What the model's own classifier reads (where ``classify`` is among its tasks)."""
        return "text"

    def classify(self, texts: Sequence[str], *, top_k: int) -> ClassifyResult:
        """Per text, the ``top_k`` best ``(label, score)`` pairs of the model's own classifier."""
        raise self.unsupported("classify")

    async def aclassify(self, texts: Sequence[str], *, top_k: int) -> ClassifyResult:
        raise self.unsupported("classify")

    def classify_images(self, images: Sequence[PILImage], *, top_k: int) -> ClassifyResult:
        """Per image (PIL, RGB), the ``top_k`` best ``(label, score)`` pairs of the model's own
        image classifier (where :attr:`classifies` is ``image``)."""
        raise self.unsupported("classify")

    async def aclassify_images(self, images: Sequence[PILImage], *, top_k: int) -> ClassifyResult:
        return await asyncio.to_thread(self.classify_images, images, top_k=top_k)

    def detect(self, images: Sequence[PILImage], *, threshold: float) -> DetectResult:
        """Per image (PIL, RGB), the objects the model's own detector finds scoring at least
        ``threshold``, best first, boxes in the image's pixels."""
        raise self.unsupported("detect")

    async def adetect(self, images: Sequence[PILImage], *, threshold: float) -> DetectResult:
        return await asyncio.to_thread(self.detect, images, threshold=threshold)

    def generate_image(self, request: ImageRequest) -> ImageResult:
        """``request.n`` images for the prompt, at the size asked (where ``image`` is a task)."""
        raise self.unsupported("image")

    async def agenerate_image(self, request: ImageRequest) -> ImageResult:
        return await asyncio.to_thread(self.generate_image, request)

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op for backends holding nothing
        """Release clients and connections."""

    async def aclose(self) -> None:
        self.close()


_CHAT_TASKS: frozenset[Task] = frozenset({"chat"})
_EMBED_TASKS: frozenset[Task] = frozenset({"chat", "embed"})
_VERBS: dict[str, str] = {
    "chat": "chat (generate, stream)",
    "embed": "compute embeddings (embed)",
    "classify": "classify (classify)",
    "detect": "detect objects (detect)",
    "image": "generate images (generate_image)",
}


def unsupported_task(
    backend: str, model: str, task: Task, tasks: frozenset[Task]
) -> UnsupportedTaskError:
    """``backend:model`` cannot do ``task``: the error names what it can do."""
    can = ", ".join(sorted(tasks)) or "nothing fmgate knows"
    hint = " (a chat model classifies with labels=[...])" if task == "classify" else ""
    return UnsupportedTaskError(
        f"{backend}:{model} cannot {_VERBS.get(task, task)}: its tasks are {can}{hint}.",
        tasks=frozenset(tasks),
    )
