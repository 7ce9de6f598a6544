"""Tiny random-weight vision-language chat models for tests.

Two families whose processors encode images differently, both with the tiny ``llama`` as the
language model and the tiny models' byte-level tokenizer plus their image tokens:

- ``llava``: LLaVA's shape at toy size. A two-layer CLIP vision tower reads 32x32 pixels in 8x8
  patches; each image is 16 ``<image>`` tokens, and its ``pixel_values`` one 3x32x32 tensor.
- ``idefics3``: Idefics3's (SmolVLM's) shape. A two-layer SigLIP-like tower and a pixel shuffle
  make each image 4 ``<image>`` tokens between ``<fake_token_around_image><global-img>`` and
  ``<fake_token_around_image>``; ``pixel_values`` are nested per prompt, with a
  ``pixel_attention_mask``, so a batch mixing prompts with and without images is padded.

Each folder holds the processor (the family's PIL image processor, the tokenizer, and a ChatML
chat template that writes ``<image>`` where a message's image part is) beside the weights, so
``AutoProcessor`` and ``AutoModelForImageTextToText`` load it as a Hub download. The image
processors are the PIL ones: they need no torchvision, which these machines cannot run. The
same architecture gives byte-identical files each time (same torch and transformers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._errors import InvalidRequestError
from . import tiny_text

IMAGE_TOKEN = "<image>"
# The tiny models' ChatML, with each image part written as <image> where it stands in the
# message (a string content is written as it is, so text-only conversations render too).
VLM_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_PIXELS = 32  # the vision towers' input: images are resized (and cropped, for CLIP) to 32x32
_PATCH = 8  # 4x4 patches
_VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=_PIXELS,
    patch_size=_PATCH,
)


def make(arch: str, path: Path) -> Path:
    """Build the tiny ``arch`` model into ``path`` and return the folder."""
    build = _BUILDERS.get(arch)
    if build is None:
        raise InvalidRequestError(
            f"unknown tiny vision-language architecture {arch!r}; choose one of: "
            f"{', '.join(ARCHES)}"
        )

    path.mkdir(parents=True, exist_ok=True)
    processor = build.processor()
    tokenizer = processor.tokenizer
    model = _model(build.config(tokenizer, _text_config(tokenizer)), tokenizer)
    with tiny_text._no_progress_bars():
        model.save_pretrained(path)
    processor.save_pretrained(path)
    (path / "README.md").write_text(tiny_text._model_card(arch), encoding="utf-8")
    return path


def _tokenizer(specials: tuple[str, ...]) -> Any:
    """The tiny chat models' tokenizer, with the image template and the processor's tokens."""

    tokenizer = tiny_text._wrap_tokenizer(
        replace(tiny_text._ARCHES["llama"], template=VLM_TEMPLATE)
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(specials)})
    return tokenizer


def _text_config(tokenizer: Any) -> Any:
    """The tiny Llama as the language model."""

    return _tf().AutoConfig.for_model(
        "llama",
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **tiny_text._ARCHES["llama"].config,
    )


def _model(config: Any, tokenizer: Any) -> Any:
    import torch

    tf = _tf()
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(tiny_text._SEED)
        model = tf.AutoModelForImageTextToText.from_config(config)
    # Stop on the plain end of text or the end of a chat turn, as the tiny chat models do.
    eos = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config = tf.GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id
    )
    return model.eval()


def _tf() -> Any:

    return tiny_text._transformers()


# -- LLaVA: CLIP vision tower, projector, Llama --------------------------------------------------


def _llava_processor() -> Any:
    """CLIP's PIL image processor (resize, 32x32 centre crop), 16 ``<image>`` tokens per image."""
    tf = _tf()
    images = tf.CLIPImageProcessorPil(
        size={"shortest_edge": _PIXELS}, crop_size={"height": _PIXELS, "width": _PIXELS}
    )
    return tf.LlavaProcessor(
        image_processor=images,
        tokenizer=_tokenizer((IMAGE_TOKEN,)),
        chat_template=VLM_TEMPLATE,
        patch_size=_PATCH,
        vision_feature_select_strategy="default",  # CLIP's class token dropped: 16 per image
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
    )


def _llava_config(tokenizer: Any, text: Any) -> Any:
    tf = _tf()
    return tf.LlavaConfig(
        vision_config=tf.CLIPVisionConfig(**_VISION, projection_dim=32),
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(_PIXELS // _PATCH) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )


# -- Idefics3 (SmolVLM): SigLIP-like vision tower, pixel shuffle, Llama ---------------------------


_IDEFICS3_TOKENS = ("<fake_token_around_image>", IMAGE_TOKEN, "<end_of_utterance>", "<global-img>")
_SCALE = 2  # pixel shuffle: 16 patches become 4 image tokens


def _idefics3_processor() -> Any:
    """Idefics3's PIL image processor (resized to 32 pixels on the longest edge, not split), each
    image written as ``<fake_token_around_image><global-img>`` + 4 ``<image>`` + the fake token."""
    tf = _tf()
    images = tf.Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": _PIXELS},
        max_image_size={"longest_edge": _PIXELS},
    )
    return tf.Idefics3Processor(
        image_processor=images,
        tokenizer=_tokenizer(_IDEFICS3_TOKENS),
        image_seq_len=(_PIXELS // _PATCH) ** 2 // _SCALE**2,
        chat_template=VLM_TEMPLATE,
    )


def _idefics3_config(tokenizer: Any, text: Any) -> Any:
    tf = _tf()
    return tf.Idefics3Config(
        vision_config=tf.Idefics3VisionConfig(**_VISION).to_dict(),
        text_config=text.to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        scale_factor=_SCALE,
    )


@dataclass(frozen=True, slots=True)
class _Builder:
    processor: Callable[[], Any]
    config: Callable[[Any, Any], Any]  # (tokenizer, text config) -> the model's config


_BUILDERS = {
    "llava": _Builder(_llava_processor, _llava_config),
    "idefics3": _Builder(_idefics3_processor, _idefics3_config),
}
ARCHES: tuple[str, ...] = tuple(_BUILDERS)
