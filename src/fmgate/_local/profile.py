"""What a local model folder says about the model, read without loading its weights.

Parameters and dtype come from the safetensors headers (8-byte little-endian length, then a JSON
table of every tensor's dtype and shape), the context window and architecture from config.json,
the licence from the model card's YAML front matter. A folder of a few GB profiles in
milliseconds, so the access columns are known before the first (slow) load.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._errors import InvalidRequestError

__all__ = [
    "ModelProfile",
    "card_license",
    "count_parameters",
    "hub_license",
    "normalise_license",
    "read_header",
    "read_profile",
    "shard_files",
]

# safetensors caps its JSON header at 100 MB; anything larger is not a safetensors file.
_MAX_HEADER = 100 * 1024 * 1024

_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}
_FLOAT_CODES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})

# Buffers that older transformers versions saved alongside the parameters; num_parameters()
# does not count them (e.g. all-MiniLM-L6-v2 stores embeddings.position_ids).
# Batch norms' running statistics are float buffers of every convolutional image model.
_BUFFER_SUFFIXES = (".position_ids", ".attn.bias", ".attn.masked_bias", ".inv_freq") + (
    ".running_mean",
    ".running_var",
)

# Output heads that a tied-embeddings model shares with its input embeddings: when a checkpoint
# stores both anyway, the loaded model still holds one copy.
_TIED_HEADS = ("lm_head.weight", "embed_out.weight")

_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx")

# These number positions from pad_token_id + 1: 514 slots hold 512 tokens.
_OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert", "mpnet"})

_ENCODER_TYPES = frozenset(
    {
        "albert",
        "bert",
        "camembert",
        "convbert",
        "deberta",
        "deberta-v2",
        "distilbert",
        "electra",
        "mobilebert",
        "modernbert",
        "mpnet",
        "nomic_bert",
        "roberta",
        "xlm-roberta",
    }
)
_DECODER_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
_CLASSIFIER_HEAD = "ForSequenceClassification"

# SPDX spellings of the licence ids the Hub lets a card declare; SPDX ids match
# case-insensitively, so "apache-2.0" on a card becomes "Apache-2.0". Ids with no SPDX
# counterpart ("llama3", "gemma", "openrail") are kept as written.
_SPDX = {
    spdx.lower(): spdx
    for spdx in (
        "AFL-3.0",
        "AGPL-3.0",
        "Apache-2.0",
        "Artistic-2.0",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "BSD-3-Clause-Clear",
        "BSL-1.0",
        "CC-BY-2.0",
        "CC-BY-2.5",
        "CC-BY-3.0",
        "CC-BY-4.0",
        "CC-BY-NC-2.0",
        "CC-BY-NC-3.0",
        "CC-BY-NC-4.0",
        "CC-BY-NC-ND-3.0",
        "CC-BY-NC-ND-4.0",
        "CC-BY-NC-SA-2.0",
        "CC-BY-NC-SA-3.0",
        "CC-BY-NC-SA-4.0",
        "CC-BY-ND-4.0",
        "CC-BY-SA-3.0",
        "CC-BY-SA-4.0",
        "CC0-1.0",
        "ECL-2.0",
        "EPL-1.0",
        "EPL-2.0",
        "EUPL-1.1",
        "EUPL-1.2",
        "GPL-2.0",
        "GPL-3.0",
        "ISC",
        "LGPL-2.1",
        "LGPL-3.0",
        "MIT",
        "MPL-2.0",
        "NCSA",
        "ODbL-1.0",
        "OFL-1.1",
        "OSL-3.0",
        "PostgreSQL",
        "Unlicense",
        "WTFPL",
        "Zlib",
    )
}


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """The access facts of a local model folder. ``None`` means the folder does not say.

    ``parameters`` equals ``model.num_parameters()`` of the loaded model: tensors are counted once
    across shards, persisted buffers are left out and a tied output head stored twice counts
    once. It is ``None`` for quantized checkpoints (packed storage: element counts are not
    parameter counts) and for folders with only ``pytorch_model.bin`` files, which cannot be read
    without unpickling them; their ``dtype`` is the one config.json records.

    ``license`` is an SPDX id where the card's id has one (see ``_SPDX``), else the id as
    written; a card saying ``other`` gives its ``license_name``.
    """

    parameters: int | None
    dtype: str | None
    quantization: str | None
    weights_bytes: int | None
    context_window: int | None
    license: str | None
    architectures: tuple[str, ...]
    model_type: str | None
    is_encoder: bool
    has_chat_template: bool
    # a sequence-classification head (BertForSequenceClassification, ...): the model classifies
    is_classifier: bool = False
    # a vision model: "image-classifier" (*ForImageClassification), "detector"
    # (*ForObjectDetection) or "chat" (an image-text-to-text model: LLaVA, Idefics, SmolVLM...)
    vision: Literal["image-classifier", "detector", "chat"] | None = None


def read_profile(model_dir: str | os.PathLike[str]) -> ModelProfile:
    """Profile the model in ``model_dir`` (a folder holding config.json) without loading it."""
    folder = Path(model_dir)
    config = _read_config(folder)
    quantization = _quantization(config)
    tensors = _safetensors_headers(folder)
    counted = None if quantization or tensors is None else count_parameters(tensors, config)
    return ModelProfile(
        parameters=counted,
        dtype=_config_dtype(config) if tensors is None else _dominant_dtype(tensors),
        quantization=quantization,
        weights_bytes=_weights_bytes(folder),
        context_window=_context_window(config),
        license=card_license(folder / "README.md"),
        architectures=tuple(config.get("architectures") or ()),
        model_type=config.get("model_type"),
        is_encoder=_is_encoder(config),
        has_chat_template=_has_chat_template(folder),
        is_classifier=_is_classifier(config),
        vision=_vision(config),
    )


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not folder.is_dir():
        raise InvalidRequestError(
            f"model folder {str(folder)!r} does not exist: pass a folder made by save_pretrained "
            "or a Hugging Face repo id"
        )
    if not path.is_file():
        raise InvalidRequestError(
            f"{str(folder)!r} has no config.json, so it is not a transformers model folder: pass "
            "the folder that save_pretrained wrote (or a snapshot folder of the Hub cache)"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequestError(f"cannot read {str(path)!r}: {exc}") from exc
    if not isinstance(config, dict):
        raise InvalidRequestError(f"{str(path)!r} is not a JSON object")
    return config


# -- weights ---------------------------------------------------------------------------------


def _safetensors_files(folder: Path) -> list[Path]:
    """The files a loader would read: the index's shards if there is an index, else
    model.safetensors, else every top-level ``*.safetensors`` (one unsharded export)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return shard_files(index)
    single = folder / "model.safetensors"
    return [single] if single.is_file() else sorted(folder.glob("*.safetensors"))


