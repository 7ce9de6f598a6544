"""Decode speed on a GPU: raw transformers (eager, static cache + torch.compile) against fmgate's
fast path, and both against the memory-bandwidth bound, in one run.

    python benchmarks/gpu_decode.py                      # Llama-3-8B shape, bf16, cuda (~5 min)
    python benchmarks/gpu_decode.py --tiny --device cpu  # the same code on a tiny model (<1 min)
    python benchmarks/gpu_decode.py --via save           # fmgate loads a saved copy from disk

On a CPU the step is not compiled unless ``--compile`` is given (compiling even the tiny model
takes a minute or more on a small CPU): the static cache runs eagerly there, raw and fmgate alike.

Nothing is downloaded: the model is a Llama-3-8B-shaped ``LlamaForCausalLM`` (hidden 4096,
32 layers, 32 heads, 8 KV heads, intermediate 14336, vocab 128256) with random weights, built
on the device in bf16 (decode speed does not depend on the weights' values). The tokenizer is
fmgate's tiny test tokenizer (640 ids; ids it lacks decode to nothing).

Phases, each printed with its wall time so a run cut short shows where the time went:

1. build the model; 2. memory bandwidth: a device-to-device copy of ``--copy-gib`` GiB (read +
   write bytes / time), and the batch-1 decode bound = bandwidth / weight bytes (each step reads
   every weight once; the KV cache and activations are ignored, so the bound is optimistic);
3. raw ``model.generate`` at batch 1, eager (dynamic cache); 4. raw, static cache +
   ``torch.compile`` (``cache_implementation="static"``, ``CompileConfig()``: CUDA graphs), the
   compile timed apart; 5. fmgate ``load(..., compile=True)`` (its warm-up is its load_s) and
   ``generate`` at batch 1; 6. batch 32: raw eager, raw static compiled, fmgate ``generate_many``.

Decode rate = (long - short new tokens) / (time(long) - time(short)), medians over rounds: the
prompt's prefill and each call's fixed costs cancel, for raw and fmgate alike. Every run
generates exactly its token count (EOS ignored: ``min_new_tokens``, ``transformers_ignore_eos``).
Energy per token (NVML's energy counter over the long runs) where readable.

``--via memory`` (default) hands the model already in memory to fmgate (its load cache), so
raw and fmgate run the same weights and the same compiled step; ``--via save`` saves it with
``save_pretrained`` to a temporary folder (``--save-dir``, local disk) and loads it like a user
would (about 16 GB written and read back: add a minute or two).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

import fmgate  # noqa: E402
from fmgate.testing import make_tiny_model  # noqa: E402

LLAMA3_8B: dict[str, Any] = dict(
    hidden_size=4096,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    intermediate_size=14336,
    vocab_size=128256,
    max_position_embeddings=8192,
)
TINY: dict[str, Any] = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=128256,
    max_position_embeddings=8192,
)
PROMPT = "Explain in detail why memory bandwidth limits the speed of decoding one token at a time."
T0 = time.perf_counter()


def say(text: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {text}", flush=True)


@contextmanager
def phase(name: str) -> Iterator[None]:
    say(f"{name} ...")
    t0 = time.perf_counter()
    yield
    say(f"{name}: {time.perf_counter() - t0:.1f} s")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# -- the model -------------------------------------------------------------------------------------


def build(shape: dict[str, Any], device: str, dtype: torch.dtype) -> Any:
    """A random-weight Llama built straight on the device (no CPU copy, no file)."""
    llama: Any = transformers.LlamaConfig
    config = llama(**shape, rope_theta=500000.0, tie_word_embeddings=False)
    with torch.device(device):
        auto: Any = transformers.AutoModelForCausalLM
        model = auto.from_config(config, dtype=dtype)
    return model.eval()


def weight_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def bandwidth_gbs(device: str, gib: float) -> float | None:
    """GB/s of a device-to-device copy: (bytes read + bytes written) / time, best of 5."""
    n = int(gib * 2**30) // 2
    try:
        src = torch.empty(n, dtype=torch.bfloat16, device=device)
        dst = torch.empty_like(src)
    except RuntimeError as exc:  # out of memory on a small device
        say(f"bandwidth: skipped ({exc})")
        return None
    dst.copy_(src)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(4):
            dst.copy_(src)
        sync(device)
        best = min(best, (time.perf_counter() - t0) / 4)
    del src, dst
    return 2 * n * 2 / best / 1e9


# -- energy ----------------------------------------------------------------------------------------


class Energy:
    """NVML's energy counter of the device, where readable; joules between two reads."""

    def __init__(self, device: str) -> None:
        self.counter: Any = None
        if device.startswith("cuda"):
            from fmgate._local.energy import nvml_counter

            self.counter = nvml_counter(torch.device(device).index or 0)

    def read(self) -> Any:
        return self.counter.read() if self.counter is not None else None

    def joules(self, start: Any, end: Any) -> float | None:
        if start is None or end is None:
            return None
        joules: float = self.counter.joules(start, end)
        return joules


