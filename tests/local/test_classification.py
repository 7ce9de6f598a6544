"""Sequence classification in the transformers backend: a folder with a
``*ForSequenceClassification`` head classifies (and only classifies), with the config's label
names and transformers' own scores, batched without changing them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import fmgate  # noqa: E402

from .conftest import TinyFactory  # noqa: E402

LABELS = {"negative", "neutral", "positive"}
CLASSIFIERS = ("bert-classifier", "distilbert-classifier", "roberta-classifier")
CLASSIFIERS += ("mobilebert-classifier",)
TEXTS = [
    "The small cat sat by the window and watched the rain fall on the quiet street.",
    "Revenue rose.",
    "Bees move from flower to flower, and a robin sings from the tall fence.",
    "Hi",
    "",
]


@pytest.fixture(scope="module")
def bert(tiny: TinyFactory) -> fmgate.Model:
    return fmgate.load(f"transformers:{tiny('bert-classifier')}", device="cpu")


def _pipeline_scores(folder: Path, text: str) -> dict[str, float]:
    """transformers' text-classification pipeline: what a user would otherwise run."""
    classifier = transformers.pipeline("text-classification", model=str(folder), top_k=None)
    return {row["label"]: row["score"] for row in classifier([text])[0]}


def _same(row: list[tuple[str, float]], other: list[tuple[str, float]]) -> bool:
    """The same labels in the same order, with scores equal to float32 rounding."""
    pairs = zip(row, other, strict=True)
    return all(a == b and math.isclose(x, y, abs_tol=1e-5) for (a, x), (b, y) in pairs)


@pytest.mark.parametrize("arch", CLASSIFIERS)
def test_a_classifier_head_classifies_with_its_label_names(arch: str, tiny: TinyFactory) -> None:
    m = fmgate.load(f"transformers:{tiny(arch)}", device="cpu")
    assert m.backend.tasks == frozenset({"classify"})
    result = m.classify(TEXTS, top_k=3)
    for ranked in result.results:
        assert {label for label, _ in ranked} == LABELS
        scores = [score for _, score in ranked]
        assert scores == sorted(scores, reverse=True)  # best first
        assert math.isclose(sum(scores), 1.0, rel_tol=1e-5)  # a softmax over the labels
    assert result.labels == [ranked[0][0] for ranked in result.results]


def test_scores_are_transformers_own(bert: fmgate.Model, tiny: TinyFactory) -> None:
    text = TEXTS[0]
    got = dict(bert.classify([text], top_k=3).results[0])
    want = _pipeline_scores(tiny("bert-classifier"), text)
    assert got.keys() == want.keys()
    assert all(math.isclose(got[k], want[k], abs_tol=1e-5) for k in got)


def test_a_batch_scores_each_text_as_it_would_score_alone(bert: fmgate.Model) -> None:
    texts = [f"{TEXTS[i % 4]} {i}" * (1 + i % 5) for i in range(40)]  # past one batch of 32
    together = bert.classify(texts, top_k=3).results
    for text, row in zip(texts, together, strict=True):
        (alone,) = bert.classify([text], top_k=3).results
        assert _same(row, alone)


def test_top_k_bounds_the_pairs_and_past_the_labels_gives_them_all(bert: fmgate.Model) -> None:
    assert [len(r) for r in bert.classify(TEXTS, top_k=1).results] == [1] * len(TEXTS)
    assert [len(r) for r in bert.classify(TEXTS, top_k=10).results] == [3] * len(TEXTS)


def test_one_record_per_call_with_items_and_tokenizer_counts(
    bert: fmgate.Model, tiny: TinyFactory
) -> None:
    result = bert.classify(TEXTS)
    record = result.record
    assert record.task == "classify" and record.ok
    assert record.usage.items == len(TEXTS)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny("bert-classifier"))
    assert record.usage.input_tokens == sum(len(tokenizer(t)["input_ids"]) for t in TEXTS)
    assert record.usage.source == "tokenizer"


async def test_aclassify_gives_what_classify_gives(bert: fmgate.Model) -> None:
    assert (await bert.aclassify(TEXTS, top_k=2)).results == bert.classify(TEXTS, top_k=2).results


def test_a_classifier_does_not_chat_or_embed_and_says_what_it_does(bert: fmgate.Model) -> None:
    with pytest.raises(fmgate.UnsupportedTaskError, match="its tasks are classify") as raised:
        bert.generate("Hello")
    assert raised.value.tasks == frozenset({"classify"})
    with pytest.raises(fmgate.UnsupportedTaskError, match="its tasks are classify"):
        bert.embed(["Hello"])


@pytest.mark.parametrize("arch", ["llama", "bert"])
def test_a_model_without_a_head_cannot_classify_on_its_own(arch: str, tiny: TinyFactory) -> None:
    m = fmgate.load(f"transformers:{tiny(arch)}", device="cpu")
    with pytest.raises(fmgate.UnsupportedTaskError, match="cannot classify"):
        m.classify(["Hello"])


def test_a_decoder_with_a_classification_head_batches_too(
    tiny: TinyFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "llama-classifier"
    config = transformers.AutoConfig.from_pretrained(
        tiny("llama"), num_labels=2, id2label={0: "no", 1: "yes"}, label2id={"no": 0, "yes": 1}
    )
    config.pad_token_id = None  # as many decoder checkpoints ship: fmgate must supply one
    transformers.AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(tiny("llama")).save_pretrained(folder)
    m = fmgate.load(f"transformers:{folder}", device="cpu")
    together = m.classify(TEXTS[:4], top_k=2).results
    alone = [m.classify([t], top_k=2).results[0] for t in TEXTS[:4]]
    for row, one in zip(together, alone, strict=True):
        assert {label for label, _ in row} == {"no", "yes"}
        assert _same(row, one)