def shard_files(index: Path) -> list[Path]:
    """The files an index's ``weight_map`` names, each once; none if the index is unreadable."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [index.parent / name for name in sorted(set(weight_map.values()))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def _safetensors_headers(folder: Path) -> dict[str, Mapping[str, Any]] | None:
    """Every tensor's header entry by name, across shards; ``None`` if there are none or one
    cannot be read (a broken file is the loader's to report, not the profile's)."""
    files = _safetensors_files(folder)
    if not files:
        return None
    tensors: dict[str, Mapping[str, Any]] = {}
    try:
        for path in files:
            tensors.update(read_header(path))
    except (OSError, ValueError):
        return None
    return tensors


def read_header(path: Path) -> dict[str, Mapping[str, Any]]:
    """The header's tensor entries; ValueError for anything that is not a safetensors header."""
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path}: too short for safetensors")
        (length,) = struct.unpack("<Q", prefix)
        if length > _MAX_HEADER:
            raise ValueError(f"{path}: header of {length} bytes is not safetensors")
        header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    header.pop("__metadata__", None)
    if not all(_is_tensor_entry(entry) for entry in header.values()):
        raise ValueError(f"{path}: header entry without a dtype and shape")
    return header


def _is_tensor_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("dtype"), str)
        and isinstance(entry.get("shape"), list)
        and all(isinstance(d, int) for d in entry["shape"])
    )


