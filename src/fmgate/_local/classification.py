"""Text classification with a sequence-classification head (``*ForSequenceClassification``), as
transformers' ``text-classification`` pipeline scores it.

Each text's logits become probabilities with a softmax over the labels (a sigmoid per label when
the config's ``problem_type`` is ``multi_label_classification``, as the pipeline does), and the
``top_k`` best come back as ``(label, score)`` pairs, best first. Labels are the config's
``id2label`` names. Texts are batched longest first and truncated to the model's limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._types import Ranked
from .embedding import max_input_length

if TYPE_CHECKING:
    import torch

__all__ = ["classify_texts", "label_names"]


def classify_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    device: str,
    top_k: int,
    batch_size: int = 32,
) -> tuple[list[Ranked], int]:
    """Per text, its ``top_k`` labels and scores best first (in input order), and the input
    tokens counted (the attention mask's non-padding positions, special tokens included)."""
    import torch

    labels = label_names(model.config)
    multi = getattr(model.config, "problem_type", None) == "multi_label_classification"
    limit = max_input_length(model, tokenizer)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    ranked: list[Ranked] = [[] for _ in texts]
    tokens = 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            scores, counted = _score_batch(
                model, tokenizer, [texts[i] for i in chunk], device, limit
            )
            scores = scores.sigmoid() if multi else scores.softmax(dim=-1)
            for i, row in zip(chunk, _top(scores, labels, top_k), strict=True):
                ranked[i] = row
            tokens += counted
    return ranked, tokens


def label_names(config: Any) -> list[str]:
    """The labels by class index: ``id2label``'s names (transformers' ``LABEL_<i>`` where the
    model was saved without names)."""
    id2label = getattr(config, "id2label", None) or {}
    count = int(getattr(config, "num_labels", len(id2label)))
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(count)]


def _score_batch(
    model: Any, tokenizer: Any, texts: list[str], device: str, limit: int | None
) -> tuple[torch.Tensor, int]:
    encoded = tokenizer(
        texts, padding=True, truncation=True, max_length=limit, return_tensors="pt"
    ).to(device)
    # float32 softmax: half-precision logits would round close scores together
    logits: torch.Tensor = model(**encoded).logits.float()
    return logits, int(encoded["attention_mask"].sum().item())


def _top(scores: torch.Tensor, labels: list[str], top_k: int) -> list[Ranked]:
    best = scores.topk(min(top_k, scores.shape[-1]), dim=-1)
    return [
        [(labels[j], float(s)) for s, j in zip(values, indices, strict=True)]
        for values, indices in zip(best.values.tolist(), best.indices.tolist(), strict=True)
    ]
