"""Model.classify: the model's own classifier, and zero-shot with any chat model (labels=)."""

from __future__ import annotations

import asyncio
import inspect
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

import fmgate
from fmgate import Classifications, MemorySink, Model
from fmgate._classify import ZERO_SHOT_PROMPT, ZERO_SHOT_VERSION, sum_usage, to_label
from fmgate._record import Task, Usage
from fmgate._types import ChatRequest, ClassifyResult, Completion
from tests.fakes import FakeBackend, FakeBatchingBackend, fake_config

LANGS = ["en", "fr", "de"]
WORDS = {"hello": "en", "bonjour": "fr", "hallo": "de"}


def _text_of(request: ChatRequest) -> str:
    match = re.search(r'Text: """(.*)"""', request.messages[-1].content, re.S)
    assert match, request.messages[-1].content
    return match[1]


def _answer(request: ChatRequest) -> Completion:
    """A chat model that says the language in a sentence, or rambles on 'nonsense'."""
    text = _text_of(request)
    label = WORDS.get(text.split()[0].lower())
    reply = f"The language is {label.upper()}." if label else "I cannot tell, sorry."
    return Completion(reply, "stop", Usage(20, 5, source="tokenizer"), "chat-1")


class ChatModel(FakeBackend):
    """An API-style chat model: one request at a time, run concurrently by generate_many."""

    supports_embeddings = False

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        return _answer(request)


class LocalChatModel(FakeBatchingBackend):
    """A local-style chat model: batches, and meters its cost."""

    supports_embeddings = False

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        return _answer(request)


class OwnClassifier(FakeBackend):
    """A model with a classifier of its own (as fastText is): it labels by the first word."""

    @property
    def tasks(self) -> frozenset[Task]:
        return frozenset({"classify"})

    def classify(self, texts: Sequence[str], *, top_k: int) -> ClassifyResult:
        ranked = [[(WORDS.get(t.split()[0].lower(), "en"), 0.75), ("xx", 0.25)] for t in texts]
        return ClassifyResult([r[:top_k] for r in ranked], Usage(), "own-1")

    async def aclassify(self, texts: Sequence[str], *, top_k: int) -> ClassifyResult:
        return self.classify(texts, top_k=top_k)


def make(backend_class: type[FakeBackend], **options: object) -> tuple[Model, MemorySink]:
    sink = MemorySink()
    return Model(backend_class(fake_config()), sinks=[sink], **options), sink  # type: ignore[arg-type]


TEXTS = ["Hello there", "Bonjour tout le monde", "Hallo Welt"] * 3 + ["hello again"]


# -- the model's own classifier --------------------------------------------------------------------


@pytest.mark.parametrize("run_async", [False, True])
def test_own_classifier_one_record_per_call_counting_items(run_async: bool) -> None:
    m, sink = make(OwnClassifier)
    if run_async:
        result = asyncio.run(m.aclassify(TEXTS, top_k=2))
    else:
        result = m.classify(TEXTS, top_k=2)
    assert isinstance(result, Classifications)
    assert result.labels == ["en", "fr", "de"] * 3 + ["en"]
    assert result.results[1] == [("fr", 0.75), ("xx", 0.25)]
    (rec,) = sink.records
    assert rec is result.record
    assert (rec.task, rec.operation, rec.usage.items, rec.params) == (
        "classify",
        "classify",
        10,
        {"top_k": 2},
    )


def test_one_str_is_one_input() -> None:
    m, _ = make(OwnClassifier)
    result = m.classify("Bonjour")
    assert result.results == [[("fr", 0.75)]] and result.record.usage.items == 1


def test_classify_without_labels_on_a_chat_model_says_to_give_labels() -> None:
    m, sink = make(ChatModel)
    with pytest.raises(fmgate.UnsupportedTaskError, match=r"tasks are chat .*labels=") as caught:
        m.classify(["Hello"])
    assert caught.value.tasks == {"chat"}
    (rec,) = sink.records
    assert rec.task == "classify" and rec.outcome.sent is False and not m.backend.requests


@pytest.mark.parametrize(
    ("inputs", "kwargs", "message"),
    [
        ([], {}, "non-empty list of str"),
        ([1, 2], {}, "non-empty list of str"),
        (b"\x89PNG", {}, "classifies text, not images \\(got a bytes\\)"),
        ([Path("cat.png")], {}, "classifies text, not images"),
        (["a"], {"top_k": 0}, "top_k must be a positive int"),
        (["a"], {"labels": "en"}, "labels must be a list of str"),
        (["a"], {"labels": []}, "non-empty list of non-blank str"),
        (["a"], {"labels": ["en", " "]}, "non-empty list of non-blank str"),
    ],
)
def test_bad_input_is_refused_before_sending_and_recorded(
    inputs: object, kwargs: dict[str, object], message: str
) -> None:
    m, sink = make(OwnClassifier if "labels" not in kwargs else ChatModel)
    with pytest.raises(fmgate.InvalidRequestError, match=message):
        m.classify(inputs, **kwargs)  # type: ignore[arg-type]
    assert [(r.task, r.outcome.sent) for r in sink.records] == [("classify", False)]


def test_a_classifier_that_returns_the_wrong_number_of_results_fails_the_call() -> None:
    class Short(OwnClassifier):
        def classify(self, texts: Sequence[str], *, top_k: int) -> ClassifyResult:
            return ClassifyResult([[("en", 1.0)]], Usage())

    m, sink = make(Short)
    with pytest.raises(fmgate.MalformedResponseError, match="1 results for 2 texts"):
        m.classify(["a", "b"])
    assert [r.outcome.status for r in sink.records] == ["error"]


