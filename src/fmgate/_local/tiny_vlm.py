"""Tiny random-weight vision-language chat models for tests.

``llava`` is LLaVA's shape at toy size: a two-layer CLIP vision tower reading 32x32 pixels in
8x8 patches (16 image tokens per image), a two-layer projector and the tiny ``llama`` as the
language model, with the tiny models' byte-level tokenizer plus an ``<image>`` token. Its
processor (``LlavaProcessor``: CLIP's PIL image processor, the tokenizer and a ChatML chat
template that writes ``<image>`` where a message's image part is) is saved beside the weights, so
``AutoProcessor`` and ``AutoModelForImageTextToText`` load the folder as a Hub download. The
image processor is CLIP's PIL one: it needs no torchvision, which these machines cannot run.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .._errors import InvalidRequestError

ARCHES: tuple[str, ...] = ("llava",)

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
_PIXELS = 32  # the vision tower's input: images are resized and cropped to 32x32
_PATCH = 8  # 4x4 patches: 16 image tokens per image
_VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=_PIXELS,
    patch_size=_PATCH,
    projection_dim=32,
)


def make(arch: str, path: Path) -> Path:
    """Build the tiny ``arch`` model into ``path`` and return the folder."""
    if arch not in ARCHES:
        raise InvalidRequestError(
            f"unknown tiny vision-language architecture {arch!r}; choose one of: "
            f"{', '.join(ARCHES)}"
        )
    from . import tiny

    path.mkdir(parents=True, exist_ok=True)
    processor = _processor()
    model = _llava(processor.tokenizer)
    with tiny._no_progress_bars():
        model.save_pretrained(path)
    processor.save_pretrained(path)
    (path / "README.md").write_text(tiny._model_card(arch), encoding="utf-8")
    return path


def _processor() -> Any:
    """LLaVA's processor: CLIP's PIL image processor, the tiny tokenizer with ``<image>``."""
    from . import tiny

    tf = tiny._transformers()
    spec = replace(tiny._ARCHES["llama"], template=VLM_TEMPLATE)
    tokenizer = tiny._wrap_tokenizer(spec)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    images = tf.CLIPImageProcessorPil(
        size={"shortest_edge": _PIXELS}, crop_size={"height": _PIXELS, "width": _PIXELS}
    )
    return tf.LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        chat_template=VLM_TEMPLATE,
        patch_size=_PATCH,
        vision_feature_select_strategy="default",  # CLIP's class token dropped: 16 per image
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
    )


def _llava(tokenizer: Any) -> Any:
    import torch

    from . import tiny

    tf = tiny._transformers()
    special = dict(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    text = tf.AutoConfig.for_model(
        "llama", vocab_size=len(tokenizer), **special, **tiny._ARCHES["llama"].config
    )
    config = tf.LlavaConfig(
        vision_config=tf.CLIPVisionConfig(**_VISION),
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(_PIXELS // _PATCH) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(tiny._SEED)
        model = tf.AutoModelForImageTextToText.from_config(config)
    # Stop on the plain end of text or the end of a chat turn, as the tiny chat models do.
    eos = [special["eos_token_id"], tokenizer.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config = tf.GenerationConfig(
        bos_token_id=special["bos_token_id"], eos_token_id=eos, pad_token_id=special["pad_token_id"]
    )
    return model.eval()
