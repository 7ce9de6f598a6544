"""Image generation in process with the diffusers backend, on the tiny random Stable Diffusion
pipeline: sizes and counts as asked, seeds honoured, steps recorded, settings passed to the
pipeline, one record per call, the access profile summed over every component."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import fmgate  # noqa: E402
from fmgate import MemorySink  # noqa: E402

from .conftest import TinyFactory  # noqa: E402


@pytest.fixture(scope="module")
def sd(tiny: TinyFactory) -> Path:
    return tiny("stable-diffusion")


@pytest.fixture(scope="module")
def model(sd: Path) -> fmgate.Model:
    return fmgate.load(f"diffusers:{sd}", device="cpu")


def _pixels(images: fmgate.Images) -> list[bytes]:
    return [image.tobytes() for image in images.images]


def test_the_tiny_pipeline_loads_with_diffusers(sd: Path) -> None:
    pipeline: Any = diffusers.DiffusionPipeline.from_pretrained(sd)
    pipeline.set_progress_bar_config(disable=True)
    assert type(pipeline).__name__ == "StableDiffusionPipeline"
    assert pipeline.safety_checker is None and pipeline.vae_scale_factor == 8
    out = pipeline("a cat", height=64, width=64, num_inference_steps=2)
    assert out.images[0].size == (64, 64)


def test_images_of_the_size_and_count_asked(model: fmgate.Model) -> None:
    result = model.generate_image("a red cube", size="64x48", n=3, seed=0, steps=2)
    assert [image.size for image in result.images] == [(64, 48)] * 3
    assert all(image.mode == "RGB" for image in result.images)


def test_same_seed_same_pixels_and_other_seeds_differ(model: fmgate.Model) -> None:
    first = model.generate_image("a cat", size="64x64", seed=7, steps=3)
    again = model.generate_image("a cat", size="64x64", seed=7, steps=3)
    other = model.generate_image("a cat", size="64x64", seed=8, steps=3)
    assert _pixels(first) == _pixels(again)
    assert _pixels(first) != _pixels(other)


def test_images_of_one_call_differ(model: fmgate.Model) -> None:
    a, b = model.generate_image("a cat", size="32x32", n=2, seed=1, steps=2).images
    assert a.tobytes() != b.tobytes()


def test_the_pipelines_own_settings_reach_it(model: fmgate.Model) -> None:
    guided = model.generate_image("a cat", size="32x32", seed=5, steps=2)
    plain = model.generate_image("a cat", size="32x32", seed=5, steps=2, diffusers_guidance_scale=1)
    assert _pixels(guided) != _pixels(plain)
    assert plain.record.params["diffusers_guidance_scale"] == 1


def test_negative_prompt_is_used_and_recorded_as_given(model: fmgate.Model) -> None:
    plain = model.generate_image("a cat", size="32x32", seed=5, steps=2)
    avoided = model.generate_image("a cat", size="32x32", seed=5, steps=2, negative_prompt="dog")
    assert _pixels(plain) != _pixels(avoided)
    assert avoided.record.params["negative_prompt"] is True
    assert "dog" not in str(avoided.record.to_dict())


def test_negative_prompt_refused_by_a_pipeline_without_one(sd: Path) -> None:
    m = fmgate.load(f"diffusers:{sd}", device="cpu")
    m.backend._named.discard("negative_prompt")  # type: ignore[attr-defined]  # as FLUX's
    with pytest.raises(fmgate.InvalidRequestError, match="takes no negative_prompt"):
        m.generate_image("a cat", size="32x32", steps=1, negative_prompt="dog")
    assert m.generate_image("a cat", size="32x32", steps=1).images


def test_steps_recorded_given_and_default(sd: Path) -> None:
    sink = MemorySink()
    m = fmgate.load(f"diffusers:{sd}", device="cpu", sinks=[sink])
    m.generate_image("a cat", size="32x32", steps=2)
    m.generate_image("a cat", size="32x32")  # StableDiffusionPipeline's default: 50 steps
    given, default = sink.records
    assert given.params["steps"] == 2
    assert default.params["steps"] == 50


def test_one_record_per_call(sd: Path) -> None:
    sink = MemorySink()
    m = fmgate.load(f"diffusers:{sd}", device="cpu", sinks=[sink])
    result = m.generate_image("a cat", size="64x32", n=2, seed=3, steps=2)
    (rec,) = sink.records
    assert rec is result.record
    assert (rec.task, rec.operation, rec.backend) == ("image", "generate_content", "diffusers")
    assert (rec.distribution, rec.endpoint, rec.outcome.status) == ("local", "in-process", "ok")
    assert rec.params == {"size": "64x32", "n": 2, "seed": 3, "steps": 2}
    assert (rec.usage.items, rec.usage.images_out, rec.usage.pixels_out) == (2, 2, 2 * 64 * 32)
    assert rec.cost.basis.startswith("energy_") and rec.cost.amount is not None
    assert rec.model_id == str(sd)
    assert "a cat" not in str(rec.to_dict())


def test_access_counts_every_component(model: fmgate.Model, sd: Path) -> None:
    pipeline: Any = model.backend.pipeline  # type: ignore[attr-defined]
    components = (pipeline.unet, pipeline.vae, pipeline.text_encoder)
    counted = sum(p.numel() for part in components for p in part.parameters())
    files = [f for f in sd.rglob("*.safetensors")]
    access = model.access
    assert len(files) == 3
    assert access.parameters == counted
    assert access.weights_bytes == sum(f.stat().st_size for f in files)
    assert (access.license, access.dtype, access.hardware) == ("Apache-2.0", "float32", "cpu")
    assert access.open_weights and access.offline_capable and not access.data_leaves_machine
    assert access.peak_memory_bytes is not None and access.peak_memory_bytes > 0
    assert model.backend.revision is None


def test_dtype_setting_loads_the_pipeline_in_it(sd: Path) -> None:
    m = fmgate.load(f"diffusers:{sd}", device="cpu", dtype="bfloat16")
    assert m.access.dtype == "bfloat16"
    assert m.backend.pipeline.unet.dtype == torch.bfloat16  # type: ignore[attr-defined]


def test_size_not_a_multiple_of_eight_is_refused(model: fmgate.Model) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="multiples of 8.*56x64 and 64x72"):
        model.generate_image("a cat", size="60x70")
    with pytest.raises(fmgate.InvalidRequestError, match="nearest valid size is 8x8[.]"):
        model.generate_image("a cat", size="3x5")


def test_unknown_or_clashing_pipeline_settings_are_refused(model: fmgate.Model) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="no argument 'guidance'.*guidance_scale"):
        model.generate_image("a cat", size="32x32", diffusers_guidance=2.0)
    with pytest.raises(fmgate.InvalidRequestError, match="diffusers_height is set by fmgate"):
        model.generate_image("a cat", size="32x32", diffusers_height=64)


def test_other_tasks_are_refused(model: fmgate.Model) -> None:
    assert model.tasks == frozenset({"image"})
    with pytest.raises(fmgate.UnsupportedTaskError):
        model.generate("hello")


def test_a_folder_that_is_not_a_pipeline_is_refused(tmp_path: Path, tiny: TinyFactory) -> None:
    with pytest.raises(fmgate.ConfigurationError, match="no model_index.json"):
        fmgate.load(f"diffusers:{tiny('gpt2')}", device="cpu")
    with pytest.raises(fmgate.InvalidRequestError, match="revision="):
        fmgate.load(f"diffusers:{tmp_path}", device="cpu", revision="main")


def test_a_hub_id_offline_and_not_cached_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(fmgate.ConfigurationError, match="not in the local Hugging Face cache"):
        fmgate.load("diffusers:fmgate-tests/no-such-pipeline", device="cpu")


def test_progress_bar_off_unless_asked(sd: Path, model: fmgate.Model) -> None:
    watched = fmgate.load(f"diffusers:{sd}", device="cpu", progress=True)
    pipeline: Any = model.backend.pipeline  # type: ignore[attr-defined]
    assert watched.backend.pipeline is pipeline  # type: ignore[attr-defined]
    watched.generate_image("a cat", size="32x32", steps=1)
    assert pipeline._progress_bar_config == {"disable": False}
    model.generate_image("a cat", size="32x32", steps=1)
    assert pipeline._progress_bar_config == {"disable": True}


def test_loads_alike_share_one_pipeline_while_one_holds_it(sd: Path, tmp_path: Path) -> None:
    import gc
    import shutil
    import weakref

    folder = shutil.copytree(sd, tmp_path / "sd")
    a = fmgate.load(f"diffusers:{folder}", device="cpu")
    b = fmgate.load(f"diffusers:{folder}", device="cpu")
    other = fmgate.load(f"diffusers:{folder}", device="cpu", dtype="bfloat16")
    pipeline = a.backend.pipeline  # type: ignore[attr-defined]
    assert b.backend.pipeline is pipeline  # type: ignore[attr-defined]
    assert other.backend.pipeline is not pipeline  # type: ignore[attr-defined]
    gone = weakref.ref(pipeline)
    del a, b, pipeline
    gc.collect()
    assert gone() is None


async def test_async_twin_draws_the_same_pixels(sd: Path, model: fmgate.Model) -> None:
    sink = MemorySink()
    m = fmgate.load(f"diffusers:{sd}", device="cpu", sinks=[sink])
    drawn = await m.agenerate_image("a cat", size="32x32", n=2, seed=11, steps=2)
    assert _pixels(drawn) == _pixels(
        model.generate_image("a cat", size="32x32", n=2, seed=11, steps=2)
    )
    (rec,) = sink.records
    assert (rec.task, rec.usage.images_out) == ("image", 2)


def test_a_variant_loads_and_is_counted(sd: Path, tmp_path: Path) -> None:
    pipeline: Any = diffusers.DiffusionPipeline.from_pretrained(sd)
    pipeline.save_pretrained(tmp_path / "fp16", variant="fp16")  # model.fp16.safetensors...
    assert (tmp_path / "fp16" / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    m = fmgate.load(f"diffusers:{tmp_path / 'fp16'}", device="cpu", variant="fp16")
    expected = fmgate.load(f"diffusers:{sd}", device="cpu").access.parameters
    assert m.access.parameters == expected
    assert m.generate_image("a cat", size="32x32", steps=1).images[0].size == (32, 32)


def test_pickled_weights_leave_the_count_unknown(sd: Path, tmp_path: Path) -> None:
    pipeline: Any = diffusers.DiffusionPipeline.from_pretrained(sd)
    pipeline.save_pretrained(tmp_path / "bin", safe_serialization=False)
    m = fmgate.load(f"diffusers:{tmp_path / 'bin'}", device="cpu")
    assert (m.access.parameters, m.access.weights_bytes) == (None, None)  # not a guess
    assert m.generate_image("a cat", size="32x32", steps=1).images[0].size == (32, 32)


COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny pipeline as the Hub cache holds a download of ``fmgate-tests/tiny-sd``, offline."""
    import shutil

    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--fmgate-tests--tiny-sd"
    shutil.copytree(sd, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return repo


def test_a_hub_id_loads_from_the_cache_offline_with_its_commit(hub_cache: Path) -> None:
    m = fmgate.load("diffusers:fmgate-tests/tiny-sd", device="cpu")
    rec = m.generate_image("a cat", size="32x32", steps=1).record
    assert (rec.model_id, rec.revision) == ("fmgate-tests/tiny-sd", COMMIT)
    assert m.access.license == "Apache-2.0" and m.access.parameters is not None
    pinned = fmgate.load("diffusers:fmgate-tests/tiny-sd", device="cpu", revision=COMMIT)
    assert pinned.backend.revision == COMMIT
    with pytest.raises(fmgate.ConfigurationError, match="at revision 'v2'.*HF_HUB_OFFLINE"):
        fmgate.load("diffusers:fmgate-tests/tiny-sd", device="cpu", revision="v2")