# -- measuring -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Rate:
    """Decode tokens/s (all rows) from short and long runs, and energy per token."""

    name: str
    rows: int
    tokens_per_s: float
    j_per_token: float | None
    first_s: float  # the first (cold) call, compile or warm-up included where it ran

    def line(self, bound: float | None) -> str:
        per_row = self.tokens_per_s / self.rows
        of_bound = f"  {per_row / bound:6.1%} of bound" if bound else ""
        energy = f"  {self.j_per_token:.3f} J/token" if self.j_per_token else ""
        return (
            f"  {self.name:<34} batch {self.rows:>2}: {self.tokens_per_s:9.1f} tok/s "
            f"({per_row:7.1f} per row){of_bound}{energy}  [first call {self.first_s:.1f} s]"
        )


@dataclasses.dataclass
class Run:
    """One way to generate: ``call(n)`` makes n new tokens per row."""

    name: str
    call: Callable[[int], None]
    rows: int
    long: int


def measure(runs: list[Run], *, short: int, rounds: int, device: str, energy: Energy) -> list[Rate]:
    """The decode rate of each run, its rounds interleaved with the others' (a busy or
    throttling machine slows them alike); each run's first call is timed apart."""

    def timed(call: Callable[[int], None], n: int) -> float:
        sync(device)
        t0 = time.perf_counter()
        call(n)
        sync(device)
        return time.perf_counter() - t0

    firsts = [timed(run.call, short) for run in runs]  # compiles or warms what it needs
    shorts: list[list[float]] = [[] for _ in runs]
    longs: list[list[float]] = [[] for _ in runs]
    joules: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, run in enumerate(runs):
            shorts[i].append(timed(run.call, short))
            start = energy.read()
            longs[i].append(timed(run.call, run.long))
            used = energy.joules(start, energy.read())
            if used is not None:
                joules[i].append(used / (run.rows * run.long))
    rates = []
    for i, run in enumerate(runs):
        step = statistics.median(longs[i]) - statistics.median(shorts[i])
        rate = run.rows * (run.long - short) / step if step > 0 else float("nan")
        energy_per = statistics.median(joules[i]) if joules[i] else None
        rates.append(Rate(run.name, run.rows, rate, energy_per, firsts[i]))
        say(f"{run.name}: {rate:.1f} tok/s (batch {run.rows}), first call {firsts[i]:.1f} s")
    return rates


def raw_call(model: Any, ids: torch.Tensor, **how: Any) -> Callable[[int], None]:
    mask = torch.ones_like(ids)

    def call(n: int) -> None:
        with torch.inference_mode():
            model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
                **how,
            )

    return call


def static_how(device: str, length: int, compile_step: bool) -> dict[str, Any]:
    """Raw transformers' fast path: what fmgate passes too (its cache length included)."""
    if not compile_step:
        return dict(cache_implementation="static", max_cache_len=length, disable_compile=True)
    config: Any = transformers.CompileConfig()
    if not device.startswith("cuda"):
        config._compile_all_devices = True  # transformers compiles on CUDA only unless told
    return dict(cache_implementation="static", max_cache_len=length, compile_config=config)


