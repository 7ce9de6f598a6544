"""The diffusers backend (``diffusers:``): text-to-image pipelines inside this process.

    m = load("diffusers:stabilityai/sd-turbo", device="auto", dtype="auto")
    m = load("diffusers:./models/tiny-sd")
    m.generate_image("a cat", size="512x512", seed=1, steps=1, diffusers_guidance_scale=0.0)

The model id is a pipeline folder (``model_index.json`` and one folder per component, as
``save_pretrained`` writes it) or a Hugging Face repo id, downloaded with diffusers' own
``DiffusionPipeline.download`` (only the files the pipeline loads; ``HF_HUB_OFFLINE=1``: the local
cache only) and pinned by ``revision=`` (the resolved commit is the record's ``revision``).
Settings: ``device`` and ``dtype`` (as the transformers backend reads them: ``auto`` is CUDA in
bfloat16 or float16, else MPS or CPU in float32), ``revision``, ``variant`` (``"fp16"``: the
half-precision files many Hub repos ship beside their float32 ones, half the download),
``license``, ``progress`` (the pipeline's per-step progress bar, for a person watching; off by
default) and the cost settings of :mod:`fmgate._local.energy`.

A call runs the pipeline once: ``prompt``, ``negative_prompt``, ``num_images_per_prompt=n``,
``height``/``width``, ``num_inference_steps`` (the pipeline's default where ``steps`` is not
given: the record says which ran), a ``torch.Generator`` on the pipeline's device seeded with
``seed`` (same seed, same pixels on the same device), and the pipeline's other arguments given
with the ``diffusers_`` prefix (``diffusers_guidance_scale=7.5``). Sizes are multiples of the
VAE's factor (8 for Stable Diffusion); another is refused, naming the nearest valid ones. One
call at a time per pipeline (a lock): a pipeline's scheduler is per-pipeline state, and it keeps
each call's metered energy its own. Loads of the same pipeline (folder, revision, variant, device,
dtype) share it in memory, and its lock, while one of them holds it. The access profile counts
the parameters of every component (UNet, VAE, text encoders) from their safetensors headers.
"""

from __future__ import annotations

import inspect
import json
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from .._errors import (
    ConfigurationError,
    InvalidRequestError,
)
from .._image_gen import ImageRequest, ImageResult
from .._local.energy import SETTINGS as COST_SETTINGS
from .._local.loading import (
    QUIET,
    Source,
    dtype_name,
    hardware_name,
    hub_download,
    hub_offline,
    looks_local,
    peak_memory_bytes,
    pick_device,
    pick_dtype,
)
from .._local.profile import card_license, count_parameters, read_header, shard_files
from .._record import Access
from ._base import BackendConfig
from ._in_process import InProcessBackend

__all__ = ["DiffusersBackend"]

# What fmgate sets itself on every call: a diffusers_<name> setting may not override them.
_SET_BY_FMGATE = frozenset(
    {
        "prompt",
        "negative_prompt",
        "num_images_per_prompt",
        "height",
        "width",
        "num_inference_steps",
        "generator",
        "output_type",
        "return_dict",
    }
)
_WEIGHT_NAMES = ("diffusion_pytorch_model", "model")


