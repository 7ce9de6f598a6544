"""Median wall time of `import fmgate` in a fresh interpreter, beside the SDKs it wraps.

    python benchmarks/import_time.py [--runs 21]

Each import runs in its own subprocess; the bare interpreter start is measured too and
subtracted, so the numbers are the import alone.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

MODULES = ["fmgate", "openai", "anthropic", "genai_prices"]


def wall(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    base = statistics.median(wall("pass") for _ in range(args.runs))
    print(
        f"python {sys.version.split()[0]}: bare interpreter start {base * 1000:.0f} ms (subtracted)"
    )
    print(f"{'module':<14}{'median import ms':>18}")
    for module in MODULES:
        try:
            samples = [wall(f"import {module}") - base for _ in range(args.runs)]
        except subprocess.CalledProcessError:
            print(f"{module:<14}{'not installed':>18}")
            continue
        print(f"{module:<14}{statistics.median(samples) * 1000:>18.0f}")


if __name__ == "__main__":
    main()