# -- zero-shot with a chat model ------------------------------------------------------------------


def test_zero_shot_on_a_local_model_is_batched_and_one_record() -> None:
    m, sink = make(LocalChatModel, load_s=2.5)
    result = m.classify(TEXTS, labels=LANGS)
    assert result.labels == ["en", "fr", "de"] * 3 + ["en"]
    assert all(r == [(label, 1.0)] for r, label in zip(result.results, result.labels, strict=True))
    assert m.backend.batches == [4, 4, 2]  # type: ignore[attr-defined]
    (rec,) = sink.records  # the ten rows are parts of this call, not records of their own
    assert (rec.task, rec.operation, rec.model_id) == ("classify", "classify", "chat-1")
    assert rec.params == {
        "classify_prompt": ZERO_SHOT_VERSION,
        "labels": LANGS,
        "max_tokens": 16,
        "temperature": 0.0,
    }
    assert (rec.usage.items, rec.usage.input_tokens, rec.usage.output_tokens) == (10, 200, 50)
    assert rec.usage.source == "tokenizer"
    assert rec.latency.load_s == 2.5  # the cold start goes to the call, not to a row
    assert rec.cost.basis == "energy_estimated"  # metered as a local call


def test_zero_shot_on_an_api_model_runs_concurrently() -> None:
    m, sink = make(ChatModel)
    m.backend.delay_s = 0.05  # type: ignore[attr-defined]
    result = asyncio.run(m.aclassify(TEXTS, labels=LANGS))
    assert result.labels[:3] == ["en", "fr", "de"]
    assert m.backend.max_in_flight > 1  # type: ignore[attr-defined]
    m.classify(TEXTS, labels=LANGS)
    assert m.backend.max_in_flight > 1  # type: ignore[attr-defined]
    assert [r.task for r in sink.records] == ["classify", "classify"]


def test_the_prompt_lists_the_labels_and_quotes_the_text_at_temperature_0() -> None:
    m, _ = make(ChatModel)
    m.classify(["Hallo Welt"], labels=LANGS, max_tokens=4)
    (request,) = m.backend.requests  # type: ignore[attr-defined]
    assert request.messages[-1].content == ZERO_SHOT_PROMPT.format(
        labels="en, fr, de", text="Hallo Welt"
    )
    assert (request.params.temperature, request.params.max_tokens) == (0.0, 4)


def test_an_answer_that_names_no_label_is_a_failed_row_kept_with_its_raw_text() -> None:
    m, sink = make(LocalChatModel)
    result = m.classify(["Hello", "nonsense here", "Hallo"], labels=LANGS)
    assert result.labels == ["en", None, "de"] and result.results[1] == []
    assert result.errors[1] == "text 1: the answer 'I cannot tell, sorry.' names none of the labels"
    assert result.errors[0] is None and result.errors[2] is None
    (rec,) = sink.records  # the call succeeded; its error fields describe the row that did not
    assert rec.task == "classify" and rec.outcome.status == "ok" and rec.usage.items == 3
    assert rec.outcome.error_type == "MalformedResponseError"
    assert "1 of 3 texts got no label" in (rec.outcome.error_message or "")
    assert "I cannot tell, sorry." in (rec.outcome.error_message or "")


def test_a_row_the_model_fails_is_a_failed_row_and_all_rows_failing_fail_the_call() -> None:
    m, sink = make(LocalChatModel)
    result = m.classify(["Hello", "too long"], labels=LANGS)
    assert result.labels == ["en", None] and "ContextLengthError" in (result.errors[1] or "")
    with pytest.raises(fmgate.ContextLengthError):
        m.classify(["too long"], labels=LANGS)
    assert [(r.task, r.outcome.status) for r in sink.records] == [
        ("classify", "ok"),
        ("classify", "error"),
    ]


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("fr", "fr"),
        (" FR.\n", "fr"),
        ('"de"', "de"),
        ("The language is French (fr).", "fr"),
        ("fr, not en", "fr"),
        ("French", None),  # "en" is inside "French", but not as a word
        ("", None),
        ("Positive", "positive"),
        ("very negative!", "negative"),
    ],
)
def test_an_answer_maps_to_a_label(answer: str, label: str | None) -> None:
    assert to_label(answer, ["en", "fr", "de", "positive", "negative"]) == label


def test_usage_sums_and_an_unknown_count_stays_unknown() -> None:
    total = sum_usage([Usage(3, 1, source="provider"), Usage(4, None, source="provider")])
    assert (total.input_tokens, total.output_tokens, total.source) == (7, None, "provider")
    mixed = sum_usage([Usage(1, 1, source="provider"), Usage(1, 1, source="estimate")])
    assert mixed.source == "estimate"


# -- the surface ---------------------------------------------------------------------------------


def test_classify_and_aclassify_have_the_same_signature_and_doc() -> None:
    sync, async_ = Model.classify, Model.aclassify
    assert inspect.signature(sync).parameters == inspect.signature(async_).parameters
    assert inspect.getdoc(sync) == inspect.getdoc(async_)


def test_import_fmgate_does_not_import_fasttext() -> None:
    code = "import sys, fmgate; print('fasttext' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
