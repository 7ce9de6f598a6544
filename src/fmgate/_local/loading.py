"""From a model id to weights in memory: a local folder or a Hub repo, a device, a dtype, a cache.

A model id names a local folder when that path exists or it starts with ``./``, ``../``, ``/`` or
``~``; anything else is a Hugging Face repo id, resolved and downloaded with
``huggingface_hub.snapshot_download`` (only the local cache under ``HF_HUB_OFFLINE=1``). A
``.gguf`` file, or a folder holding exactly one, is dequantized once into a cached folder (see
:mod:`fmgate._local.gguf`), which then loads like any other.

Loaded models are shared inside the process: a second ``load()`` of the same folder, revision,
device and dtype reuses the weights already in memory. The cache holds them weakly, so a model
whose last user is gone frees its memory (comparing several large models one after the other
must not keep them all resident).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionError,
    InvalidRequestError,
    NotFoundError,
)

if TYPE_CHECKING:
    from .gguf import GGUFFacts
    from .profile import ModelProfile

DEVICE_CHOICES = "'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
DTYPE_CHOICES = "'auto', " + ", ".join(repr(name) for name in DTYPES)
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
_LOCAL_PREFIXES = ("./", "../", "/", "~", ".\\", "..\\")
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")
_TRUE = frozenset({"1", "true", "yes", "on"})
logger = logging.getLogger("fmgate")


@dataclass(frozen=True, slots=True)
class Source:
    """Where the weights are: the folder, for a Hub model its repo id and commit, and for a GGUF
    file (whose dequantized copy is the folder) what the file says."""

    path: Path
    repo_id: str | None = None
    revision: str | None = None
    gguf: GGUFFacts | None = None

    @property
    def name(self) -> str:
        """The repo id, the GGUF file or the folder, for messages."""
        return self.repo_id or (self.gguf.path if self.gguf else str(self.path))


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``, or fmgate's ``FMGATE_OFFLINE``) as set
    now, not at import time."""
    from .._offline import offline

    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE or offline()


def looks_local(model: str) -> bool:
    return (
        model.startswith(_LOCAL_PREFIXES)
        or model.lower().endswith(".gguf")
        or Path(model).expanduser().exists()
    )


_RESOLVED: dict[tuple[str, str | None], Source] = {}
_RESOLVED_LOCK = threading.Lock()


def resolve_source(model: str, revision: str | None = None) -> Source:
    """The folder holding ``model``: the folder itself, or the Hub snapshot of a repo id.

    A repo id is resolved once per process and revision, so a second load needs no network.
    """
    if looks_local(model):
        if revision is not None:
            raise InvalidRequestError(
                f"revision={revision!r} applies to Hugging Face repo ids; {model!r} is a local "
                "folder (check out the revision there instead)."
            )
        return _local_source(model)
    key = (model, revision)
    with _RESOLVED_LOCK:
        known = _RESOLVED.get(key)
    if known is not None:
        return known
    source = _download(model, revision)
    check_folder(source.path, model)
    with _RESOLVED_LOCK:
        _RESOLVED[key] = source
    return source


def _local_source(model: str) -> Source:
    from .gguf import dequantized, find_gguf

    gguf_file = find_gguf(model)
    if gguf_file is not None:
        folder, facts = dequantized(gguf_file)
        return Source(folder, gguf=facts)
    path = Path(model).expanduser().resolve()
    check_folder(path, model)
    return Source(path)


def check_folder(path: Path, model: str) -> None:
    """Refuse a folder that cannot hold a transformers model, naming what is missing."""
    if not path.exists():
        raise ConfigurationError(
            f"The model folder {path} does not exist (from {model!r}): check the path, or give a "
            "Hugging Face repo id such as 'Qwen/Qwen2.5-0.5B-Instruct'."
        )
    if not path.is_dir():
        raise ConfigurationError(
            f"{path} is a file; a local model is a folder or a .gguf file (from {model!r})."
        )
    if not (path / "config.json").is_file():
        raise ConfigurationError(
            f"{path} has no config.json: it is not a transformers model folder "
            "(save one with model.save_pretrained(folder) and tokenizer.save_pretrained(folder))."
        )
    if not any(next(path.glob(pattern), None) for pattern in _WEIGHT_PATTERNS):
        raise ConfigurationError(
            f"{path} has no weights (*.safetensors or pytorch_model*.bin): the download may be "
            "incomplete."
        )