class DiffusersBackend(InProcessBackend):
    """A diffusers text-to-image pipeline (Stable Diffusion 1.x/2.x/XL, SD-Turbo...)."""

    wire = "diffusers"
    library = "diffusers"
    settings: ClassVar[dict[str, tuple[type, ...]]] = {
        "device": (str,),
        "dtype": (str,),
        "revision": (str,),
        "variant": (str,),
        "license": (str,),
        "progress": (bool,),
        **COST_SETTINGS,
    }

    def __init__(self, config: BackendConfig) -> None:
        options = config.options
        super().__init__(config, {"image"}, pick_device(str(options.get("device", "auto"))))
        self._dtype = pick_dtype(str(options.get("dtype", "auto")), self._device)
        variant = options.get("variant")
        self._source = _resolve(config.model, options.get("revision"), variant)
        shared = _shared(self._source, self._device, self._dtype, variant)
        self._shared = shared  # held: the cache keeps the pipeline only while a backend does
        self.pipeline = shared.pipeline
        self._lock = shared.lock
        self._progress = bool(options.get("progress", False))
        arguments = inspect.signature(self.pipeline.__call__).parameters
        self._named = {n for n, p in arguments.items() if p.kind is not p.VAR_KEYWORD}
        default = arguments.get("num_inference_steps")
        # what the pipeline runs when steps is not given, so the record can say it
        self._default_steps = (
            default.default if default and isinstance(default.default, int) else None
        )
        self._factor = int(getattr(self.pipeline, "vae_scale_factor", 8))
        self._weights = _components(self._source.path, variant)
        self._license: str | None = None
        self._license_read = False

    @property
    def revision(self) -> str | None:
        """The Hub commit the weights came from; None for a local folder."""
        return self._source.revision

    def access(self) -> Access:
        return self.local_access(
            license=self._read_license(),
            parameters=self._weights.parameters,
            dtype=dtype_name(self._dtype),
            weights_bytes=self._weights.bytes,
            hardware=hardware_name(self._device),
        )

    def peak_memory_bytes(self) -> int | None:
        return peak_memory_bytes(self._device)

    def generate_image(self, request: ImageRequest) -> ImageResult:
        import torch

        self._check_size(request.width, request.height)
        extra = self._check_extra(request.extra)
        steps = request.steps if request.steps is not None else self._default_steps
        if request.negative_prompt is not None:
            extra["negative_prompt"] = self._negative(request.negative_prompt)
        generator = None
        if request.seed is not None:
            generator = torch.Generator(self._device).manual_seed(request.seed)
        with self._lock, torch.inference_mode():
            # per call: backends sharing the pipeline may want the bar differently
            self.pipeline.set_progress_bar_config(disable=not self._progress)
            output = self.pipeline(
                prompt=request.prompt,
                num_images_per_prompt=request.n,
                height=request.height,
                width=request.width,
                num_inference_steps=steps,
                generator=generator,
                output_type="pil",
                **extra,
            )
        return ImageResult(list(output.images), model_id=self._source.name, steps=steps)

    def _check_size(self, width: int, height: int) -> None:
        f = self._factor
        if width % f == 0 and height % f == 0:
            return
        low = f"{max(f, width // f * f)}x{max(f, height // f * f)}"
        high = f"{-(-width // f) * f}x{-(-height // f) * f}"
        nearest = f"size is {low}" if low == high else f"sizes are {low} and {high}"
        raise InvalidRequestError(
            f"size {width}x{height}: this pipeline draws sizes that are multiples of {f} on each "
            f"side (its VAE's factor); the nearest valid {nearest}."
        )

    def _negative(self, negative_prompt: str) -> str:
        """A negative prompt, for a pipeline that takes one (FLUX's, for one, does not)."""
        if "negative_prompt" not in self._named:
            raise InvalidRequestError(
                f"{type(self.pipeline).__name__} takes no negative_prompt: leave it out."
            )
        return negative_prompt

    def _check_extra(self, extra: Any) -> dict[str, Any]:
        """The pipeline's own arguments, checked against its signature before it runs."""
        fixed = sorted(set(extra) & _SET_BY_FMGATE)
        if fixed:
            raise InvalidRequestError(
                f"diffusers_{fixed[0]} is set by fmgate from generate_image's own arguments "
                "(size, n, seed, steps, negative_prompt): pass those instead."
            )
        # named arguments only: Stable Diffusion's **kwargs takes deprecated callbacks and drops
        # anything else silently
        unknown = sorted(set(extra) - set(self._named))
        if unknown:
            raise InvalidRequestError(
                f"{type(self.pipeline).__name__} takes no argument {unknown[0]!r} "
                f"(from diffusers_{unknown[0]}); its arguments are "
                f"{', '.join(sorted(self._named - _SET_BY_FMGATE))}."
            )
        return dict(extra)

    def _read_license(self) -> str | None:
        if "license" in self.config.options:
            return str(self.config.options["license"])
        if not self._license_read:
            self._license = card_license(self._source.path / "README.md")
            if self._license is None and self._source.repo_id is not None and not hub_offline():
                from .._local.profile import hub_license

                self._license = hub_license(self._source.repo_id, self._source.revision)
            self._license_read = True
        return self._license


# -- where the pipeline is, and loading it ---------------------------------------------------


def _resolve(model: str, revision: str | None, variant: str | None) -> Source:
    """The pipeline folder: the folder itself, or the Hub snapshot of a repo id."""
    if looks_local(model):
        if revision is not None:
            raise InvalidRequestError(
                f"revision={revision!r} applies to Hugging Face repo ids; {model!r} is a local "
                "folder (check out the revision there instead)."
            )
        source = Source(Path(model).expanduser().resolve())
    else:
        source = _download(model, revision, variant)
    if not (source.path / "model_index.json").is_file():
        raise ConfigurationError(
            f"{source.path} has no model_index.json: it is not a diffusers pipeline folder "
            "(save one with pipeline.save_pretrained(folder))."
        )
    return source


