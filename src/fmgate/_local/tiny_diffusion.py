"""A tiny random-weight Stable Diffusion pipeline for tests and examples.

``make("stable-diffusion", path)`` builds the components of Stable Diffusion 1.x, each far
smaller: a UNet2DConditionModel with cross-attention, an AutoencoderKL of four blocks (so the
latents are 1/8 of the image, as in SD), a CLIP text encoder and CLIP tokenizer (byte-level BPE,
written offline: the 256 byte symbols, their end-of-word forms and a few merges) and a DDIM
scheduler with SD's noise schedule. It is saved with ``StableDiffusionPipeline.save_pretrained``
(no safety checker), so ``DiffusionPipeline.from_pretrained(path)`` loads it like a Hub download.
A 64x64 image in 4 steps takes about 50 ms on a CPU. Nothing touches the network; the same
versions of torch, transformers and diffusers give byte-identical files each time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .tiny_text import _no_progress_bars

__all__ = ["ARCHES", "make"]

ARCHES: tuple[str, ...] = ("stable-diffusion",)

_SEED = 1234
_TEXT_WIDTH = 32  # the text encoder's hidden size: the UNet's cross-attention width
_MAX_TOKENS = 77  # CLIP's context, as in every Stable Diffusion
_MERGES = ("t h", "th e</w>", "a n", "o n", "i n", "e r", "a r", "c a", "ca t</w>", "d o")


def make(arch: str, path: Path) -> Path:
    """Build the tiny ``arch`` pipeline into ``path`` and return the folder."""
    if arch not in ARCHES:
        raise NotImplementedError(arch)
    import torch

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    # fork_rng: seeding must not disturb the caller's own random state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        unet, vae, text_encoder = _unet(), _vae(), _text_encoder(len(tokenizer))
    pipeline = _diffusers().StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    with _no_progress_bars():
        pipeline.save_pretrained(path, safe_serialization=True)
    (path / "README.md").write_text(_model_card(arch), encoding="utf-8")
    return path


def _diffusers() -> Any:
    """diffusers as ``Any``: its constructors are unannotated, which strict mypy rejects."""
    import diffusers

    return diffusers


def _unet() -> Any:
    return _diffusers().UNet2DConditionModel(
        sample_size=8,  # 64 px / the VAE's factor of 8
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=_TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def _vae() -> Any:
    return _diffusers().AutoencoderKL(
        in_channels=3,
        out_channels=3,
        # four blocks, as SD's VAE: three downsamplings, latents 1/8 of the image
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )


def _text_encoder(vocab_size: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=_TEXT_WIDTH,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=_MAX_TOKENS,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    return CLIPTextModel(config)


def _scheduler() -> Any:
    # Stable Diffusion 1.x's noise schedule, with the DDIM sampler its model card offers. (Euler's
    # and DPM-Solver's set_timesteps call np.array on a tensor, which numpy 2 with this torch
    # warns about: an error under tests' filterwarnings.)
    return _diffusers().DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def _tokenizer() -> Any:
    """CLIP's byte-level BPE with a vocabulary of 532: every byte, its end-of-word form, a few
    merges, then the start and end tokens (CLIP's order: they come last)."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(merge.split()) for merge in _MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    clip: Any = CLIPTokenizer  # its vocab and merges are typed as file names or str lists
    tokenizer = clip(
        vocab={t: i for i, t in enumerate(tokens)},
        merges=[tuple(merge.split()) for merge in _MERGES],  # pairs, as tokenizers' BPE takes
        model_max_length=_MAX_TOKENS,
    )
    return tokenizer


def _byte_symbols() -> list[str]:
    """GPT-2's and CLIP's printable stand-in for each of the 256 bytes, in CLIP's vocab order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    shifted = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(shifted))]


def _model_card(arch: str) -> str:
    return (
        "---\n"
        "license: apache-2.0\n"
        "library_name: diffusers\n"
        "tags:\n- fmgate-tiny\n- random-weights\n- text-to-image\n"
        "---\n\n"
        f"# tiny-{arch}\n\n"
        "The weights are random: made by `fmgate.testing.make_tiny_model` for tests and examples.\n"
        "Its images are noise; its components, shapes, tokenizer and files are those of Stable\n"
        "Diffusion 1.x (UNet, VAE, CLIP text encoder and tokenizer, scheduler), far smaller.\n"
    )