def count_parameters(tensors: Mapping[str, Mapping[str, Any]], config: Mapping[str, Any]) -> int:
    # Parameters are floating point; integer tensors in an unquantized file are buffers.
    names = {
        n
        for n, t in tensors.items()
        if t["dtype"] in _FLOAT_CODES and not n.endswith(_BUFFER_SUFFIXES)
    }
    names -= _tied_copies(names, tensors, config)
    names -= _frozen_norms(tensors)
    return sum(math.prod(tensors[n]["shape"]) for n in names)


def _frozen_norms(tensors: Mapping[str, Any]) -> set[str]:
    """The weight and bias of frozen batch norms (DETR's and RT-DETR's backbones), which are
    buffers: a norm with running statistics but no ``num_batches_tracked`` (PyTorch's BatchNorm
    always saves that counter; a FrozenBatchNorm2d has none)."""
    frozen: set[str] = set()
    for name in tensors:
        if name.endswith(".running_mean"):
            prefix = name.removesuffix("running_mean")
            if prefix + "num_batches_tracked" not in tensors:
                frozen |= {prefix + "weight", prefix + "bias"}
    return frozen


def _tied_copies(
    names: set[str], tensors: Mapping[str, Mapping[str, Any]], config: Mapping[str, Any]
) -> set[str]:
    """Output heads stored beside the embeddings they are tied to (same shape): loading makes
    them one parameter. Only an explicit ``tie_word_embeddings: true`` counts, since the
    default differs between model classes."""
    tied = config.get("tie_word_embeddings", _text_config(config).get("tie_word_embeddings"))
    if tied is not True:
        return set()
    shapes = Counter(tuple(tensors[n]["shape"]) for n in names)
    return {n for n in names if n.endswith(_TIED_HEADS) and shapes[tuple(tensors[n]["shape"])] > 1}