def _download(repo_id: str, revision: str | None, variant: str | None) -> Source:
    """The pipeline's files from the Hub (or its cache), as diffusers selects them: only what
    the pipeline loads, not a repository's every checkpoint."""
    from diffusers import DiffusionPipeline

    def fetch(offline: bool) -> str:
        with QUIET:
            folder: str = DiffusionPipeline.download(
                repo_id, revision=revision, variant=variant, local_files_only=offline
            )
        return folder

    return hub_download(repo_id, revision, fetch)


class _Shared:
    """One pipeline in memory and the lock that runs one call at a time on it, shared by every
    backend that loaded the same folder, revision, variant, device and dtype."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.lock = threading.Lock()


_Key = tuple[str, str | None, str | None, str, str]
# Held weakly, as the transformers backend's models are: a pipeline whose last backend is gone
# frees its memory (comparing several pipelines one after the other must not keep them all).
_CACHE: weakref.WeakValueDictionary[_Key, _Shared] = weakref.WeakValueDictionary()
_CACHE_LOCK = threading.Lock()


def _shared(source: Source, device: str, dtype: Any, variant: str | None) -> _Shared:
    key: _Key = (str(source.path), source.revision, variant, device, dtype_name(dtype))
    with _CACHE_LOCK:  # two loads at once of any pipelines load one after the other
        shared = _CACHE.get(key)
        if shared is None:
            shared = _Shared(_load(source.path, device, dtype, variant))
            _CACHE[key] = shared
        return shared


def _load(folder: Path, device: str, dtype: Any, variant: str | None) -> Any:
    import diffusers

    pipelines: Any = diffusers.DiffusionPipeline
    try:
        with QUIET, _no_diffusers_bars():
            pipeline = pipelines.from_pretrained(
                folder, variant=variant, **{_dtype_argument(): dtype}
            )
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ConfigurationError(
            f"diffusers could not load the pipeline in {folder}: {exc}"
        ) from exc
    return pipeline.to(device)


def _dtype_argument() -> str:
    """``dtype`` where diffusers takes it (0.42 warns that ``torch_dtype`` is deprecated); older
    versions read only ``torch_dtype`` and would ignore ``dtype`` silently."""
    from importlib.metadata import version

    major, minor = (int(part) for part in version("diffusers").split(".")[:2])
    return "dtype" if (major, minor) >= (0, 42) else "torch_dtype"


@contextmanager
def _no_diffusers_bars() -> Iterator[None]:
    """diffusers' "Loading pipeline components" bar is noise in a log; put back what was set."""
    from diffusers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


# -- what the weights say ----------------------------------------------------------------------


class _Weights:
    """The parameters and bytes on disk of every component that has weights."""

    def __init__(self, parameters: int | None, size: int | None) -> None:
        self.parameters = parameters
        self.bytes = size


def _components(folder: Path, variant: str | None) -> _Weights:
    """Sum over the components model_index.json names (unet, vae, text_encoder(s)...), each
    from its own safetensors headers; unknown (None) if one cannot be read, or holds its weights
    in another format (pickled ``.bin``: not opened here)."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        parameters = size = 0
        for name in sorted(k for k in index if not k.startswith("_")):
            files = _weight_files(folder / name, variant)
            if files is None:
                return _Weights(None, None)
            tensors: dict[str, Any] = {}
            for path in files:
                tensors.update(read_header(path))
                size += path.stat().st_size
            parameters += count_parameters(tensors, _config(folder / name)) if files else 0
    except (OSError, ValueError, AttributeError):
        return _Weights(None, None)
    return _Weights(parameters, size)


def _weight_files(component: Path, variant: str | None) -> list[Path] | None:
    """The safetensors files a loader reads for one component (diffusers' names: the variant
    before the extension), else its index's shards; none for a component without weights (the
    scheduler, the tokenizer); None for weights only in a pickled ``.bin``."""
    for base in _WEIGHT_NAMES:
        single = component / (f"{base}.{variant}.safetensors" if variant else f"{base}.safetensors")
        if single.is_file():
            return [single]
        index = (
            f"{base}.safetensors.index.{variant}.json"
            if variant
            else f"{base}.safetensors.index.json"
        )
        if (component / index).is_file():
            return shard_files(component / index)
    return None if component.is_dir() and any(component.glob("*.bin")) else []


def _config(component: Path) -> dict[str, Any]:
    path = component / "config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return config if isinstance(config, dict) else {}
