"""The fast decode path: transformers' static KV cache with a compiled decoding step.

Plain ``generate`` grows its KV cache step by step and runs the forward pass op by op; on a GPU a
batch-1 step then waits on the Python and kernel-launch overhead, not on memory bandwidth. With
``cache_implementation="static"`` the cache is allocated once at a fixed size, so every decoding
step has the same shapes and ``generate`` runs it through ``torch.compile`` (``CompileConfig``'s
default ``mode="reduce-overhead"``: CUDA graphs replay the whole step).

When it runs (the load setting ``compile``; ``record.params["decode_path"]`` says which ran):

- ``compile`` left out: the fast path on CUDA, eager (transformers' dynamic cache) on CPU and MPS,
  where compiling costs minutes and gains little.
- ``compile = true``: the fast path on any device; ``compile = false``: always eager. Off CUDA,
  plain calls of a model that batches continuously join its continuous batch instead, whose
  decoding step is then compiled too (``dynamic_compiled``: :mod:`fmgate._local.continuous`);
  on CUDA they take this path.
- A call the static cache cannot serve runs eager and says why in ``params["decode_fallback"]``:
  ``grammar`` (constrained decoding: its per-token mask, not the forward pass, sets the pace),
  ``vision`` (a vision-language model's image prefill), ``model`` (an architecture transformers
  cannot compile with a static cache), ``quantized`` (a quantizer that does not compile),
  ``compile_failed`` (compiling failed at load where the fast path was only the device's
  default, logged as a warning; with ``compile = true`` the load fails instead).

Compiling happens before the calls it would slow down, so its time is a cold start
(``latency.load_s``), never a call's latency: at load, one short generate at batch 1 compiles and
warms the step. A later call whose shape is new (another batch size, or a longer cache) first
runs a short warm-up generate of that shape, reported as that call's ``load_s`` too. The cache
length is rounded up to a power of two (at least ``MIN_CACHE_LEN``, at most the context window)
and never shrinks, so the shapes, and the compilations, stay few.

All fast-path generation of one model runs on one thread of its own: CUDA graph trees keep
per-thread state (each thread records its own graphs, in its own memory pool; before torch 2.13
another thread failed outright: pytorch/pytorch#123177), while fmgate's calls arrive on many.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch

from .._errors import ConfigurationError
from .loading import LoadedModel, logger

DecodePath = Literal["eager", "static_compiled", "dynamic_compiled"]
# the load setting, in fmgate.toml or load(...)
SETTING = "compile"
# the smallest static cache: a chat prompt and the default 256 new tokens fit without regrowing
MIN_CACHE_LEN = 1024
# decoding steps of a warm-up: CUDA graph trees run a new shape eagerly, record it, then replay
WARM_TOKENS = 4
# Tests set this False: the static-cache path runs without torch.compile (see DecodePlan).
COMPILE_STEP = True
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class DecodePlan:
    """The decode path of one loaded model: ``static`` when its calls take the fast path;
    ``off_because`` names why a fast path that was asked for cannot run on this model.

    ``compiled`` is False only where ``COMPILE_STEP`` is (fmgate's own tests): the static cache
    runs eagerly, because compiling even a tiny model takes a minute on a small CPU."""

    static: bool
    off_because: str | None = None
    compiled: bool = True


EAGER = DecodePlan(False)


def read_setting(options: Mapping[str, Any]) -> bool | None:
    """The ``compile`` setting: True, False, or None when left out (chosen by device)."""
    value = options.get(SETTING)
    if value is None or isinstance(value, bool):
        return value
    raise ConfigurationError(
        f"'{SETTING}' must be true or false (or left out: on for CUDA, off elsewhere), "
        f"not {type(value).__name__}."
    )


def plan_for(loaded: LoadedModel, setting: bool | None) -> DecodePlan:
    """The model's decode path: the setting, else on exactly when the model is on CUDA."""
    wanted = setting if setting is not None else loaded.device.startswith("cuda")
    if not wanted or not _generates(loaded):
        return EAGER
    reason = _unsupported(loaded)
    return DecodePlan(False, off_because=reason) if reason else DecodePlan(True, None, COMPILE_STEP)


def _generates(loaded: LoadedModel) -> bool:
    profile = loaded.profile
    return not (profile.is_encoder or profile.is_classifier or profile.vision in _NOT_CHAT)


_NOT_CHAT = ("image-classifier", "detector")


def _unsupported(loaded: LoadedModel) -> str | None:
    model = loaded.model
    if loaded.profile.vision == "chat":
        return "vision"
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and not getattr(quantizer, "is_compileable", False):
        return "quantized"
    supports = getattr(model, "_supports_default_dynamic_cache", lambda: False)
    if not getattr(model, "_can_compile_fullgraph", False) or not supports():
        return "model"
    return None


def choose(plan: DecodePlan, *, constrained: bool) -> tuple[DecodePath, str | None]:
    """This call's path and, when the fast path was asked for but cannot run, why."""
    if not plan.static:
        return "eager", plan.off_because
    if constrained:
        return "eager", "grammar"
    return "static_compiled", None


def record_params(path: DecodePath, reason: str | None) -> dict[str, str]:
    """What the record's ``params`` say about the path."""
    return {"decode_path": path} | ({"decode_fallback": reason} if reason else {})


# -- generate() arguments -------------------------------------------------------------------------


def cache_len(loaded: LoadedModel, needed: int) -> int:
    """The static cache's length for ``needed`` positions: a power of two, at least
    MIN_CACHE_LEN, at most the context window, and never shorter than the model's last one (the
    cache is reallocated at most a few times, and each length compiles once)."""
    before: int = loaded.memo.get(_LENGTH, 0)
    length = max(cache_len_for(needed, loaded.profile.context_window), before)
    loaded.memo[_LENGTH] = length
    return length


def cache_len_for(needed: int, window: int | None) -> int:
    """A power of two holding ``needed`` positions, at least MIN_CACHE_LEN, within ``window``."""
    length = max(MIN_CACHE_LEN, 1 << max(0, needed - 1).bit_length())
    return min(length, window) if window is not None and needed <= window else length


_LENGTH = "static-cache-len"
_WARM = "static-warm-shapes"
_THREAD = "static-decode-thread"


def static_kwargs(plan: DecodePlan, loaded: LoadedModel, length: int) -> dict[str, Any]:
    """``generate`` arguments for the static cache of ``length`` and its compiled step."""
    from transformers import CompileConfig

    kwargs: dict[str, Any] = {"cache_implementation": "static", "max_cache_len": length}
    if not plan.compiled:
        kwargs["disable_compile"] = True
        return kwargs
    config: Any = CompileConfig()
    if not loaded.device.startswith("cuda"):  # transformers compiles on CUDA only unless told
        config._compile_all_devices = True
    kwargs["compile_config"] = config
    return kwargs


# -- warm-up and the decode thread ----------------------------------------------------------------


def warm(plan: DecodePlan, loaded: LoadedModel, batch_size: int, length: int) -> float:
    """Compile and warm the step for ``batch_size`` rows and a cache of ``length``, unless done
    already; the seconds it took (0.0 when the shape was warm). Runs on the decode thread."""
    shapes: set[tuple[int, int]] = loaded.memo.setdefault(_WARM, set())
    if not plan.compiled or (batch_size, length) in shapes:
        return 0.0
    t0 = time.perf_counter()
    token = loaded.tokenizer.pad_token_id or 0
    ids = torch.full((batch_size, 8), int(token), dtype=torch.long, device=loaded.device)
    kwargs = static_kwargs(plan, loaded, length)
    with torch.inference_mode():
        loaded.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=WARM_TOKENS,
            min_new_tokens=WARM_TOKENS,
            do_sample=False,
            pad_token_id=token,
            **kwargs,
        )
    shapes.add((batch_size, length))
    return time.perf_counter() - t0


