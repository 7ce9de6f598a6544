"""fmgate.testing.make_tiny_model: every architecture builds offline, loads with the Auto classes,
runs, and comes out byte-identical each time."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fmgate import InvalidRequestError  # noqa: E402
from fmgate._local.tiny import ARCHES  # noqa: E402
from fmgate.testing import make_tiny_model  # noqa: E402

CAUSAL = ("llama", "gpt_neox", "gpt2", "llama-tools", "qwen2-tools")
Tiny = Callable[[str], Path]  # the session fixture in conftest.py: arch -> folder
ENCODERS = ("bert", "distilbert", "roberta", "mobilebert", "minilm")
CLASSIFIERS = ("bert-classifier", "distilbert-classifier", "roberta-classifier")
CLASSIFIERS += ("mobilebert-classifier",)
# vision-language chat models (tiny_vlm), with their image tokens per image
VLMS = {"llava": 16, "idefics3": 4}
IMAGE_CLASSIFIERS = ("efficientnet", "mobilenet_v2", "vit")  # tiny_vision
DETECTORS = ("yolos", "detr", "rt_detr")  # tiny_vision
DIFFUSION = ("stable-diffusion",)  # tiny_diffusion: a diffusers folder, tested in test_diffusion


def _digests(folder: Path) -> dict[str, str]:
    files = (f for f in folder.rglob("*") if f.is_file())  # a pipeline's components are folders
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_arches_are_the_documented_ones() -> None:
    assert set(ARCHES) == {
        *CAUSAL,
        *ENCODERS,
        *CLASSIFIERS,
        *VLMS,
        *IMAGE_CLASSIFIERS,
        *DETECTORS,
        *DIFFUSION,
    }


def test_unknown_arch_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="llama.*minilm"):
        make_tiny_model("t5", tmp_path / "t5")
    assert not (tmp_path / "t5").exists()


def test_returns_the_folder_it_created(tmp_path: Path) -> None:
    folder = make_tiny_model("gpt2", str(tmp_path / "a" / "b"))
    assert folder == tmp_path / "a" / "b"
    assert (folder / "model.safetensors").is_file()
    assert not (folder / "pytorch_model.bin").exists()


@pytest.mark.parametrize("arch", ARCHES)
def test_same_arch_gives_identical_files(arch: str, tiny: Tiny, tmp_path: Path) -> None:
    if arch in DIFFUSION:
        pytest.importorskip("diffusers")
    again = make_tiny_model(arch, tmp_path / arch)
    assert _digests(again) == _digests(tiny(arch))


def test_does_not_disturb_the_callers_random_state(tmp_path: Path) -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    make_tiny_model("gpt2", tmp_path / "m")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("arch", CAUSAL)
def test_causal_model_chats_and_generates(arch: str, tiny: Tiny) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny(arch))
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny(arch))
    messages = [{"role": "user", "content": "Say hi"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"
    inputs = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False, min_new_tokens=8)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert len(new) == 8
    assert isinstance(tokenizer.decode(new, skip_special_tokens=True), str)


@pytest.mark.parametrize("arch", sorted(VLMS))
def test_vision_language_model_places_images_and_generates(arch: str, tiny: Tiny) -> None:
    from PIL import Image

    processor = transformers.AutoProcessor.from_pretrained(tiny(arch))
    model = transformers.AutoModelForImageTextToText.from_pretrained(tiny(arch))
    assert type(processor.image_processor).__name__.endswith("Pil")  # no torchvision needed
    content = [{"type": "image"}, {"type": "text", "text": "Say hi"}]
    messages = [{"role": "user", "content": content}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == "<|im_start|>user\n<image>\nSay hi<|im_end|>\n<|im_start|>assistant\n"
    image = Image.new("RGB", (50, 40), (10, 200, 30))
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    image_id = model.config.image_token_id
    assert int((inputs["input_ids"] == image_id).sum()) == VLMS[arch]  # 32x32 pixels, 8x8 patches
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False, min_new_tokens=8)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 8


@pytest.mark.parametrize("arch", CAUSAL)
def test_causal_ids_agree_between_tokenizer_and_configs(arch: str, tiny: Tiny) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny(arch))
    config = json.loads((tiny(arch) / "config.json").read_text())
    generation = json.loads((tiny(arch) / "generation_config.json").read_text())
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert config["vocab_size"] == len(tokenizer)
    assert config["bos_token_id"] == tokenizer.bos_token_id == generation["bos_token_id"]
    assert config["eos_token_id"] == tokenizer.eos_token_id
    assert generation["eos_token_id"] == [tokenizer.eos_token_id, im_end]
    assert config["pad_token_id"] == tokenizer.pad_token_id == generation["pad_token_id"]
    assert len({tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id}) == 3


@pytest.mark.parametrize("arch", CAUSAL)
def test_byte_level_tokenizer_round_trips_any_text(arch: str, tiny: Tiny) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny(arch))
    text = "Zebras 🦓 quizzically jump: naïve café, 12345!"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


@pytest.mark.parametrize("arch", ENCODERS)
def test_encoder_loads_and_encodes(arch: str, tiny: Tiny) -> None:
    model = transformers.AutoModel.from_pretrained(tiny(arch))
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny(arch))
    batch = tokenizer(["a cat", "a kitten sat down"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, 0] == tokenizer.cls_token_id
    assert tokenizer.pad_token_id in batch["input_ids"][0].tolist()
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape[:2] == batch["input_ids"].shape
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.chat_template is None


def test_encoders_use_their_families_tokens(tiny: Tiny) -> None:
    bert = transformers.AutoTokenizer.from_pretrained(tiny("bert"))
    roberta = transformers.AutoTokenizer.from_pretrained(tiny("roberta"))
    tokens = bert.convert_ids_to_tokens(bert("The Cat")["input_ids"])
    assert tokens == ["[CLS]", "the", "cat", "[SEP]"]  # lower-cased, as bert-base-uncased
    assert (bert.pad_token, bert.mask_token, bert.unk_token) == ("[PAD]", "[MASK]", "[UNK]")
    assert (roberta.cls_token, roberta.sep_token, roberta.pad_token) == ("<s>", "</s>", "<pad>")
    assert roberta.mask_token == "<mask>"


@pytest.mark.parametrize("arch", IMAGE_CLASSIFIERS)
def test_image_classifier_is_small_with_named_classes_and_a_pil_processor(
    arch: str, tiny: Tiny
) -> None:
    from PIL import Image

    model = transformers.AutoModelForImageClassification.from_pretrained(tiny(arch))
    processor = transformers.AutoImageProcessor.from_pretrained(tiny(arch))
    assert type(processor).__name__.endswith("Pil")  # no torchvision needed
    assert model.num_parameters() < 300_000
    assert list(model.config.id2label.values()) == ["cat", "dog", "espresso", "teapot"]
    pixels = processor(images=[Image.new("RGB", (50, 40), "red")], return_tensors="pt")
    assert model(**pixels).logits.shape == (1, 4)


@pytest.mark.parametrize(
    "arch", [a for a in ARCHES if a not in (*IMAGE_CLASSIFIERS, *DETECTORS, *DIFFUSION)]
)
def test_small_but_with_a_real_context(arch: str, tiny: Tiny) -> None:
    auto = _auto(arch)
    model: Any = auto.from_pretrained(tiny(arch))
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny(arch))
    config = model.config.get_text_config()  # a vision-language model's language model
    positions = getattr(config, "max_position_embeddings", None) or config.n_positions
    assert model.num_parameters() < 300_000
    assert positions >= tokenizer.model_max_length >= 512


@pytest.mark.parametrize("arch", DETECTORS)
def test_detectors_are_small_and_need_neither_timm_nor_torchvision(arch: str, tiny: Tiny) -> None:
    model: Any = transformers.AutoModelForObjectDetection.from_pretrained(tiny(arch))
    processor = transformers.AutoImageProcessor.from_pretrained(tiny(arch))
    assert model.num_parameters() < 300_000
    assert type(processor).__name__.endswith("Pil")  # transformers' PIL processor
    assert not getattr(model.config, "use_timm_backbone", False)
    assert not getattr(model.config, "use_pretrained_backbone", False)
    assert list(model.config.id2label.values()) == ["cat", "dog", "cup"]


@pytest.mark.parametrize("arch", ARCHES)
def test_model_card_says_licence_and_random_weights(arch: str, tiny: Tiny) -> None:
    if arch in DIFFUSION:
        pytest.importorskip("diffusers")
    card = (tiny(arch) / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\n")
    assert "random" in card


def _auto(arch: str) -> Any:
    """The Auto class of a tiny model's head."""
    if arch.endswith("-classifier"):
        return transformers.AutoModelForSequenceClassification
    if arch in VLMS:
        return transformers.AutoModelForImageTextToText
    if arch in IMAGE_CLASSIFIERS:
        return transformers.AutoModelForImageClassification
    return transformers.AutoModelForCausalLM if arch in CAUSAL else transformers.AutoModel