def _dominant_dtype(tensors: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The floating dtype holding the most elements: a bf16 model with a few f32 norms is
    bfloat16, and a 4-bit model packed into integers reports the dtype it computes in (its
    scales' and norms'). Integer dtypes count only when there is nothing else."""
    counts: Counter[str] = Counter()
    for t in tensors.values():
        counts[t["dtype"]] += math.prod(t["shape"])
    floats = Counter({code: n for code, n in counts.items() if code in _FLOAT_CODES})
    ranked = (floats or counts).most_common(1)
    return _DTYPES.get(ranked[0][0], ranked[0][0].lower()) if ranked else None


def _config_dtype(config: Mapping[str, Any]) -> str | None:
    """Without safetensors headers, the dtype save_pretrained recorded (``torch_dtype`` before
    transformers 5, ``dtype`` since)."""
    text = _text_config(config)
    value = text.get("dtype") or text.get("torch_dtype")
    return value if isinstance(value, str) and value != "auto" else None


def _weights_bytes(folder: Path) -> int | None:
    """Bytes of the weight files on disk; pickled checkpoints count too, when that is all."""
    files = _safetensors_files(folder) or _pickle_files(folder)
    try:
        return sum(p.stat().st_size for p in files) if files else None
    except OSError:  # a shard named by the index but missing
        return None


def _pickle_files(folder: Path) -> list[Path]:
    index = folder / "pytorch_model.bin.index.json"
    if index.is_file():
        return shard_files(index)
    single = folder / "pytorch_model.bin"
    return [single] if single.is_file() else []


# -- config ----------------------------------------------------------------------------------


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """Multimodal configs (Llava, Gemma 3, Qwen2-VL) keep the language model's under
    ``text_config``; that is the one whose context and head matter here."""
    nested = config.get("text_config")
    return nested if isinstance(nested, Mapping) else config


def _quantization(config: Mapping[str, Any]) -> str | None:
    quant = config.get("quantization_config")
    method = quant.get("quant_method") if isinstance(quant, Mapping) else None
    return str(method) if method else None


def _context_window(config: Mapping[str, Any]) -> int | None:
    text = _text_config(config)
    window = next((text[k] for k in _CONTEXT_KEYS if isinstance(text.get(k), int)), None)
    if window is not None and text.get("model_type") in _OFFSET_POSITIONS:
        window -= int(text.get("pad_token_id") or 0) + 1
    return window


def _is_encoder(config: Mapping[str, Any]) -> bool:
    architectures = config.get("architectures") or ()
    if config.get("is_decoder") or any(a.endswith(_DECODER_HEADS) for a in architectures):
        return False
    if any(a.endswith("EncoderModel") for a in architectures):  # T5EncoderModel and kin
        return True
    return config.get("model_type") in _ENCODER_TYPES


def _is_classifier(config: Mapping[str, Any]) -> bool:
    return any(a.endswith(_CLASSIFIER_HEAD) for a in config.get("architectures") or ())


def _vision(config: Mapping[str, Any]) -> Literal["image-classifier", "detector", "chat"] | None:
    architectures = config.get("architectures") or ()
    if any("ForImageClassification" in a for a in architectures):
        return "image-classifier"
    if any(a.endswith("ForObjectDetection") for a in architectures):
        return "detector"
    if "vision_config" in config and any(
        a.endswith(("ForConditionalGeneration", "ForImageTextToText")) for a in architectures
    ):
        return "chat"
    return None


def _has_chat_template(folder: Path) -> bool:
    # transformers >= 4.43 may write the template to its own file instead of the config.
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(tokenizer_config, dict) and tokenizer_config.get("chat_template"))


# -- licence ---------------------------------------------------------------------------------


def card_license(readme: Path) -> str | None:
    """The licence a model card's YAML front matter declares, normalised (see ModelProfile)."""
    if not readme.is_file():
        return None
    # The Hub's own parser, so a card reads here as it reads on the Hub.
    from huggingface_hub.repocard import metadata_load

    try:
        meta = metadata_load(readme)
    except Exception:  # unreadable file or YAML: a licence we cannot read is unknown
        return None
    if not meta:
        return None
    return normalise_license(meta.get("license"), meta.get("license_name"))


def normalise_license(license_id: Any, license_name: Any = None) -> str | None:
    """``apache-2.0`` -> ``Apache-2.0``; ``other`` -> the card's ``license_name``; ``unknown`` or
    a missing or non-string id -> ``None``."""
    ident = license_id.strip() if isinstance(license_id, str) else ""
    if ident.lower() in ("", "unknown"):
        return None
    if ident.lower() == "other":
        named = license_name.strip() if isinstance(license_name, str) else ""
        return named or "other"
    return _SPDX.get(ident.lower(), ident)


def hub_license(repo_id: str, revision: str | None = None, *, timeout_s: float = 5.0) -> str | None:
    """The licence the Hugging Face Hub records for ``repo_id``, normalised as a card's.

    ``None`` when offline (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``), when the Hub cannot
    be reached, or on any error: the licence is a detail of the profile, never a reason for a
    call to fail.
    """
    if _hub_offline():
        return None
    try:
        from huggingface_hub import model_info

        card = model_info(repo_id, revision=revision, timeout=timeout_s).card_data
        if card is None:
            return None
        return normalise_license(card.get("license"), card.get("license_name"))
    except Exception:  # any failure means "unknown", by contract
        return None


def _hub_offline() -> bool:
    # Read the environment now: huggingface_hub reads HF_HUB_OFFLINE once, at its import.
    # TRANSFORMERS_OFFLINE is the older spelling users still set.
    from .._offline import offline

    if offline():
        return True
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return True  # no client, no Hub
    return bool(constants.HF_HUB_OFFLINE)
