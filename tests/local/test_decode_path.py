"""The fast decode path (static KV cache, compiled step): the ``compile`` setting, which path a
call takes and says it took, the same greedy text as eager, and warm-up time kept in ``load_s``.

Compiling even the tiny model takes about a minute on this CPU, so the tests that run the static
cache set ``fast_decode.COMPILE_STEP = False``: the static cache, the decode thread, the cache
lengths and the records run as on CUDA, with the step left uncompiled (transformers'
``disable_compile``). What compiling adds is measured on a GPU by benchmarks/gpu_decode.py."""

from __future__ import annotations

import importlib.util
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import fmgate

from .conftest import TinyFactory

if TYPE_CHECKING:
    from fmgate._local.loading import LoadedModel
    from fmgate.backends.transformers import TransformersBackend

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("torch", "transformers")),
    reason='needs the local extra: pip install "fmgate[local]"',
)

PROMPTS = ["Hello there", "The small cat sat by the window and", "Say hi"]


def _backend(model: fmgate.Model) -> TransformersBackend:
    from fmgate.backends.transformers import TransformersBackend

    backend = model.backend
    assert isinstance(backend, TransformersBackend)
    return backend


@pytest.fixture
def uncompiled(monkeypatch: pytest.MonkeyPatch) -> None:
    from fmgate._local import fast_decode

    monkeypatch.setattr(fast_decode, "COMPILE_STEP", False)


@pytest.fixture
def own_llama(tiny: TinyFactory, tmp_path: Path) -> Path:
    """A copy of the tiny llama in a folder of its own: a model no other test has loaded, so
    its warm shapes start empty."""
    folder = tmp_path / "llama"
    shutil.copytree(tiny("llama"), folder)
    return folder


class Spy:
    """Wraps ``model.generate``: the static-cache arguments and thread of each call."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.calls: list[tuple[str | None, str]] = []
        self._generate = loaded.model.generate

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((kwargs.get("cache_implementation"), threading.current_thread().name))
        return self._generate(*args, **kwargs)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch, tiny: TinyFactory) -> Iterator[Spy]:
    """The spy on the shared tiny llama's ``generate``."""
    model = fmgate.load(f"transformers:{tiny('llama')}", device="cpu")
    loaded = _backend(model).loaded
    watcher = Spy(loaded)
    monkeypatch.setattr(loaded.model, "generate", watcher)
    yield watcher


# -- the setting ---------------------------------------------------------------------------------


def test_compile_must_be_a_bool(tiny: TinyFactory) -> None:
    with pytest.raises(fmgate.ConfigurationError, match="'compile' must be bool"):
        fmgate.load(f"transformers:{tiny('llama')}", device="cpu", compile="yes")


def test_compile_in_fmgate_toml(tiny: TinyFactory, tmp_path: Path, uncompiled: None) -> None:
    toml = tmp_path / "fmgate.toml"
    spec = f'backend = "transformers"\nmodel = "{tiny("llama")}"\ndevice = "cpu"\n'
    toml.write_text(f"[models.fast]\n{spec}compile = true\n[models.bad]\n{spec}compile = 1\n")
    assert _backend(fmgate.load("fast", config=toml)).decode_plan.static
    with pytest.raises(fmgate.ConfigurationError, match="'compile'"):
        fmgate.load("bad", config=toml)


def test_read_setting() -> None:
    from fmgate._local.fast_decode import read_setting

    assert read_setting({}) is None and read_setting({"compile": None}) is None
    assert read_setting({"compile": True}) is True and read_setting({"compile": False}) is False
    with pytest.raises(fmgate.ConfigurationError, match="'compile' must be true or false"):
        read_setting({"compile": "true"})


