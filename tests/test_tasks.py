"""Tasks: a backend declares the tasks it serves; any other is refused, recorded, and named."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

import fmgate
from fmgate import MemorySink, Model, UnsupportedTaskError
from fmgate._record import Task
from fmgate._types import ClassifyResult
from tests.fakes import FakeBackend, fake_config


class ChatOnlyBackend(FakeBackend):
    supports_embeddings = False


class ClassifierBackend(FakeBackend):
    """A classifier that labels a text by its first letter: it cannot chat or embed."""

    @property
    def tasks(self) -> frozenset[Task]:
        return frozenset({"classify"})

    def classify(self, texts: Sequence[str], *, top_k: int) -> ClassifyResult:
        ranked = [[(t[0], 0.9), ("other", 0.1)][:top_k] for t in texts]
        return ClassifyResult(ranked, fmgate.Usage(), "first-letter")


def model(backend_class: type[FakeBackend]) -> tuple[Model, MemorySink]:
    sink = MemorySink()
    return Model(backend_class(fake_config()), sinks=[sink]), sink


def test_the_default_tasks_follow_the_class() -> None:
    assert FakeBackend(fake_config()).tasks == {"chat", "embed"}
    assert ChatOnlyBackend(fake_config()).tasks == {"chat"}


def test_embed_on_a_chat_only_model_is_refused_and_recorded() -> None:
    m, sink = model(ChatOnlyBackend)
    with pytest.raises(UnsupportedTaskError, match="cannot compute embeddings.*tasks are chat"):
        m.embed(["a"])
    (rec,) = sink.records
    assert (rec.task, rec.operation, rec.outcome.sent) == ("embed", "embeddings", False)


@pytest.mark.parametrize("call", ["generate", "stream", "agenerate", "generate_many"])
def test_chat_on_a_classifier_is_refused_naming_what_it_does(call: str) -> None:
    m, sink = model(ClassifierBackend)

    def run() -> object:
        if call == "stream":
            return list(m.stream("hi"))
        if call == "agenerate":
            return asyncio.run(m.agenerate("hi"))
        if call == "generate_many":
            return m.generate_many(["hi", "ho"])
        return m.generate("hi")

    with pytest.raises(UnsupportedTaskError) as caught:
        run()
    assert "cannot chat" in str(caught.value) and "tasks are classify" in str(caught.value)
    assert caught.value.tasks == {"classify"}
    assert all(r.task == "chat" and r.outcome.sent is False for r in sink.records)
    assert m.backend.requests == []  # nothing reached the backend


def test_an_embed_record_counts_its_items() -> None:
    m, sink = model(FakeBackend)
    result = m.embed(["a", "bb", "ccc"])
    assert result.usage.items == 3
    (rec,) = sink.records
    assert (rec.task, rec.operation, rec.usage.items) == ("embed", "embeddings", 3)


def test_a_chat_record_has_no_items() -> None:
    m, sink = model(FakeBackend)
    rec = m.generate("hi").record
    assert (rec.task, rec.operation, rec.usage.items) == ("chat", "chat", None)


def test_the_base_backend_refuses_classify_with_a_typed_error() -> None:
    backend = ChatOnlyBackend(fake_config())
    with pytest.raises(UnsupportedTaskError, match="labels="):
        backend.classify(["a"], top_k=1)
    with pytest.raises(UnsupportedTaskError):
        asyncio.run(backend.aclassify(["a"], top_k=1))
