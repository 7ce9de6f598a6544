"""Continuous batching: calls join the running batch at the next step and leave it when they end,
and each gets the text, usage and finish it gets alone (greedy decoding on CPU in float32 is
deterministic). The static path (``continuous_batching=False``) is the reference."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import fmgate

from .conftest import TinyFactory

if TYPE_CHECKING:
    from fmgate._local.continuous import Engine

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("torch", "transformers")),
    reason='needs the local extra: pip install "fmgate[local]"',
)

PROMPTS = ["Hello there", "The small cat sat by the window and", "Say hi", "What is the capital?"]


@pytest.fixture(scope="module")
def pair(tiny: TinyFactory) -> tuple[fmgate.Model, fmgate.Model]:
    """The same tiny llama twice: continuous batching (the default) and static batches."""
    path = tiny("llama")
    return (
        fmgate.load(f"transformers:{path}", device="cpu"),
        fmgate.load(f"transformers:{path}", device="cpu", continuous_batching=False),
    )


def _engine(model: fmgate.Model) -> Engine:
    from fmgate.backends.transformers import TransformersBackend

    backend = model.backend
    assert isinstance(backend, TransformersBackend)
    engine = backend.continuous_engine()
    assert engine is not None
    return engine


def _at_once(model: fmgate.Model, prompts: list[str], gap_s: float, **params: Any) -> list[Any]:
    """Each prompt on its own thread, started ``gap_s`` apart: later ones join a running batch."""
    out: list[Any] = [None] * len(prompts)

    def call(i: int) -> None:
        time.sleep(i * gap_s)
        out[i] = model.generate(prompts[i], **params)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_calls_that_join_a_running_batch_get_their_own_text(
    pair: tuple[fmgate.Model, fmgate.Model],
) -> None:
    continuous, static = pair
    prompts = PROMPTS * 2
    alone = [static.generate(p, max_tokens=24) for p in prompts]
    together = _at_once(continuous, prompts, 0.005, max_tokens=24)
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.usage for r in together] == [r.usage for r in alone]
    assert [r.finish_reason for r in together] == [r.finish_reason for r in alone]
    records = [r.record for r in together]
    assert all(r.params["batching"] == "continuous" for r in records)
    assert max(r.params["batch_peak"] for r in records) > 1  # they ran beside each other
    assert all("batch_size" not in r.params for r in records)


def test_stop_strings_and_budgets_end_a_row_as_alone(
    pair: tuple[fmgate.Model, fmgate.Model],
) -> None:
    continuous, static = pair
    whole = static.generate(PROMPTS[1], max_tokens=16).text
    stop = whole[3:6]
    for params in ({"max_tokens": 16, "stop": [stop]}, {"max_tokens": 3}):
        want = static.generate(PROMPTS[1], **params)
        got = _at_once(continuous, [PROMPTS[1], PROMPTS[0]], 0.0, **params)[0]
        assert (got.text, got.finish_reason, got.usage) == (
            want.text,
            want.finish_reason,
            want.usage,
        )


def test_a_stream_gets_its_text_piece_by_piece(pair: tuple[fmgate.Model, fmgate.Model]) -> None:
    continuous, static = pair
    want = static.generate(PROMPTS[1], max_tokens=16)
    with continuous.stream(PROMPTS[1], max_tokens=16) as chunks:
        pieces = [chunk.text for chunk in chunks]
    assert "".join(pieces) == want.text and len(pieces) > 1
    assert chunks.response.usage == want.usage
    assert chunks.record.params["batching"] == "continuous"


def test_a_stream_closed_early_leaves_the_batch(pair: tuple[fmgate.Model, fmgate.Model]) -> None:
    continuous, _ = pair
    engine = _engine(continuous)
    with continuous.stream(PROMPTS[0], max_tokens=2000) as chunks:
        for _ in chunks:
            break
    assert chunks.record.outcome.finish_reason == "client_closed"
    deadline = time.monotonic() + 5
    while engine.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.in_flight == 0  # the row left at its next step: it did not run to 2000


def test_generate_many_keeps_batch_size_rows_in_flight(
    pair: tuple[fmgate.Model, fmgate.Model],
) -> None:
    """Rows join as others end; a row's clock starts when it joins (its wait for a place among
    the batch_size rows is not its latency)."""
    continuous, static = pair
    prompts = PROMPTS * 2
    started = time.perf_counter()
    done = continuous.generate_many(prompts, max_tokens=12, batch_size=2)
    elapsed = time.perf_counter() - started
    assert [r.text for r in done] == [static.generate(p, max_tokens=12).text for p in prompts]
    records = [r.record for r in done]
    assert max(r.params["batch_peak"] for r in records) == 2
    assert all(r.latency.total_s is not None and r.latency.total_s < elapsed for r in records)
    assert records[-1].started_at > records[0].started_at  # joined later


def test_cost_is_the_calls_share_of_the_machine(pair: tuple[fmgate.Model, fmgate.Model]) -> None:
    """Calls side by side split the machine's time between them: their estimated joules add up
    to no more than the process's CPU time at the default 12 W a core, where each call charged
    for its whole wall time would count the shared time several times."""
    continuous, _ = pair
    cpu_before = time.process_time()
    replies = _at_once(continuous, [PROMPTS[0]] * 4, 0.0, max_tokens=48)
    cpu_s = time.process_time() - cpu_before
    joules = [r.record.cost.energy_j for r in replies]
    assert all(j is not None and j > 0 for j in joules)
    assert sum(j for j in joules if j is not None) <= cpu_s * 12.0 * 1.05
    assert all(r.record.cost.basis == "energy_estimated" for r in replies)


def test_calls_the_batch_cannot_take_run_as_static_batches(
    pair: tuple[fmgate.Model, fmgate.Model],
) -> None:
    continuous, static = pair
    params = {"max_tokens": 8, "transformers_ignore_eos": True}
    ran = continuous.generate(PROMPTS[0], **params)
    assert "batching" not in ran.record.params
    assert ran.text == static.generate(PROMPTS[0], **params).text


def test_a_seed_gives_the_same_text_whatever_runs_beside_it(
    pair: tuple[fmgate.Model, fmgate.Model],
) -> None:
    """Each sampled row draws from a generator of its own: the same seed, alone or joining a
    batch of other sampled rows, gives the same text; another seed another; and the process's
    generator (which static generates seed and fork) is never drawn from."""
    import torch

    continuous, _ = pair
    sampled = {"max_tokens": 24, "temperature": 1.0}
    state = torch.random.get_rng_state()
    alone = continuous.generate(PROMPTS[1], seed=7, **sampled)
    assert alone.record.params["batching"] == "continuous"
    together = _at_once(continuous, [PROMPTS[1]] * 5, 0.004, **sampled)  # unseeded company
    seeded = _at_once(continuous, [PROMPTS[0], PROMPTS[1], PROMPTS[2]], 0.004, seed=7, **sampled)
    assert seeded[1].text == alone.text
    assert max(r.record.params["batch_peak"] for r in seeded) > 1
    other = continuous.generate(PROMPTS[1], seed=8, **sampled)
    assert other.text != alone.text
    assert len({r.text for r in together}) > 1  # unseeded rows draw fresh streams
    assert torch.equal(state, torch.random.get_rng_state())


def test_a_plain_call_does_not_wait_for_a_static_generate(
    pair: tuple[fmgate.Model, fmgate.Model],
) -> None:
    """A seeded call runs as a static generate, holding the model's lock for its whole run; a
    plain call started meanwhile tokenizes under a lock of its own, joins the batch and ends
    first."""
    continuous, _ = pair
    ended: list[str] = []
    static_started = threading.Event()

    def long_static() -> None:
        static_started.set()
        continuous.generate(
            PROMPTS[1], max_tokens=1500, temperature=0.8, seed=1, transformers_ignore_eos=True
        )
        ended.append("static")

    thread = threading.Thread(target=long_static)
    thread.start()
    static_started.wait()
    time.sleep(0.2)  # the static generate is under way
    plain = continuous.generate(PROMPTS[0], max_tokens=4)
    ended.append("plain")
    thread.join()
    assert ended == ["plain", "static"]
    assert plain.record.params["batching"] == "continuous"


def test_a_model_whose_cache_cannot_merge_falls_back(
    tiny: TinyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmgate._local import continuous as module

    def refuse(cache: object) -> None:
        raise module.EngineUnsupported("a sliding-window cache cannot be batched continuously")

    monkeypatch.setattr(module, "_check_cache", refuse)
    path = tiny("gpt2")
    model = fmgate.load(f"transformers:{path}", device="cpu")
    static = fmgate.load(f"transformers:{path}", device="cpu", continuous_batching=False)
    got = model.generate(PROMPTS[0], max_tokens=8)
    assert got.text == static.generate(PROMPTS[0], max_tokens=8).text
    assert "batching" not in got.record.params
    assert _engine_or_none(model) is None  # static from now on


def _engine_or_none(model: fmgate.Model) -> object:
    from fmgate.backends.transformers import TransformersBackend

    backend = model.backend
    assert isinstance(backend, TransformersBackend)
    return backend.continuous_engine()


def test_the_setting_is_checked(tiny: TinyFactory) -> None:
    with pytest.raises(fmgate.ConfigurationError, match="continuous_batching"):
        fmgate.load(f"transformers:{tiny('llama')}", continuous_batching="yes")


def test_an_idle_loop_ends_and_lets_the_weights_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decode loop's thread ends when idle, so a closed model's weights can be freed."""
    import gc
    import weakref

    from fmgate._local import continuous as module
    from fmgate.testing import make_tiny_model

    monkeypatch.setattr(module, "IDLE_EXIT_S", 0.05)
    model = fmgate.load(f"transformers:{make_tiny_model('llama', tmp_path / 'own')}", device="cpu")
    first = model.generate(PROMPTS[0], max_tokens=4)
    engine = _engine(model)
    weights = weakref.ref(engine._model)
    time.sleep(0.3)
    assert engine._thread is None  # the loop ended
    assert model.generate(PROMPTS[0], max_tokens=4).text == first.text  # a new one started
    time.sleep(0.3)
    assert engine._thread is None
    del engine
    model.close()
    del model
    gc.collect()
    assert weights() is None