# -- fmgate ----------------------------------------------------------------------------------------


def fmgate_model(
    model: Any, tokenizer_dir: Path, via: str, folder: Path, device: str, dtype: torch.dtype
) -> fmgate.Model:
    """fmgate's Model over the same weights: from memory (its load cache) or saved and loaded."""
    dtype_name = str(dtype).removeprefix("torch.")
    if via == "save":
        with phase(f"save_pretrained to {folder}"):
            model.save_pretrained(folder)
        for name in os.listdir(tokenizer_dir):
            if "token" in name or name.endswith(".jinja"):
                shutil.copy(tokenizer_dir / name, folder / name)
    else:
        _share_in_memory(model, tokenizer_dir, folder, device, dtype)
    with phase("fmgate load, compile=True (compile and warm-up are its load_s)"):
        loaded = fmgate.load(
            f"transformers:{folder}", device=device, dtype=dtype_name, compile=True
        )
    return loaded


def _share_in_memory(
    model: Any, tokenizer_dir: Path, folder: Path, device: str, dtype: torch.dtype
) -> None:
    """Put the model in fmgate's load cache (a private seam, for this benchmark only): a folder
    with its config, tokenizer and a placeholder weights file, cached under fmgate's key."""
    from fmgate._local import loading
    from fmgate._local.profile import read_profile

    shutil.copytree(tokenizer_dir, folder, dirs_exist_ok=True)
    model.config.save_pretrained(folder)
    for stale in folder.glob("*.safetensors"):
        stale.unlink()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    profile = read_profile(tokenizer_dir)  # the tiny model's facts, then this model's
    profile = dataclasses.replace(
        profile,
        parameters=model.num_parameters(),
        weights_bytes=weight_bytes(model),
        context_window=model.config.max_position_embeddings,
        dtype=str(dtype).removeprefix("torch."),
    )
    (folder / "model.safetensors").write_bytes(b"")  # folder check only: never read
    source = loading.Source(folder.resolve())
    loaded = loading.LoadedModel(
        model=model,
        tokenizer=tokenizer,
        source=source,
        device=loading.pick_device(device),
        dtype=dtype,
        profile=profile,
        is_encoder=False,
    )
    loading._pad_left(tokenizer, model)
    key = (str(source.path), None, loaded.device, str(dtype).removeprefix("torch."), False)
    loading._CACHE[key] = loaded
    _share_in_memory.keep = loaded  # type: ignore[attr-defined]  # the cache holds it weakly


def fmgate_call(m: fmgate.Model, rows: int) -> Callable[[int], None]:
    prompts = [PROMPT] * rows

    def call(n: int) -> None:
        params: dict[str, Any] = dict(max_tokens=n, temperature=0, transformers_ignore_eos=True)
        if rows == 1:
            response = m.generate(PROMPT, **params)
            paths.add(str(response.record.params.get("decode_path", "(not recorded)")))
        else:
            responses = m.generate_many(prompts, batch_size=rows, **params)
            paths.update(
                str(r.record.params.get("decode_path", "(not recorded)")) for r in responses
            )

    return call


paths: set[str] = set()


