"""Tiny random-weight models, built offline, for tests and examples.

``make_tiny_model("llama", path)`` builds a small model of the named architecture with seeded
random weights and saves it with ``save_pretrained`` (with its tokenizer, image processor or
processor), so the folder loads with the ``Auto*`` classes exactly like a Hub download. Nothing
touches the network, and the same architecture gives byte-identical files each time. The text
models live in :mod:`~fmgate._local.tiny_text`, image classifiers and detectors in
:mod:`~fmgate._local.tiny_vision`, vision-language models in :mod:`~fmgate._local.tiny_vlm`, the
Stable Diffusion pipeline (a diffusers folder, saved by its own ``save_pretrained``) in
:mod:`~fmgate._local.tiny_diffusion`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import InvalidRequestError
from . import tiny_diffusion, tiny_text, tiny_vision, tiny_vlm
from .tiny_text import make_tiny_gguf

__all__ = ["ARCHES", "make_tiny_gguf", "make_tiny_model"]

ARCHES: tuple[str, ...] = (
    tiny_text.ARCHES + tiny_vision.ARCHES + tiny_vlm.ARCHES + tiny_diffusion.ARCHES
)


def make_tiny_model(arch: str, path: str | os.PathLike[str]) -> Path:
    """Build a small random-weight model of ``arch`` offline and save it into ``path``.

    ``arch`` is one of :data:`ARCHES`: causal ``llama``, ``gpt_neox`` (Dolly 2's architecture),
    ``gpt2``; chat models with tools ``llama-tools`` and ``qwen2-tools`` (a Hermes/Qwen-style
    chat template that shows tools, and ``<tool_call>`` tokens: tool calls and structured output
    work on them); encoders ``bert``, ``distilbert``, ``roberta``, ``mobilebert``, ``minilm``; and
    classifiers ``bert-classifier``, ``distilbert-classifier``, ``roberta-classifier``,
    ``mobilebert-classifier``: the encoder with a sequence-classification head of three classes
    (``negative``, ``neutral``, ``positive``; its scores are random too); the vision-language
    ``llava`` and ``idefics3`` (saved with their processors: :mod:`fmgate._local.tiny_vlm`); and
    ``stable-diffusion``, a diffusers pipeline (UNet, VAE, CLIP text encoder and tokenizer, DDIM
    scheduler, no safety checker: :mod:`fmgate._local.tiny_diffusion`, needs the ``diffusers``
    extra) that ``DiffusionPipeline.from_pretrained`` loads. The folder
    (created if needed) gets safetensors weights, config.json, a trained tokenizer (with a
    ChatML-like chat template for causal models) and a README.md model card (apache-2.0). With the
    same torch and transformers versions, the same ``arch`` always gives byte-identical files.
    Needs the ``local`` extra (torch, transformers, tokenizers).
    Returns the folder as a :class:`~pathlib.Path`.
    """
    for family in (tiny_text, tiny_vision, tiny_vlm, tiny_diffusion):
        if arch in family.ARCHES:
            built: Path = family.make(arch, Path(path))
            return built
    raise InvalidRequestError(
        f"unknown tiny-model architecture {arch!r}; choose one of: {', '.join(ARCHES)}"
    )
