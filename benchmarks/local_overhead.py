"""fmgate's transformers backend against raw ``model.generate``, side by side in one run.

    python benchmarks/local_overhead.py [--rounds 5] [--tokens 32] [--quick]

Two offline models, both random weights (no download is possible or needed: speed does not
depend on the weights' values): ``tiny``, from ``fmgate.testing.make_tiny_model("llama")``, and
``small``, a 8-layer Llama of about 26M parameters built here with the same tokenizer. For each:

- batch 1: fmgate ``generate`` vs raw ``model.generate`` on the same chat-templated prompt,
  greedy, exactly ``--tokens`` new tokens each (min = max new tokens), in interleaved rounds;
  printed as output tokens/s and the ratio fmgate/raw (goal: >= 0.97);
- batch 8: fmgate ``generate_many`` (one forward pass per batch of 8) vs the same 8 prompts as
  sequential fmgate ``generate`` calls; printed as tokens/s and the ratio (goal: >= 4x on CPU).

Each sample runs all 8 prompts; rounds alternate the order of the three runs.

fmgate's numbers include everything it does per call: chat template, tokenizing, timing, the
cost meter and building the record.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

import fmgate  # noqa: E402
from fmgate.testing import make_tiny_model  # noqa: E402

PROMPTS = [
    "Summarise why someone would run a model locally.",
    "List three uses of a small language model.",
    "What is the capital of France?",
    "Write a haiku about latency.",
    "Explain batching in one sentence.",
    "Name a prime number larger than ten.",
    "Why does a GPU speed up matrix multiplication?",
    "Give one reason to prefer an API model.",
]


def build_small(tiny: Path, out: Path) -> Path:
    """A ~26M-parameter Llama with the tiny model's tokenizer and chat template."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny)
    base = transformers.AutoConfig.from_pretrained(tiny)
    config = transformers.LlamaConfig(
        vocab_size=base.vocab_size,
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=2048,
        bos_token_id=base.bos_token_id,
        eos_token_id=base.eos_token_id,
        pad_token_id=base.pad_token_id,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for name in ("README.md", "generation_config.json", "chat_template.jinja"):
        if (tiny / name).exists():
            (out / name).write_bytes((tiny / name).read_bytes())
    return out


class Raw:
    """The same model through transformers alone: what a user would write by hand."""

    def __init__(self, path: Path, tokens: int) -> None:
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.model.eval()
        self.tokens = tokens

    def generate(self, prompt: str) -> int:
        ids = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.inference_mode():
            out = self.model.generate(
                **ids,
                max_new_tokens=self.tokens,
                min_new_tokens=self.tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return int(out.shape[1] - ids["input_ids"].shape[1])


def timed(run: Callable[[], int]) -> float:
    """Output tokens per second of one run."""
    t0 = time.perf_counter()
    tokens = run()
    return tokens / (time.perf_counter() - t0)


def fm_one(m: fmgate.Model, prompt: str, tokens: int) -> int:
    r = m.generate(prompt, max_tokens=tokens, temperature=0, transformers_min_new_tokens=tokens)
    return r.usage.output_tokens or 0


def fm_many(m: fmgate.Model, tokens: int) -> int:
    rs = m.generate_many(
        PROMPTS, batch_size=8, max_tokens=tokens, temperature=0, transformers_min_new_tokens=tokens
    )
    return sum(r.usage.output_tokens or 0 for r in rs)


def fm_sequential(m: fmgate.Model, tokens: int) -> int:
    return sum(fm_one(m, p, tokens) for p in PROMPTS)


def bench(name: str, path: Path, args: argparse.Namespace) -> list[str]:
    raw = Raw(path, args.tokens)
    m = fmgate.load(f"transformers:{path}", device="cpu", dtype="float32")
    params = m.access.parameters
    runs: dict[str, Callable[[], int]] = {
        "raw b1": lambda: sum(raw.generate(p) for p in PROMPTS),
        "fmgate b1": lambda: fm_sequential(m, args.tokens),
        "fmgate batch8": lambda: fm_many(m, args.tokens),
    }
    for run in runs.values():  # warm-up: first-call costs are not steady state
        run()
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for key in order:
            samples[key].append(timed(runs[key]))
    med = {k: statistics.median(v) for k, v in samples.items()}
    pairs = zip(samples["fmgate b1"], samples["raw b1"], strict=True)
    paired_b1 = statistics.median(f / r for f, r in pairs)
    speedup = med["fmgate batch8"] / med["fmgate b1"]
    return [
        f"{name} ({params:,} parameters, {args.tokens} new tokens a prompt, {args.rounds} rounds)",
        f"  batch 1:  raw {med['raw b1']:8.1f} tok/s   fmgate {med['fmgate b1']:8.1f} tok/s   "
        f"fmgate/raw {med['fmgate b1'] / med['raw b1']:.3f} (paired by round {paired_b1:.3f})",
        f"  batch 8:  sequential {med['fmgate b1']:8.1f} tok/s   generate_many "
        f"{med['fmgate batch8']:8.1f} tok/s   speed-up {speedup:.2f}x",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds of 8 tokens, tiny model only"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.tokens = 2, 8
    torch.set_num_threads(os.cpu_count() or 1)
    print(
        f"{platform.platform()}, {os.cpu_count()} cpus, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, "
        f"fmgate {fmgate.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tiny = make_tiny_model("llama", Path(tmp) / "tiny")
        models: list[tuple[str, Path]] = [("tiny", tiny)]
        if not args.quick:
            models.append(("small", build_small(tiny, Path(tmp) / "small")))
        for name, path in models:
            print("\n".join(bench(name, path, args)))


if __name__ == "__main__":
    main()