def test_default_is_eager_on_cpu_and_static_on_cuda(
    tiny: TinyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmgate._local import fast_decode

    loaded = _backend(fmgate.load(f"transformers:{tiny('llama')}", device="cpu")).loaded
    assert fast_decode.plan_for(loaded, None) == fast_decode.EAGER
    assert fast_decode.plan_for(loaded, False) == fast_decode.EAGER
    assert fast_decode.plan_for(loaded, True).static
    monkeypatch.setattr(loaded, "device", "cuda:0")  # what the plan reads of the device
    assert fast_decode.plan_for(loaded, None).static
    assert fast_decode.plan_for(loaded, False) == fast_decode.EAGER


def test_encoders_and_vision_models_stay_eager(tiny: TinyFactory) -> None:
    from fmgate._local import fast_decode

    bert = _backend(fmgate.load(f"transformers:{tiny('bert')}", device="cpu")).loaded
    assert fast_decode.plan_for(bert, True) == fast_decode.EAGER  # nothing to decode
    llava = _backend(fmgate.load(f"transformers:{tiny('llava')}", device="cpu")).loaded
    assert fast_decode.plan_for(llava, True) == fast_decode.DecodePlan(False, "vision")


def test_cache_length_is_a_power_of_two_within_the_window_and_never_shrinks(
    own_llama: Path,
) -> None:
    from fmgate._local.fast_decode import cache_len

    loaded = _backend(fmgate.load(f"transformers:{own_llama}", device="cpu")).loaded
    assert loaded.profile.context_window == 2048
    assert cache_len(loaded, 10) == 1024  # the smallest cache
    assert cache_len(loaded, 1025) == 2048  # the next power of two
    assert cache_len(loaded, 600) == 2048  # never shorter than the last: no new shape
    assert cache_len(loaded, 3000) == 4096  # past the window: the prompt check refuses it


# -- calls ---------------------------------------------------------------------------------------


def test_cpu_default_runs_eager(tiny: TinyFactory, spy: Spy) -> None:
    model = fmgate.load(f"transformers:{tiny('llama')}", device="cpu", continuous_batching=False)
    assert not _backend(model).decode_plan.static
    model.generate("Hello there", max_tokens=4)
    assert spy.calls == [(None, threading.current_thread().name)]


def test_static_path_gives_the_eager_text(tiny: TinyFactory, spy: Spy, uncompiled: None) -> None:
    eager = fmgate.load(f"transformers:{tiny('llama')}", device="cpu", continuous_batching=False)
    fast = fmgate.load(
        f"transformers:{tiny('llama')}", device="cpu", compile=True, continuous_batching=False
    )
    for prompt in PROMPTS:
        want = eager.generate(prompt, max_tokens=12)
        got = fast.generate(prompt, max_tokens=12)
        assert (got.text, got.finish_reason, got.usage) == (
            want.text,
            want.finish_reason,
            want.usage,
        )
    paths = [cache for cache, _ in spy.calls]
    assert paths == [None, "static"] * len(PROMPTS)
    assert all(thread.startswith("fmgate-decode") for cache, thread in spy.calls if cache)


def test_static_path_batches_and_streams_with_stop_strings(
    tiny: TinyFactory, spy: Spy, uncompiled: None
) -> None:
    eager = fmgate.load(f"transformers:{tiny('llama')}", device="cpu", continuous_batching=False)
    fast = fmgate.load(
        f"transformers:{tiny('llama')}", device="cpu", compile=True, continuous_batching=False
    )
    want = [r.text for r in eager.generate_many(PROMPTS, max_tokens=10)]
    assert [r.text for r in fast.generate_many(PROMPTS, max_tokens=10)] == want
    whole = eager.generate(PROMPTS[1], max_tokens=16).text
    stop = whole[len(whole) // 2 : len(whole) // 2 + 2]
    cut = eager.generate(PROMPTS[1], max_tokens=16, stop=[stop])
    stream = fast.stream(PROMPTS[1], max_tokens=16, stop=[stop])
    assert "".join(chunk.text for chunk in stream) == cut.text
    assert stream.response.finish_reason == cut.finish_reason == "stop"
    assert ("static", "fmgate-decode_0") in spy.calls


def test_records_say_which_path_ran(tiny: TinyFactory, uncompiled: None) -> None:
    eager = fmgate.load(f"transformers:{tiny('llama')}", device="cpu", continuous_batching=False)
    fast = fmgate.load(
        f"transformers:{tiny('llama')}", device="cpu", compile=True, continuous_batching=False
    )
    assert eager.generate("Hi", max_tokens=2).record.params["decode_path"] == "eager"
    assert fast.generate("Hi", max_tokens=2).record.params["decode_path"] == "static_compiled"
    stream = fast.stream("Hi", max_tokens=2)
    list(stream)
    assert stream.record.params["decode_path"] == "static_compiled"
    for response in fast.generate_many(PROMPTS, max_tokens=2):
        assert response.record.params["decode_path"] == "static_compiled"
        assert "decode_fallback" not in response.record.params


@pytest.mark.skipif(not importlib.util.find_spec("llguidance"), reason="needs llguidance")
def test_grammar_falls_back_to_eager_and_says_so(
    tiny: TinyFactory, spy: Spy, uncompiled: None
) -> None:
    fast = fmgate.load(
        f"transformers:{tiny('llama')}", device="cpu", compile=True, continuous_batching=False
    )
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    response = fast.generate("A number", max_tokens=24, output=schema)
    assert response.record.params["decode_path"] == "eager"
    assert response.record.params["decode_fallback"] == "grammar"
    assert spy.calls[-1][0] is None


# -- warm-up -------------------------------------------------------------------------------------


def test_warm_up_time_is_load_s_not_latency(
    own_llama: Path, monkeypatch: pytest.MonkeyPatch, uncompiled: None
) -> None:
    """At load, the batch-1 shape is warmed (in load_s); a call of a new shape warms it first,
    and that time is the call's load_s, not its total_s; a warm shape is not warmed again."""
    from fmgate._local import fast_decode

    warmed: list[tuple[int, int]] = []

    def slow_warm(plan: Any, loaded: LoadedModel, rows: int, length: int) -> float:
        if (rows, length) in warmed:
            return 0.0
        warmed.append((rows, length))
        time.sleep(0.5)
        return 0.5

    monkeypatch.setattr(fast_decode, "warm", slow_warm)
    t0 = time.perf_counter()
    model = fmgate.load(
        f"transformers:{own_llama}", device="cpu", compile=True, continuous_batching=False
    )
    assert time.perf_counter() - t0 >= 0.5 and warmed == [(1, 1024)]
    first = model.generate("Hello there", max_tokens=4).record.latency
    assert first.load_s is not None and first.load_s >= 0.5
    assert first.total_s is not None and first.total_s < 0.5
    second = model.generate("Hello there", max_tokens=4).record.latency
    assert second.load_s is None and warmed == [(1, 1024)]
    t0 = time.perf_counter()
    records = [r.record for r in model.generate_many(PROMPTS, max_tokens=4)]
    wall = time.perf_counter() - t0
    assert warmed == [(1, 1024), (3, 1024)]
    # the batch's warm-up is one cold start, reported once, by the record that takes it
    (cold,) = [r.latency for r in records if r.latency.load_s is not None]
    assert cold.load_s is not None and cold.load_s >= 0.5
    assert cold.total_s is not None and cold.total_s < wall - 0.4


def test_warm_runs_the_static_generate_once_per_shape(
    own_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real warm-up (compile off: a generate with the static cache) on a new shape only."""
    from fmgate._local import fast_decode

    loaded = _backend(fmgate.load(f"transformers:{own_llama}", device="cpu")).loaded
    watcher = Spy(loaded)
    monkeypatch.setattr(loaded.model, "generate", watcher)
    plan = fast_decode.DecodePlan(True)
    uncompiled_plan = fast_decode.DecodePlan(True, compiled=False)
    assert fast_decode.warm(uncompiled_plan, loaded, 2, 1024) == 0.0 and watcher.calls == []
    monkeypatch.setattr(fast_decode, "static_kwargs", lambda *a: {"cache_implementation": "static"})
    assert fast_decode.warm(plan, loaded, 2, 1024) > 0.0
    assert fast_decode.warm(plan, loaded, 2, 1024) == 0.0
    assert watcher.calls == [("static", threading.current_thread().name)]


def test_static_kwargs_compile_on_cuda_and_when_asked_on_cpu(
    tiny: TinyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What generate() gets: the static cache of the chosen length, and transformers' compile
    config (told to compile off CUDA too, where transformers would otherwise skip it)."""
    from fmgate._local import fast_decode

    loaded = _backend(fmgate.load(f"transformers:{tiny('llama')}", device="cpu")).loaded
    on_cpu = fast_decode.static_kwargs(fast_decode.DecodePlan(True), loaded, 2048)
    assert on_cpu["cache_implementation"] == "static" and on_cpu["max_cache_len"] == 2048
    assert on_cpu["compile_config"]._compile_all_devices is True
    uncompiled = fast_decode.static_kwargs(fast_decode.DecodePlan(True, None, False), loaded, 1024)
    assert uncompiled == {
        "cache_implementation": "static",
        "max_cache_len": 1024,
        "disable_compile": True,
    }
    monkeypatch.setattr(loaded, "device", "cuda:0")
    on_cuda = fast_decode.static_kwargs(fast_decode.DecodePlan(True), loaded, 1024)
    assert not on_cuda["compile_config"]._compile_all_devices  # transformers' own default
    assert on_cuda["compile_config"].mode == "reduce-overhead"  # CUDA graphs


def _failing_warm(*args: Any) -> float:
    raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")


def test_a_failed_compile_asked_for_fails_the_load(
    own_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmgate._local import fast_decode

    monkeypatch.setattr(fast_decode, "warm", _failing_warm)
    with pytest.raises(fmgate.ConfigurationError, match="set compile = false") as caught:
        fmgate.load(
            f"transformers:{own_llama}", device="cpu", compile=True, continuous_batching=False
        )
    assert "No working C++ compiler" in str(caught.value)


def test_a_failed_default_compile_decodes_eagerly_and_says_so(
    own_llama: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On CUDA the fast path is only the default: a compile that fails leaves the model eager."""
    from fmgate._local import fast_decode

    loaded = _backend(fmgate.load(f"transformers:{own_llama}", device="cpu")).loaded
    monkeypatch.setattr(fast_decode, "warm", _failing_warm)
    with caplog.at_level("WARNING", logger="fmgate"):
        plan = fast_decode.warm_at_load(fast_decode.DecodePlan(True), loaded, asked=False)
    assert plan == fast_decode.DecodePlan(False, "compile_failed")
    assert fast_decode.choose(plan, constrained=False) == ("eager", "compile_failed")
    assert "decodes eagerly" in caplog.text and "No working C++ compiler" in caplog.text