# -- the run ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = args.device
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    shape = TINY if args.tiny else LLAMA3_8B
    energy = Energy(device)
    tmp = Path(tempfile.mkdtemp(prefix="fmgate-gpu-decode-", dir=args.save_dir))
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {device}", end="")
    if device.startswith("cuda"):
        print(f" ({torch.cuda.get_device_name(torch.device(device))})", end="")
    compiled = "compiled" if args.compile else "NOT compiled"
    size = "tiny" if args.tiny else "Llama-3-8B shape"
    print(f", {size}, {str(dtype)[6:]}, static step {compiled}", flush=True)
    if args.compile:  # why a graph skips CUDA graphs or recompiles, printed once each
        from torch._logging import _internal

        _internal.set_logs(perf_hints=True, recompiles=True)
    try:
        return run(args, device, dtype, shape, energy, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(
    args: argparse.Namespace,
    device: str,
    dtype: torch.dtype,
    shape: dict[str, Any],
    energy: Energy,
    tmp: Path,
) -> int:
    with phase("tokenizer"):
        tokenizer_dir = make_tiny_model("llama", tmp / "tiny")
        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    with phase("build the model on the device"):
        model = build(shape, device, dtype)
        sync(device)
    wbytes = weight_bytes(model)
    say(f"weights: {wbytes / 1e9:.2f} GB, {model.num_parameters() / 1e9:.3f} B parameters")
    with phase("bandwidth"):
        gbs = bandwidth_gbs(device, args.copy_gib)
    bound = gbs * 1e9 / wbytes if gbs else None
    if gbs and bound:
        say(f"bandwidth {gbs:.0f} GB/s -> batch-1 decode bound {bound:.1f} tok/s")
    chat = [{"role": "user", "content": PROMPT}]
    text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    ids1 = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
    from fmgate._local.fast_decode import cache_len_for

    length = cache_len_for(ids1.shape[1] + args.long, shape["max_position_embeddings"])
    common = dict(short=args.short, rounds=args.rounds, device=device, energy=energy)
    rates: dict[str, Rate] = {}
    over = budget_check(args.budget_s)
    static = static_how(device, length, args.compile)

    with phase("raw eager, batch 1"):
        (rates["raw_eager_1"],) = measure(
            [Run("raw eager", raw_call(model, ids1), 1, args.eager_long)], **common
        )
    with phase("raw static, batch 1: the first call (compiles)"):
        sync(device)
        t0 = time.perf_counter()
        raw_call(model, ids1, **static)(args.short)
        sync(device)
        compile_s = time.perf_counter() - t0
        say(f"raw static first call: {compile_s:.1f} s")
    m = fmgate_model(model, tokenizer_dir, args.via, tmp / "model", device, dtype)
    load_s = m.generate("warm", max_tokens=1).record.latency.load_s
    say(f"fmgate load_s (load + compile + warm-up): {load_s or 0.0:.1f} s")
    say(f"fmgate's decode plan: {getattr(m.backend, 'decode_plan', None)}")
    with phase("batch 1: raw static and fmgate, interleaved"):
        rates["raw_static_1"], rates["fmgate_1"] = measure(
            [
                Run("raw static+compile", raw_call(model, ids1, **static), 1, args.long),
                Run("fmgate", fmgate_call(m, 1), 1, args.long),
            ],
            **common,
        )
    report(rates, bound, gbs, args.batch)
    compiler_counters()
    if over():
        say("time budget spent: batch runs skipped")
    else:
        ids = ids1.repeat(args.batch, 1)
        batch_runs(args, model, m, ids, static, rates, common, compile_s)
        report(rates, bound, gbs, args.batch)
        compiler_counters()
    say(f"decode paths fmgate's records name: {sorted(paths)}")
    return 0


def compiler_counters() -> None:
    """What torch.compile did: graphs, recompiles, graph breaks, CUDA-graph skips (a decode
    step that recompiles or skips CUDA graphs is the usual reason for a slow static path)."""
    from torch._dynamo.utils import counters

    for group in ("stats", "graph_break", "inductor"):
        found = {k: v for k, v in counters.get(group, {}).items() if v}
        if group == "inductor":
            found = {k: v for k, v in found.items() if "cudagraph" in k or "recompil" in k}
        if found:
            shown = ", ".join(f"{k}={v}" for k, v in list(found.items())[:12])
            say(f"torch.compile {group}: {shown}")


def batch_runs(
    args: argparse.Namespace,
    model: Any,
    m: fmgate.Model,
    ids: torch.Tensor,
    static: dict[str, Any],
    rates: dict[str, Rate],
    common: dict[str, Any],
    compile_s: float,
) -> None:
    """Batch ``--batch``: eager, then static (its new shape compiles again) if time is left."""
    rows, long = args.batch, args.batch_long
    with phase(f"raw eager, batch {rows}"):
        (rates["raw_eager_b"],) = measure(
            [Run("raw eager", raw_call(model, ids), rows, args.eager_long)], **common
        )
    # a new batch size recompiles (about as long as the first compile) before the rounds
    needed = 1.2 * compile_s + 2 * args.rounds * (long + args.short) / 40
    left = args.budget_s + 60 - (time.perf_counter() - T0)
    if needed > left:
        say(f"static batch {rows} skipped: needs about {needed:.0f} s, {left:.0f} s left")
        return
    with phase(f"batch {rows}: raw static and fmgate generate_many, interleaved"):
        rates["raw_static_b"], rates["fmgate_b"] = measure(
            [
                Run("raw static+compile", raw_call(model, ids, **static), rows, long),
                Run("fmgate generate_many", fmgate_call(m, rows), rows, long),
            ],
            **common,
        )


def report(rates: dict[str, Rate], bound: float | None, gbs: float | None, batch: int) -> None:
    print("\n== decode tokens/s (median of rounds; bound = bandwidth / weight bytes) ==")
    if gbs and bound:
        print(f"  bandwidth {gbs:.0f} GB/s, batch-1 bound {bound:.1f} tok/s")
    for rate in rates.values():
        print(rate.line(bound))
    print("\n== ratios ==")
    pairs = [
        ("raw static+compile / raw eager (batch 1)", "raw_static_1", "raw_eager_1"),
        ("fmgate / raw, same path (batch 1)", "fmgate_1", "raw_static_1"),
        ("fmgate / raw eager (batch 1)", "fmgate_1", "raw_eager_1"),
        (f"raw static+compile / raw eager (batch {batch})", "raw_static_b", "raw_eager_b"),
        (f"fmgate / raw, same path (batch {batch})", "fmgate_b", "raw_static_b"),
        (f"batch {batch} / batch 1 (fmgate)", "fmgate_b", "fmgate_1"),
    ]
    for label, top, bottom in pairs:
        if top in rates and bottom in rates:
            print(f"  {label:<44} {rates[top].tokens_per_s / rates[bottom].tokens_per_s:6.2f}x")
    if bound and "fmgate_1" in rates:
        print(f"  {'fmgate batch 1 / bound':<44} {rates['fmgate_1'].tokens_per_s / bound:6.1%}")


def budget_check(budget_s: float) -> Callable[[], bool]:
    return lambda: time.perf_counter() - T0 > budget_s


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tiny", action="store_true", help="a tiny model (a smoke run)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:<n> or cpu")
    parser.add_argument("--via", choices=("memory", "save"), default="memory")
    parser.add_argument("--save-dir", default=None, help="where --via save writes (local disk)")
    parser.add_argument("--short", type=int, default=16, help="new tokens of the short runs")
    parser.add_argument("--long", type=int, default=272, help="new tokens of the long runs")
    parser.add_argument("--eager-long", type=int, default=48, help="long runs of eager paths")
    parser.add_argument("--batch-long", type=int, default=144, help="long runs of static batches")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--copy-gib", type=float, default=4.0, help="bandwidth copy size")
    parser.add_argument("--budget-s", type=float, default=330.0, help="skip batch runs after")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the static path (default: on CUDA only)",
    )
    args = parser.parse_args(argv)
    if args.tiny and args.device == "cuda" and not torch.cuda.is_available():
        args.device = "cpu"
    if args.compile is None:
        args.compile = args.device.startswith("cuda")
    if not args.compile:  # fmgate's static path without compiling, as its tests run it
        from fmgate._local import fast_decode

        fast_decode.COMPILE_STEP = False
    if args.tiny:  # a smoke run: small copy, short runs, a smaller batch
        args.copy_gib = min(args.copy_gib, 0.25)
        args.long, args.eager_long, args.rounds = min(args.long, 80), min(args.eager_long, 48), 2
        args.batch_long = min(args.batch_long, 80)
        args.batch = min(args.batch, 8)
    return args


if __name__ == "__main__":
    sys.exit(main())