def _download(repo_id: str, revision: str | None) -> Source:
    from huggingface_hub import snapshot_download

    def fetch(offline: bool) -> str:
        folder: str = snapshot_download(repo_id, revision=revision, local_files_only=offline)
        return folder

    return hub_download(repo_id, revision, fetch)


def hub_download(repo_id: str, revision: str | None, fetch: Callable[[bool], str]) -> Source:
    """The folder ``fetch(offline)`` brings from the Hub (or its cache under
    ``HF_HUB_OFFLINE``), with the Hub's failures as fmgate's errors: gated (authentication),
    missing (not found), not cached offline, not a repo id, the network. Shared by every local
    backend that downloads (transformers models, diffusers pipelines)."""
    from huggingface_hub import errors as hub_errors

    offline = hub_offline()
    try:
        folder = fetch(offline)
    except hub_errors.GatedRepoError as exc:
        raise AuthenticationError(
            f"{repo_id} is gated on the Hugging Face Hub: accept its terms on the model page and "
            "log in (hf auth login) or set HF_TOKEN.",
            provider="huggingface",
        ) from exc
    except (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError) as exc:
        raise NotFoundError(
            f"{repo_id}{_at(revision)} is not on the Hugging Face Hub (or is private), and no "
            f"local folder {repo_id!r} exists.",
            status_code=404,
            provider="huggingface",
        ) from exc
    except hub_errors.LocalEntryNotFoundError as exc:
        raise _not_cached(repo_id, revision, offline) from exc
    except (hub_errors.HFValidationError, ValueError) as exc:
        raise ConfigurationError(
            f"{repo_id!r} is neither an existing folder nor a valid Hugging Face repo id "
            f"('org/name'): {exc}"
        ) from exc
    except OSError as exc:  # HTTP and connection failures are OSErrors in huggingface_hub
        raise ConnectionError(
            f"Could not download {repo_id}{_at(revision)} from the Hugging Face Hub: {exc}",
            provider="huggingface",
        ) from exc
    path = Path(folder)
    commit = path.name if path.parent.name == "snapshots" else revision
    return Source(path, repo_id, commit)


def _at(revision: str | None) -> str:
    return f" at revision {revision!r}" if revision else ""


def _not_cached(repo_id: str, revision: str | None, offline: bool) -> ConfigurationError:
    if offline:
        return ConfigurationError(
            f"{repo_id}{_at(revision)} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 "
            "forbids downloading it: download it once online (hf download "
            f"{repo_id}{' --revision ' + revision if revision else ''}), or pass a local folder."
        )
    return ConfigurationError(
        f"{repo_id}{_at(revision)} could not be downloaded and is not in the local Hugging Face "
        "cache: check the network, or pass a local folder."
    )


# -- device and dtype ----------------------------------------------------------------------------


def pick_device(name: str) -> str:
    """``auto`` -> CUDA, then MPS, then CPU; an explicit device must exist here."""
    choice = name.strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.current_device()}"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if not _DEVICE.match(choice):
        raise InvalidRequestError(f"device must be {DEVICE_CHOICES}, not {name!r}.")
    if choice.startswith("cuda"):
        return _cuda_device(choice)
    if choice == "mps" and not torch.backends.mps.is_available():
        raise InvalidRequestError("device 'mps' is not available here: use 'cpu' or 'auto'.")
    return choice


def _cuda_device(choice: str) -> str:
    if not torch.cuda.is_available():
        raise InvalidRequestError(
            f"device {choice!r} is not available here (torch.cuda.is_available() is False): "
            "use 'cpu' or 'auto'."
        )
    index = int(choice.partition(":")[2] or torch.cuda.current_device())
    if index >= torch.cuda.device_count():
        raise InvalidRequestError(
            f"device {choice!r}: this machine has {torch.cuda.device_count()} CUDA device(s)."
        )
    return f"cuda:{index}"


def pick_dtype(name: str, device: str) -> torch.dtype:
    """``auto`` -> bfloat16 on CUDA where supported, else float16 on CUDA; float32 elsewhere."""
    choice = name.strip().lower()
    if choice == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    dtype = DTYPES.get(choice)
    if dtype is None:
        raise InvalidRequestError(f"dtype must be {DTYPE_CHOICES}, not {name!r}.")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def hardware_name(device: str) -> str:
    """``cpu``, ``mps`` or ``cuda:<device name>`` (e.g. ``cuda:NVIDIA H100 80GB HBM3``)."""
    if device.startswith("cuda"):
        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    return device


