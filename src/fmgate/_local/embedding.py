"""Sentence embeddings from encoder models, as sentence-transformers computes them.

Mean pooling over the last hidden state, weighted by the attention mask, then L2 normalisation:
the ``Pooling`` + ``Normalize`` modules of sentence-transformers models such as all-MiniLM-L6-v2.
A model folder's own sentence-transformers settings (maximum sequence length, pooling mode,
whether to normalise) are read by :func:`read_sentence_transformers_config`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .._errors import InvalidRequestError

if TYPE_CHECKING:
    import torch

__all__ = [
    "POOLING_MODES",
    "SentenceTransformersConfig",
    "embed_texts",
    "max_input_length",
    "read_sentence_transformers_config",
]

Pooling = Literal["mean", "cls", "max"]
POOLING_MODES: tuple[Pooling, ...] = ("mean", "cls", "max")
_MODES: dict[str, Pooling] = {mode: mode for mode in POOLING_MODES}
# Tokenizers without a known limit report a huge model_max_length (int(1e30)).
_UNSET_LENGTH = 1_000_000
# Model types whose position ids start after the padding id (fairseq's convention).
_PADDED_POSITIONS = ("roberta", "camembert")


def embed_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    device: str,
    normalize: bool = True,
    batch_size: int = 32,
    max_length: int | None = None,
    pooling: Pooling = "mean",
) -> tuple[list[list[float]], int]:
    """Embed ``texts``; returns the vectors (in input order) and the input tokens counted.

    Tokens are the non-padding positions of the attention mask, special tokens included, after
    truncation to ``max_length`` (default: the model's own limit, see :func:`max_input_length`).
    Texts are batched longest first, so each batch pads little; the order returned is the input's.
    """
    _check(texts, batch_size, pooling)
    if not texts:
        return [], 0
    import torch

    limit = max_length if max_length is not None else max_input_length(model, tokenizer)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    vectors: list[list[float]] = [[] for _ in texts]
    tokens = 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            pooled, counted = _embed_batch(
                model, tokenizer, [texts[i] for i in chunk], device, limit, pooling
            )
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            for i, row in zip(chunk, pooled.cpu().tolist(), strict=True):
                vectors[i] = row
            tokens += counted
    return vectors, tokens


def _check(texts: Sequence[str], batch_size: int, pooling: str) -> None:
    if isinstance(texts, str):
        raise InvalidRequestError("embed takes a list of texts, not one str: wrap it in [...].")
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise InvalidRequestError(f"Every text to embed must be a str, not {type(bad).__name__}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidRequestError(f"batch_size must be a positive int, not {batch_size!r}.")
    if pooling not in POOLING_MODES:
        raise InvalidRequestError(f"pooling must be one of {POOLING_MODES}, not {pooling!r}.")


def _embed_batch(
    model: Any, tokenizer: Any, texts: list[str], device: str, limit: int | None, pooling: Pooling
) -> tuple[torch.Tensor, int]:
    encoded = tokenizer(
        texts, padding=True, truncation=True, max_length=limit, return_tensors="pt"
    ).to(device)
    mask: torch.Tensor = encoded["attention_mask"]
    # [0] is last_hidden_state whether the model returns a ModelOutput or a tuple; pooling in
    # float32 keeps half-precision models' vectors as exact as their activations allow.
    hidden: torch.Tensor = model(**encoded)[0].float()
    return _pool(hidden, mask, pooling), int(mask.sum().item())


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """sentence-transformers' Pooling module."""
    import torch

    if pooling == "cls":  # the first real token, wherever padding put it
        first = mask.to(torch.int64).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(weights == 0, float("-inf")).max(dim=1).values
    summed = (hidden * weights).sum(dim=1)
    return summed / weights.sum(dim=1).clamp(min=1e-9)


def max_input_length(model: Any, tokenizer: Any) -> int | None:
    """The most tokens the model takes: the tokenizer's limit, capped by its position table.

    RoBERTa-style models number positions from ``pad_token_id + 1``, so they take two fewer
    tokens than ``max_position_embeddings`` says (514 -> 512).
    """
    limits = []
    declared = getattr(tokenizer, "model_max_length", None)
    if isinstance(declared, int) and 0 < declared < _UNSET_LENGTH:
        limits.append(declared)
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        pad = getattr(config, "pad_token_id", None)
        kind = str(getattr(config, "model_type", ""))
        offset = pad + 1 if isinstance(pad, int) and kind.endswith(_PADDED_POSITIONS) else 0
        limits.append(positions - offset)
    return min(limits) if limits else None


@dataclass(frozen=True, slots=True)
class SentenceTransformersConfig:
    """What a sentence-transformers model folder says about how to embed with it."""

    max_length: int | None = None
    pooling: Pooling = "mean"
    normalize: bool = False


# Flags of the pooling config before sentence-transformers 5 ("pooling_mode_mean_tokens": true).
_FLAGS: dict[str, str] = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def read_sentence_transformers_config(path: str | Path) -> SentenceTransformersConfig | None:
    """How the sentence-transformers model in ``path`` embeds, from its ``modules.json``,
    ``sentence_bert_config.json`` and pooling config; None when it is not such a folder.

    A pipeline fmgate would not reproduce (a ``Dense`` projection, weighted-mean or last-token
    pooling, ...) is an :class:`InvalidRequestError`, never silently different vectors.
    """
    folder = Path(path)
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list):
        return None
    kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules if isinstance(m, dict)}
    extra = sorted(set(kinds) - {"Transformer", "Pooling", "Normalize"})
    if extra:
        raise InvalidRequestError(
            f"{folder.name}: its sentence-transformers pipeline has {', '.join(extra)}, which "
            "fmgate does not compute; use the sentence-transformers library for this model."
        )
    pooling: Pooling = "mean"
    if "Pooling" in kinds:
        pooling = _pooling_mode(folder, _read_json(folder / str(kinds["Pooling"].get("path", ""))))
    settings = _read_json(folder / "sentence_bert_config.json")
    length = settings.get("max_seq_length") if isinstance(settings, dict) else None
    return SentenceTransformersConfig(
        max_length=length if isinstance(length, int) and length > 0 else None,
        pooling=pooling,
        normalize="Normalize" in kinds,
    )


def _pooling_mode(folder: Path, config: Any) -> Pooling:
    """The one pooling mode of a Pooling config, in the old (flags) or new (``pooling_mode``)
    form."""
    modes: list[str] = []
    if isinstance(config, dict):
        mode = config.get("pooling_mode")
        if isinstance(mode, str):
            modes = [mode]
        elif isinstance(mode, list):
            modes = [str(m) for m in mode]
        else:
            modes = [name for flag, name in _FLAGS.items() if config.get(flag) is True]
    found = _MODES.get(modes[0]) if len(modes) == 1 else None
    if found is None:
        raise InvalidRequestError(
            f"{folder.name}: pooling {'+'.join(modes) or '(none given)'} is not one fmgate "
            f"computes (it computes {', '.join(POOLING_MODES)})."
        )
    return found


def _read_json(path: Path) -> Any:
    if path.is_dir():
        path = path / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