def test_a_process_may_exit_while_the_batch_runs(tiny: TinyFactory, tmp_path: Path) -> None:
    """Exiting while a row is mid-generation stops the loop first: without that, torch's C++
    runtime aborted the process ("terminate called without an active exception", exit 134)."""
    import subprocess
    import sys

    script = tmp_path / "exit_now.py"
    script.write_text(
        "import threading, time, fmgate\n"
        f"m = fmgate.load('transformers:{tiny('llama')}', device='cpu')\n"
        "m.generate('Hi', max_tokens=3)\n"
        "long = lambda: m.generate('Go on', max_tokens=2000)\n"
        "threading.Thread(target=long, daemon=True).start()\n"
        "time.sleep(0.05)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FMGATE_STORE": "none"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate called" not in done.stderr


# -- compile = true on CPU: the step compiled ---------------------------------------------------


def _tokens(engine: Engine, prompts: list[list[int]], budgets: list[int]) -> list[list[int]]:
    """Each prompt as a greedy row of ``engine``, joining a few steps apart; their tokens."""
    from fmgate._local.continuous import Row

    out: list[list[int]] = [[] for _ in prompts]
    rows = [
        Row(prompt, budget, frozenset(), lambda token, got=got: got.append(token) or True)
        for prompt, budget, got in zip(prompts, budgets, out, strict=True)
    ]
    for row in rows:
        engine.submit(row)
        time.sleep(0.003)
    for row in rows:
        row.done.wait()
        assert row.error is None
    return out


# torch's compiler imports modules of its own that warn of their own deprecations
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_compiled_step_gives_the_eager_tokens_and_never_recompiles_after_warm_up(
    tiny: TinyFactory,
) -> None:
    """Rows joining and leaving and the cache growing are new shapes: warmed once at load
    (several rows, then one), they must not compile again (each compile stalls every row for
    seconds). Really compiles: about 15 s on 2 cores."""
    import torch
    from torch._dynamo.utils import counters
    from transformers import AutoModelForCausalLM

    from fmgate._local.continuous import Engine

    model = AutoModelForCausalLM.from_pretrained(tiny("llama"), attn_implementation="sdpa").eval()
    compiled = Engine(model, pad_id=0, device="cpu", compiled=True)
    eager = Engine(model, pad_id=0, device="cpu")
    compiled.warm([5, 6, 7, 8])
    frames = counters["frames"]["ok"]
    gen = torch.Generator().manual_seed(0)
    lengths = [1, 3, 9, 17, 30, 2, 12, 5]
    prompts = [torch.randint(4, 200, (n,), generator=gen).tolist() for n in lengths]
    budgets = [6, 20, 3, 14, 9, 25, 1, 11]
    want = _tokens(eager, prompts, budgets)
    assert _tokens(compiled, prompts, budgets) == want
    assert counters["frames"]["ok"] == frames  # nothing compiled after the warm-up
    compiled.close()
    eager.close()


def test_compile_true_runs_plain_calls_in_the_compiled_batch(
    tiny: TinyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CPU, compile = true compiles the continuous batch's step at load; plain calls say
    ``dynamic_compiled``, calls the batch cannot take keep the static fast path. (Here the step
    is left uncompiled, as in the fast-path tests: the test above compiles for real.)"""
    from fmgate._local import fast_decode

    monkeypatch.setattr(fast_decode, "COMPILE_STEP", False)
    model = fmgate.load(f"transformers:{tiny('llama')}", device="cpu", compile=True)
    engine = _engine(model)
    assert not engine.compiled  # COMPILE_STEP is off in this test
    plain = model.generate("Hello there", max_tokens=4).record.params
    assert (plain["decode_path"], plain["batching"]) == ("dynamic_compiled", "continuous")
    with model.stream("Hello there", max_tokens=4) as stream:
        "".join(piece.text for piece in stream)
    assert stream.record.params["decode_path"] == "dynamic_compiled"
    static = model.generate("Hello there", max_tokens=4, transformers_ignore_eos=True)
    assert static.record.params["decode_path"] == "static_compiled"
    assert "batching" not in static.record.params
    eager = fmgate.load(f"transformers:{tiny('llama')}", device="cpu")  # the same weights
    assert eager.generate("Hello there", max_tokens=4).record.params["decode_path"] == "eager"
    assert _engine(eager) is not engine  # its own batch: a step that is not compiled


def test_a_failed_compile_of_the_batch_fails_the_load(
    tiny: TinyFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shutil

    from fmgate._local import fast_decode
    from fmgate._local.continuous import Engine

    def no_compiler(self: Engine, prompt: list[int]) -> None:
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(fast_decode, "COMPILE_STEP", False)
    monkeypatch.setattr(Engine, "warm", no_compiler)
    folder = tmp_path / "llama"  # a model of its own: no engine from another test's load
    shutil.copytree(tiny("llama"), folder)
    with pytest.raises(fmgate.ConfigurationError, match="continuous batch") as caught:
        fmgate.load(f"transformers:{folder}", device="cpu", compile=True)
    assert "No working C++ compiler" in str(caught.value) and "compile = false" in str(caught.value)