# -- third-party output ---------------------------------------------------------------------------


class _Quiet:
    """While fmgate loads a model: transformers' and huggingface_hub's progress bars off, and
    transformers' log records below ERROR sent to fmgate's debug log instead of stderr. What was
    set before is put back when the last overlapping load ends, so a user's own settings for
    those libraries hold outside fmgate's loads. (Group-specific huggingface_hub bar settings
    are not kept: its public API has no way to read them back.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._restore: Callable[[], None] | None = None

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._restore = _silence()
            self._depth += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._restore is not None:
                self._restore()
                self._restore = None


def _silence() -> Callable[[], None]:
    """Silence the bars and route the log lines; returns what puts them back."""
    from huggingface_hub import utils
    from transformers.utils import logging as hf_logging

    hub_utils: Any = utils  # its bar switches are public, but lazily exported (mypy misses them)

    bars_on = hf_logging.is_progress_bar_enabled()
    hub_bars_off = hub_utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # the Hub's bars too
    library = hf_logging.get_logger("transformers")
    handlers = list(library.handlers)
    forward = _ToDebug(handlers)
    for handler in handlers:
        library.removeHandler(handler)
    library.addHandler(forward)

    def restore() -> None:
        library.removeHandler(forward)
        for handler in handlers:
            library.addHandler(handler)
        with warnings.catch_warnings():  # HF_HUB_DISABLE_PROGRESS_BARS=1 refuses, with a warning
            warnings.simplefilter("ignore")
            if bars_on:
                hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
            if not hub_bars_off:
                hub_utils.enable_progress_bars()
        if hub_bars_off:
            hub_utils.disable_progress_bars()

    return restore


class _ToDebug(logging.Handler):
    """transformers' records to fmgate's debug log; an ERROR still goes where it went."""

    def __init__(self, handlers: list[logging.Handler]) -> None:
        super().__init__()
        self._handlers = handlers

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR:
            logger.debug("transformers: %s", record.getMessage())
            return
        for handler in self._handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


QUIET = _Quiet()


# -- loading and the in-process cache ------------------------------------------------------------


class LoadedModel:
    """One model in memory, shared by every backend that loaded it with the same settings.

    ``lock`` serialises generation on it: a transformers model is not safe for concurrent
    ``generate`` calls (the KV cache and generation config are per-model state), and one call at
    a time keeps each call's energy and busy time its own. ``tokenizer_lock`` serialises
    encoding: a fast tokenizer's padding settings are shared state (two encodes at once can fail
    with "Already borrowed"), and a call joining the continuous batch must not wait for a static
    ``generate``, which holds ``lock`` for its whole run, to tokenize its prompt. Taken inside
    ``lock`` where both are held, never the other way round.
    """

    def __init__(
        self,
        *,
        model: Any,
        tokenizer: Any,
        source: Source,
        device: str,
        dtype: torch.dtype,
        profile: ModelProfile,
        is_encoder: bool,
        processor: Any = None,
    ) -> None:
        self.model = model
        # None for an image classifier or detector, which has an image processor instead
        self.tokenizer = tokenizer
        # the image processor (image models) or the processor (vision-language models)
        self.processor = processor
        self.source = source
        self.device = device
        self.dtype = dtype
        self.profile = profile
        self.is_encoder = is_encoder
        self.lock = threading.Lock()
        self.tokenizer_lock = threading.Lock()
        # Per-model memo for generation helpers (stop-string tables): built once, reused.
        self.memo: dict[Any, Any] = {}

    @property
    def name(self) -> str:
        """The repo id, the GGUF file or the folder, for messages."""
        return self.source.name

    def __repr__(self) -> str:
        return f"<LoadedModel {self.name} on {self.device} as {dtype_name(self.dtype)}>"


_Key = tuple[str, str | None, str, str, bool]
_CACHE: weakref.WeakValueDictionary[_Key, LoadedModel] = weakref.WeakValueDictionary()
_KEY_LOCKS: dict[_Key, threading.Lock] = {}
_CACHE_LOCK = threading.Lock()


def load_model(model: str, options: Mapping[str, Any]) -> LoadedModel:
    """The model named ``model`` with the backend's ``options``, from the cache or from disk;
    the Hub's and transformers' progress bars and log lines kept out of the user's output."""
    with QUIET:
        return _cached(model, options)


