"""What ``Model.generate_image`` costs over the same diffusers pipeline called directly, side by
side in one run.

    python benchmarks/image_generation_overhead.py [--rounds 21] [--quick]
    python benchmarks/image_generation_overhead.py --sd-size --device cuda   # on a GPU

The pipeline is fmgate's tiny random Stable Diffusion (``make_tiny_model("stable-diffusion")``,
64x64 images), or with ``--sd-size`` one of Stable Diffusion 1.5's shapes with random weights
(UNet of SD 1.5's config, its VAE, a CLIP ViT-L/14-sized text encoder; 512x512 images), built
into a temporary folder, then loaded once through ``fmgate.load("diffusers:<folder>")``. Each
round times, in alternating order:

- fmgate ``m.generate_image(prompt, size=..., seed=..., steps=4)``: checks, the per-pipeline lock,
  the cost meter, the record, the in-memory sink and the SQLite store (in a temporary folder);
- the same loaded pipeline called directly, as a user would without fmgate: the same prompt,
  size, steps and a ``torch.Generator`` seeded alike, ``output_type="pil"``, under
  ``torch.inference_mode``.

It prints the median milliseconds of each and the ratio fmgate/direct (goal: within 1.03x), then
fmgate's own cost a call with the pipeline replaced by a stub that returns ready images (what the
ratio measures, without the pipeline's noise on a shared machine). It asserts nothing about time.
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

import fmgate  # noqa: E402
from fmgate.testing import make_tiny_model  # noqa: E402

PROMPT = "a lighthouse on a cliff at dusk, oil painting"
STEPS = 4
SEED = 1234


def build(folder: Path, sd_size: bool, device: str) -> Path:
    """The tiny pipeline, or (``sd_size``) the same pipeline with SD 1.5-sized components."""
    make_tiny_model("stable-diffusion", folder)
    if not sd_size:
        return folder
    import diffusers as untyped
    import transformers
    from transformers import CLIPTextConfig, CLIPTextModel

    diffusers: Any = untyped  # its constructors are unannotated
    diffusers.utils.logging.set_verbosity_error()  # no bars or float32 notes for random weights
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    pipeline: Any = diffusers.DiffusionPipeline.from_pretrained(folder)
    vocab = len(pipeline.tokenizer)
    # built on the target device: initialising 1 billion random weights on a CPU takes minutes
    with torch.device(device if device != "auto" else _auto_device()):
        torch.manual_seed(0)
        unet = diffusers.UNet2DConditionModel(sample_size=64, cross_attention_dim=768)
        vae = diffusers.AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            sample_size=512,
        )
        text = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=vocab,
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
                hidden_act="quick_gelu",
                bos_token_id=vocab - 2,
                eos_token_id=vocab - 1,
                pad_token_id=vocab - 1,
            )
        )
    pipeline.register_modules(unet=unet, vae=vae, text_encoder=text)
    pipeline.to(torch.float16).save_pretrained(folder)  # half the bytes to write and read back
    return folder


def _auto_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def timed_ms(
    runs: dict[str, Callable[[], object]], rounds: int, sync: Callable[[], None]
) -> dict[str, list[float]]:
    """Milliseconds per run of each, one a round, order alternating."""
    for run in runs.values():  # warm-up: first calls allocate and compile kernels
        run()
        run()
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for key in list(runs) if r % 2 == 0 else list(reversed(runs)):
            sync()
            t0 = time.perf_counter()
            runs[key]()
            sync()
            samples[key].append((time.perf_counter() - t0) * 1e3)
    return samples


def median_ms(
    runs: dict[str, Callable[[], object]], rounds: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Milliseconds per run of each, the median over rounds."""
    return {k: statistics.median(v) for k, v in timed_ms(runs, rounds, sync).items()}


def bench(m: fmgate.Model, side: int, rounds: int) -> list[str]:
    backend: Any = m.backend
    pipeline = backend.pipeline
    device = str(pipeline.device)
    size = f"{side}x{side}"
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def direct() -> Any:
        generator = torch.Generator(device).manual_seed(SEED)
        with torch.inference_mode():
            return pipeline(
                prompt=PROMPT,
                height=side,
                width=side,
                num_inference_steps=STEPS,
                generator=generator,
                output_type="pil",
            ).images

    def through_fmgate() -> Any:
        return m.generate_image(PROMPT, size=size, seed=SEED, steps=STEPS).images

    same = [a.tobytes() for a in direct()] == [b.tobytes() for b in through_fmgate()]
    access = m.access
    lines = [
        f"{size}, {STEPS} steps, {access.parameters:,} parameters in {access.dtype} on "
        f"{access.hardware}, {rounds} rounds; same pixels both ways: {same}"
    ]
    times = timed_ms({"direct": direct, "fmgate": through_fmgate}, rounds, sync)
    d, f = statistics.median(times["direct"]), statistics.median(times["fmgate"])
    # each round's two calls ran back to back: their ratio is steadier than the medians' under
    # load that comes and goes (other work on a shared machine)
    paired = statistics.median(a / b for a, b in zip(times["fmgate"], times["direct"], strict=True))
    lines.append(
        f"  direct {d:9.2f} ms   fmgate {f:9.2f} ms   fmgate/direct {f / d:.3f}x, "
        f"median of paired rounds {paired:.3f}x (goal <= 1.03x)"
    )
    lines.append(own_cost(m, size, rounds))
    return lines


def own_cost(m: fmgate.Model, size: str, rounds: int) -> str:
    """fmgate's time a call with the pipeline replaced by a stub returning ready images."""
    from PIL import Image

    backend: Any = m.backend
    pipeline = backend.pipeline
    side = int(size.partition("x")[0])
    ready = [Image.new("RGB", (side, side))]

    class Out:
        images = ready

    class Stub:
        """Takes what a pipeline takes; draws nothing."""

        def __call__(self, **kwargs: Any) -> Out:
            return Out()

        def set_progress_bar_config(self, **kwargs: Any) -> None:
            pass

    stub = Stub()
    backend.pipeline = stub
    try:
        calls = 50
        med = median_ms(
            {
                "stub direct": lambda: [stub(prompt=PROMPT) for _ in range(calls)],
                "stub fmgate": lambda: [
                    m.generate_image(PROMPT, size=size, seed=SEED, steps=STEPS)
                    for _ in range(calls)
                ],
            },
            rounds,
            lambda: None,
        )
    finally:
        backend.pipeline = pipeline
    own = (med["stub fmgate"] - med["stub direct"]) / calls
    return f"  fmgate's own cost a call (pipeline stubbed): {own:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--quick", action="store_true", help="5 rounds")
    parser.add_argument("--sd-size", action="store_true", help="SD 1.5-sized random pipeline")
    parser.add_argument("--device", default=None, help="default: cpu (tiny), auto (--sd-size)")
    args = parser.parse_args()
    rounds = 5 if args.quick else args.rounds
    device = args.device or ("auto" if args.sd_size else "cpu")
    print(
        f"{platform.platform()}, {os.cpu_count()} cpus, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), python {platform.python_version()}, "
        f"fmgate {fmgate.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FMGATE_STORE"] = str(Path(tmp) / "store")  # recorded as a user's calls are
        folder = build(Path(tmp) / "pipeline", args.sd_size, device)
        m = fmgate.load(f"diffusers:{folder}", device=device)
        print("\n".join(bench(m, 512 if args.sd_size else 64, rounds)))
        fmgate.flush()


if __name__ == "__main__":
    main()