def warm_at_load(plan: DecodePlan, loaded: LoadedModel, *, asked: bool) -> DecodePlan:
    """At load (its time is the load's): compile and warm the batch-1 step with the smallest
    cache. Returns the plan to use: ``plan``, or eager (``compile_failed``) when compiling
    failed where the fast path was only the device's default; with ``compile = true`` asked
    for, the failure is a ConfigurationError."""
    if not plan.static:
        return plan
    length = cache_len(loaded, 1)
    try:
        on_decode_thread(loaded, lambda: warm(plan, loaded, 1, length))
    except Exception as exc:  # torch.compile fails in many types (no compiler, no Triton...)
        why = f"{type(exc).__name__}: {str(exc)[:300]}"
        if asked:
            raise ConfigurationError(
                f"compile = true, but compiling the decoding step of {loaded.name} failed "
                f"({why}): set compile = false, or give torch.compile what it needs (a C++ "
                "compiler on CPU, Triton on CUDA)."
            ) from exc
        logger.warning(
            "compiling the decoding step of %s failed (%s): it decodes eagerly "
            "(compile = false skips the attempt)",
            loaded.name,
            why,
        )
        return DecodePlan(False, off_because="compile_failed")
    return plan


def on_decode_thread(loaded: LoadedModel, work: Callable[[], _T]) -> _T:
    """``work()`` run on the model's decode thread (see the module's docstring), its result
    or its exception returned here. The caller holds ``loaded.lock``, or is loading."""
    executor = loaded.memo.get(_THREAD)
    if executor is None:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fmgate-decode")
        loaded.memo[_THREAD] = executor
    assert isinstance(executor, ThreadPoolExecutor)
    return executor.submit(work).result()
