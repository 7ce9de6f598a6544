"""Prompts with images for local vision-language models (LLaVA, Idefics3/SmolVLM, Qwen2-VL...).

A vision-language model reads its prompt through its processor, not its tokenizer alone:

- **rendering**: each message goes to the processor's chat template as a list of parts, text
  parts ``{"type": "text", "text": ...}`` and an ``{"type": "image"}`` placeholder where each
  image stands, in the message's order (the form transformers documents for image-text-to-text
  chat templates; most of them iterate a list and would split a plain string into characters).
  A message without images is one text part, so text-only chats run on the same model.
- **encoding**: the processor expands each placeholder into the model's image tokens (16 for the
  tiny ``llava``, hundreds to thousands for real ones) and turns the images into
  ``pixel_values`` (and whatever else the model reads: ``image_sizes``, ``pixel_attention_mask``,
  ``image_grid_thw``...), which go to ``generate`` beside ``input_ids``. The prompt's token count,
  and so ``usage.input_tokens`` and the context-window check, include the image tokens.

Rows are padded on the left as for text models (the processor's tokenizer is the model's, set
to left padding when it loaded). Images are decoded to RGB PIL images on the way: the PIL
image processors transformers falls back to without torchvision read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import InvalidRequestError, UnsupportedFeatureError
from .._images import Image
from .._types import ChatRequest, Message
from . import tools
from .loading import LoadedModel


def reads_images(loaded: LoadedModel) -> bool:
    """Whether ``loaded`` is a vision-language model with its processor."""
    return loaded.profile.vision == "chat" and loaded.processor is not None


def encode(
    loaded: LoadedModel, requests: Sequence[ChatRequest], plans: Sequence[tools.Plan]
) -> Any:
    """The batch as the processor encodes it (a ``BatchFeature``), on the model's device, its
    float tensors (pixels) in the model's dtype."""
    texts = [render(loaded, r, p) for r, p in zip(requests, plans, strict=True)]
    rows = [[image.pil() for image in _images(r.messages)] for r in requests]
    try:
        enc = loaded.processor(
            text=texts,
            images=rows if any(rows) else None,
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,  # the chat template wrote the special tokens
        )
    except ValueError as exc:
        raise InvalidRequestError(
            f"The processor of {loaded.name} could not encode the prompt with its images: {exc}"
        ) from exc
    return enc.to(loaded.device, dtype=loaded.dtype)


def render(loaded: LoadedModel, request: ChatRequest, plan: tools.Plan) -> str:
    """The prompt text, with the processor's chat template placing the images."""
    if plan.shown is not None and plan.shown.template is not None:
        return _with_text_template(loaded, request, plan)
    template = loaded.processor.chat_template or loaded.tokenizer.chat_template
    if not template:
        raise InvalidRequestError(
            f"{loaded.name} has no chat template, so fmgate cannot tell where its images go in "
            "the prompt: use a vision-language model that ships one (chat_template.jinja)."
        )
    chat = tools.chat_messages(request.messages)
    for item, message in zip(chat, request.messages, strict=True):
        item["content"] = parts(message)
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": True}
    if plan.form is not None:
        kwargs["tools"] = [t.to_openai() for t in request.tools]
    text: str = loaded.tokenizer.apply_chat_template(chat, chat_template=template, **kwargs)
    return text


def parts(message: Message) -> list[dict[str, str]]:
    """A message's content as chat templates for images read it: text and image parts."""
    if not message.parts:
        return [{"type": "text", "text": message.content}] if message.content else []
    return [
        {"type": "image"} if isinstance(part, Image) else {"type": "text", "text": part}
        for part in message.parts
    ]


def _with_text_template(loaded: LoadedModel, request: ChatRequest, plan: tools.Plan) -> str:
    """Tools through fmgate's own (text-only) tool template: it has no place for images."""
    if any(_images(request.messages)):
        raise UnsupportedFeatureError(
            f"{loaded.name}'s chat template does not show tools, and fmgate's fallback tool "
            "template has no place for images: send the images without tools, or the tools "
            "without images.",
            feature="images",
        )
    return plan.render(loaded.tokenizer, request)


def _images(messages: Sequence[Message]) -> list[Image]:
    return [image for m in messages for image in m.images]
