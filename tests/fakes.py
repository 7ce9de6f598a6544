"""A scripted backend for testing the Model wrapper without any wire."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from decimal import Decimal
from typing import ClassVar

from fmgate._errors import ContextLengthError, FmgateError, ServerError
from fmgate._image_gen import ImageRequest, ImageResult
from fmgate._providers import ProviderInfo
from fmgate._record import Access, Cost, Task, Usage
from fmgate._types import ChatRequest, ClassifyResult, Completion, Delta
from fmgate.backends._base import Backend, BackendConfig, EmbeddingResult


class FakeBackend(Backend):
    """Echoes the last user message; ``fail`` makes it raise, ``cut_after`` breaks streams."""

    wire = "fake"
    library = None
    supports_embeddings = True
    provider_info: ClassVar[ProviderInfo] = ProviderInfo(
        name="fake",
        wire="fake",
        base_url=None,
        api_key_env=None,
        distribution="local",
        requires_api_key=False,
    )

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.requests: list[ChatRequest] = []
        self.fail: Exception | None = None
        self.fail_next: list[Exception] = []  # raised one per request, before any success
        self.cut_after: int | None = None
        self.delay_s = 0.0
        self.closed_streams = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    @property
    def endpoint(self) -> str:
        return "in-process"

    def access(self) -> Access:
        return Access(open_weights=True, data_leaves_machine=False, requires_network=False)

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        if self.fail_next:
            raise self.fail_next.pop(0)
        if self.fail is not None:
            raise self.fail
        text = request.messages[-1].content.upper()
        words = text.split()
        return Completion(
            text, "stop", Usage(len(request.messages), len(words), source="estimate"), "fake-1"
        )

    def complete(self, request: ChatRequest) -> Completion:
        self._enter()
        try:
            time.sleep(self.delay_s)
            return self._reply(request)
        finally:
            self._leave()

    async def acomplete(self, request: ChatRequest) -> Completion:
        self._enter()
        try:
            await asyncio.sleep(self.delay_s)
            return self._reply(request)
        finally:
            self._leave()

    def _deltas(self, request: ChatRequest) -> list[Delta]:
        done = self._reply(request)
        deltas = [Delta(text=w + " ") for w in done.text.split()]
        if self.cut_after is not None:
            return deltas[: self.cut_after]
        return [*deltas, Delta(finish_reason="stop", usage=done.usage, model_id="fake-1")]

    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        try:
            yield Delta()  # an empty first delta must not count as the first token
            yield from self._deltas(request)
            if self.cut_after is not None:
                raise ServerError("stream cut", provider="fake")
        finally:
            self.closed_streams += 1

    async def astream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        try:
            for delta in self._deltas(request):
                await asyncio.sleep(0)
                yield delta
            if self.cut_after is not None:
                raise ServerError("stream cut", provider="fake")
        finally:
            self.closed_streams += 1

    def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        return EmbeddingResult(
            [[float(len(t)), 1.0] for t in texts], Usage(len(texts), 0), "fake-emb"
        )


def fake_config(model: str = "echo") -> BackendConfig:
    return BackendConfig(name="fake", model=model, provider=FakeBackend.provider_info)


class FakeMeter:
    """Costs one dollar per busy second, split by share: easy to check by hand."""

    def stop(self, busy_s: float, share: float = 1.0) -> Cost:
        return Cost(Decimal(str(round(busy_s * share, 9))), "energy_estimated", source="fake meter")


class FakeBatchingBackend(FakeBackend):
    """A local-style backend: batches prompts and meters its own cost."""

    default_batch_size = 4

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.batches: list[int] = []

    def complete_batch(self, requests: Sequence[ChatRequest]) -> list[Completion | FmgateError]:
        self.batches.append(len(requests))
        return [self._row(r) for r in requests]

    def _row(self, request: ChatRequest) -> Completion | FmgateError:
        if "too long" in request.messages[-1].content:
            return ContextLengthError("the prompt does not fit", provider="fake")
        return self._reply(request)

    async def acomplete_batch(
        self, requests: Sequence[ChatRequest]
    ) -> list[Completion | FmgateError]:
        return self.complete_batch(requests)

    def start_meter(self) -> FakeMeter:
        return FakeMeter()


class FakeClassifierBackend(FakeBackend):
    """A classifier of its own (like fastText): a text ``"fr: ..."`` is labelled ``fr``; a text
    with no ``:`` gets ``other``. ``batches`` records how many texts each call classified."""

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.batches: list[int] = []

    @property
    def tasks(self) -> frozenset[Task]:
        return frozenset({"classify"})

    def classify(self, texts: Sequence[str], *, top_k: int) -> ClassifyResult:
        self.batches.append(len(texts))
        if self.fail_next:
            raise self.fail_next.pop(0)
        ranked = [[(t.partition(":")[0].strip() if ":" in t else "other", 0.9)] for t in texts]
        return ClassifyResult([r[:top_k] for r in ranked], Usage(), "fake-classifier")


class Painter(FakeBackend):
    """Draws n flat images of the size asked, its red from the seed; 25 steps by default.
    ``seen`` keeps every request it was given."""

    wire = "paint"
    seen: ClassVar[list[ImageRequest]] = []

    @property
    def tasks(self) -> frozenset[Task]:
        return frozenset({"image"})

    def generate_image(self, request: ImageRequest) -> ImageResult:
        from PIL import Image as PILImage

        Painter.seen.append(request)
        red = (request.seed or 0) % 256
        images = [
            PILImage.new("RGB", (request.width, request.height), (red, 0, 0))
            for _ in range(request.n)
        ]
        return ImageResult(images, Usage(), "painter-1", request.steps or 25)