def _cached(model: str, options: Mapping[str, Any]) -> LoadedModel:
    device = pick_device(str(options.get("device", "auto")))
    dtype = pick_dtype(str(options.get("dtype", "auto")), device)
    trust = bool(options.get("trust_remote_code", False))
    source = resolve_source(model, options.get("revision"))
    key: _Key = (str(source.path), source.revision, device, dtype_name(dtype), trust)
    with _CACHE_LOCK:
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with key_lock:  # two threads loading the same model load it once
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
        if cached is not None:
            return cached
        loaded = _load(source, device, dtype, trust)
        with _CACHE_LOCK:
            _CACHE[key] = loaded
        return loaded


def _load(source: Source, device: str, dtype: torch.dtype, trust: bool) -> LoadedModel:
    import transformers
    from safetensors import SafetensorError

    from .profile import read_profile

    profile = read_profile(source.path)
    if source.gguf is not None:
        from .gguf import profile_of

        profile = profile_of(profile, source.gguf)
    auto = _auto_class(transformers, profile)
    tokenizers: Any = transformers.AutoTokenizer
    processor: Any = None
    try:
        if profile.vision in ("image-classifier", "detector"):
            # the model's own preprocessing (size, crop, mean, std) from its processor config;
            # without torchvision, transformers falls back to its PIL processors
            images: Any = transformers.AutoImageProcessor
            processor = images.from_pretrained(source.path, trust_remote_code=trust)
            tokenizer = None
        elif profile.vision == "chat":
            processors: Any = transformers.AutoProcessor
            processor = processors.from_pretrained(source.path, trust_remote_code=trust)
            tokenizer = processor.tokenizer
        else:
            tokenizer = tokenizers.from_pretrained(source.path, trust_remote_code=trust)
        model = auto.from_pretrained(source.path, dtype=dtype, trust_remote_code=trust)
    except (OSError, ValueError, KeyError, ImportError, SafetensorError) as exc:
        raise ConfigurationError(
            f"transformers could not load the model in {source.path}: {exc}"
        ) from exc
    model.to(device)
    model.eval()
    if profile.vision == "image-classifier":
        from .vision import channels_last

        channels_last(model)
    if tokenizer is None:
        pass  # an image model reads pixels, not tokens
    elif profile.is_classifier:
        _pad_for_classifier(tokenizer, model)
    elif not profile.is_encoder:
        _pad_left(tokenizer, model)
    if tokenizer is not None:
        _no_length_warning(tokenizer)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        source=source,
        device=device,
        dtype=dtype,
        profile=profile,
        is_encoder=profile.is_encoder,
        processor=processor,
    )


def _auto_class(transformers: Any, profile: ModelProfile) -> Any:
    """The Auto class of the folder's head: an image classifier, a detector, a vision-language
    model, a text classifier, an encoder (embeddings), a causal LM."""
    if profile.vision == "image-classifier":
        return transformers.AutoModelForImageClassification
    if profile.vision == "detector":
        return transformers.AutoModelForObjectDetection
    if profile.vision == "chat":
        return transformers.AutoModelForImageTextToText
    if profile.is_classifier:
        return transformers.AutoModelForSequenceClassification
    return transformers.AutoModel if profile.is_encoder else transformers.AutoModelForCausalLM


def _pad_for_classifier(tokenizer: Any, model: Any) -> None:
    """A decoder's classification head reads the last token that is not padding, so a batch of
    texts needs a pad id in the model's config (GPT-2 and Llama ship none)."""
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def _no_length_warning(tokenizer: Any) -> None:
    """fmgate checks a prompt against the context window itself (ContextLengthError), so the
    tokenizer's "Token indices sequence length is longer than..." warning, printed once per
    tokenizer, is noise in a server's log: mark it as given, on this tokenizer only."""
    given = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(given, dict):
        given["sequence-length-is-longer-than-the-specified-maximum"] = True


def _pad_left(tokenizer: Any, model: Any) -> None:
    """Batched generation pads on the left, so every row's new tokens start at the same column."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        pad = model.generation_config.pad_token_id
        if pad is not None:
            tokenizer.pad_token_id = pad
        elif tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:  # any id will do: the attention mask hides padding
            tokenizer.pad_token_id = 0


def peak_memory_bytes(device: str) -> int | None:
    """The peak memory of this process so far: CUDA's peak allocation on ``cuda:<n>``, else the
    peak resident set size (:func:`~fmgate._local.energy.process_peak_memory`)."""
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated(torch.device(device)))
    from .energy import process_peak_memory

    return process_peak_memory()
