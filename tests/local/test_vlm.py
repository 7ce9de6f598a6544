"""Local vision-language models on the tiny random-weight LLaVA and Idefics3: images in chat (as a
path, a PIL image or an array), streamed, batched, with structured output, on the record;
zero-shot classify and detect through them; a text-only model refusing images. Greedy decoding on
CPU in float32 is deterministic, so texts are compared exactly; what the random weights say is
not."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import fmgate

from .conftest import TinyFactory

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from fmgate._local.loading import LoadedModel

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("torch", "transformers")),
    reason='needs the local extra: pip install "fmgate[local]"',
)

# image tokens per image: 32x32 pixels in 8x8 patches; Idefics3 shuffles 4 patches into one
IMAGE_TOKENS = {"llava": 16, "idefics3": 4}
MODEL_CLASS = {
    "llava": "LlavaForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
}


@pytest.fixture(scope="module", params=sorted(IMAGE_TOKENS))
def arch(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def vlm(tiny: TinyFactory, arch: str) -> fmgate.Model:
    return fmgate.load(f"transformers:{tiny(arch)}", device="cpu")


@pytest.fixture(scope="module")
def red() -> PILImage:
    from PIL import Image

    image = Image.new("RGB", (64, 48), (200, 30, 30))
    image.putpixel((5, 5), (0, 0, 255))
    return image


@pytest.fixture(scope="module")
def gradient() -> Any:
    import numpy as np

    ramp = np.linspace(0, 255, 40, dtype=np.uint8)
    return np.stack([np.tile(ramp, (30, 1))] * 3, axis=-1)  # 30 high, 40 wide


def _loaded(model: fmgate.Model) -> LoadedModel:
    from fmgate.backends.transformers import TransformersBackend

    backend = model.backend
    assert isinstance(backend, TransformersBackend)
    return backend.loaded


def ask(*images: object, text: str = "What is in this picture?") -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "image", "image": image} for image in images]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def _prompt_tokens(loaded: LoadedModel, chat: list[dict[str, Any]], images: list[Any]) -> int:
    """The prompt's length as transformers' own processor counts it, image tokens included."""
    processor = loaded.processor
    text = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], images=images or None, add_special_tokens=False)
    return len(enc["input_ids"][0])


# -- the model and its processor -----------------------------------------------------------------


def test_the_tiny_model_loads_as_a_vision_language_model(vlm: fmgate.Model, arch: str) -> None:
    loaded = _loaded(vlm)
    assert loaded.profile.vision == "chat"
    assert type(loaded.model).__name__ == MODEL_CLASS[arch]
    assert type(loaded.processor.image_processor).__name__.endswith("Pil")  # no torchvision
    assert loaded.tokenizer is loaded.processor.tokenizer
    assert loaded.tokenizer.padding_side == "left"
    assert vlm.backend.features >= {"images", "output"}


def test_image_parts_are_placed_where_they_stand(vlm: fmgate.Model, red: PILImage) -> None:
    from fmgate._local import tools
    from fmgate._local.vlm import render
    from fmgate._types import ChatRequest, GenerationParams, normalize_messages

    content = [
        {"type": "text", "text": "Look"},
        {"type": "image", "image": red},
        {"type": "text", "text": "and say"},
        {"type": "image", "image": red},
    ]
    messages = normalize_messages([{"role": "user", "content": content}])
    request = ChatRequest(messages, GenerationParams())
    text = render(_loaded(vlm), request, tools.Plan())
    expected = "<|im_start|>user\nLook<image>\nand say<image>\n<|im_end|>\n<|im_start|>assistant\n"
    assert text == expected


# -- generate ------------------------------------------------------------------------------------


def test_an_image_as_path_pil_or_array_gives_the_same_answer(
    vlm: fmgate.Model, red: PILImage, gradient: Any, tmp_path: Path
) -> None:
    import numpy as np

    path = tmp_path / "red.png"
    red.save(path)
    answers = [
        vlm.generate(ask(image), max_tokens=8)
        for image in (red, path, str(path), np.asarray(red), path.read_bytes())
    ]
    assert len({a.text for a in answers}) == 1
    assert all(a.usage.output_tokens == 8 for a in answers)
    # a different image reads differently: the pixels reach the model
    other = vlm.generate(ask(gradient), max_tokens=8)
    assert other.text != answers[0].text


def test_the_record_counts_image_tokens_images_and_pixels(
    vlm: fmgate.Model, arch: str, red: PILImage, gradient: Any
) -> None:
    reply = vlm.generate(ask(red, gradient), max_tokens=4)
    record = reply.record
    text = {"type": "text", "text": "What is in this picture?"}
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, text]}]
    expected = _prompt_tokens(_loaded(vlm), chat, [red, gradient])
    assert reply.usage.input_tokens == record.usage.input_tokens == expected
    text_only = vlm.generate("What is in this picture?", max_tokens=4)
    assert text_only.usage.input_tokens is not None
    assert expected >= text_only.usage.input_tokens + 2 * IMAGE_TOKENS[arch]
    assert record.task == "chat" and record.ok and record.usage.images_in == 2
    assert record.usage.pixels_in == 64 * 48 + 40 * 30
    assert record.usage.source == "tokenizer" and record.usage.output_tokens == 4
    latency = record.latency
    assert latency.ttft_s is not None and latency.total_s is not None
    assert 0 < latency.ttft_s <= latency.total_s


def test_a_text_only_prompt_runs_on_a_vision_language_model(vlm: fmgate.Model) -> None:
    reply = vlm.generate(
        "Hello there", max_tokens=6, system="Be brief.", transformers_ignore_eos=True
    )
    chat = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
    ]
    assert reply.usage.input_tokens == _prompt_tokens(_loaded(vlm), chat, [])
    assert reply.usage.output_tokens == 6 and reply.record.usage.images_in is None
    assert reply.record.usage.pixels_in is None


def test_max_tokens_and_stop_strings_hold_with_an_image(vlm: fmgate.Model, red: PILImage) -> None:
    full = vlm.generate(ask(red), max_tokens=12, transformers_ignore_eos=True)
    assert full.usage.output_tokens == 12 and full.finish_reason == "length"
    stop = full.text[len(full.text) // 2 :][:2]
    assert stop.strip()
    cut = vlm.generate(ask(red), max_tokens=12, stop=[stop], transformers_ignore_eos=True)
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.find(stop)]
    assert cut.usage.output_tokens is not None and cut.usage.output_tokens < 12


def test_a_prompt_whose_images_overflow_the_window_is_refused(
    vlm: fmgate.Model, arch: str, red: PILImage
) -> None:
    """The context-window check counts image tokens: text that fits alone does not fit with an
    image."""
    loaded = _loaded(vlm)
    window = loaded.profile.context_window
    assert window is not None
    words = 1
    while True:
        text = " cat" * words
        chat = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        if _prompt_tokens(loaded, chat, []) >= window - IMAGE_TOKENS[arch] // 2:
            break
        words += 50 if _prompt_tokens(loaded, chat, []) < window - 100 else 1
    assert vlm.generate(text, max_tokens=1).usage.output_tokens == 1
    with pytest.raises(fmgate.ContextLengthError) as caught:
        vlm.generate(ask(red, text=text), max_tokens=1)
    assert (caught.value.prompt_tokens or 0) > window


async def test_agenerate_reads_the_image(vlm: fmgate.Model, red: PILImage) -> None:
    sync = vlm.generate(ask(red), max_tokens=6)
    reply = await vlm.agenerate(ask(red), max_tokens=6)
    assert reply.text == sync.text and reply.record.usage.images_in == 1


def test_pixels_follow_the_models_dtype(tiny: TinyFactory, arch: str, red: PILImage) -> None:
    """The processor makes float32 pixels; a model loaded in bfloat16 (CUDA's default) reads
    them, in its own dtype."""
    half = fmgate.load(f"transformers:{tiny(arch)}", device="cpu", dtype="bfloat16")
    reply = half.generate(ask(red), max_tokens=4, transformers_ignore_eos=True)
    assert reply.usage.output_tokens == 4 and reply.record.access.dtype == "bfloat16"


# -- streams and batches -------------------------------------------------------------------------


def test_a_stream_with_an_image_joins_to_the_generated_text(
    vlm: fmgate.Model, gradient: Any
) -> None:
    expected = vlm.generate(ask(gradient), max_tokens=12, transformers_ignore_eos=True)
    stream = vlm.stream(ask(gradient), max_tokens=12, transformers_ignore_eos=True)
    chunks = [chunk.text for chunk in stream]
    assert "".join(chunks) == expected.text and len(chunks) > 1
    record = stream.record
    assert record.stream and record.usage.images_in == 1 and record.usage.pixels_in == 40 * 30
    assert record.usage.input_tokens == expected.usage.input_tokens
    assert record.latency.ttft_s is not None


async def test_astream_with_an_image_joins_to_the_generated_text(
    vlm: fmgate.Model, red: PILImage
) -> None:
    expected = vlm.generate(ask(red), max_tokens=8, transformers_ignore_eos=True)
    stream = vlm.astream(ask(red), max_tokens=8, transformers_ignore_eos=True)
    chunks = [chunk.text async for chunk in stream]
    assert "".join(chunks) == expected.text
    assert stream.record.usage.images_in == 1


def test_a_batch_of_image_prompts_matches_each_prompt_alone(
    vlm: fmgate.Model, red: PILImage, gradient: Any
) -> None:
    """Rows of different lengths (one image, none, two) are left-padded in one ``generate``;
    each row's text and counts are what it gets alone."""
    prompts: list[Any] = [ask(red), "Hello there", ask(gradient, red, text="Compare them")]
    alone = [vlm.generate(p, max_tokens=6, transformers_ignore_eos=True) for p in prompts]
    batch = vlm.generate_many(prompts, max_tokens=6, transformers_ignore_eos=True)
    assert [r.text for r in batch] == [r.text for r in alone]
    assert [r.usage.input_tokens for r in batch] == [r.usage.input_tokens for r in alone]
    assert [r.record.usage.images_in for r in batch] == [1, None, 2]


# -- structured output and tools -----------------------------------------------------------------


def test_output_with_an_image_is_valid_by_construction(vlm: fmgate.Model, red: PILImage) -> None:
    """The grammar reads only generated tokens: the prompt's image tokens do not disturb it."""
    from pydantic import BaseModel

    class Seen(BaseModel):
        colour: str
        count: int

    replies = [vlm.generate(ask(red), output=Seen, max_tokens=40)]
    replies += vlm.generate_many([ask(red), ask(red, red)], output=Seen, max_tokens=40)
    for reply in replies:
        assert isinstance(reply.parsed, Seen)
        assert reply.record.output.mode == "grammar" and reply.record.output.valid
        assert reply.record.usage.images_in in (1, 2)


def test_tools_with_an_image_on_a_template_without_tools_are_refused(
    vlm: fmgate.Model, red: PILImage
) -> None:
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    with pytest.raises(fmgate.UnsupportedFeatureError, match="no place for images"):
        vlm.generate(ask(red), tools=[get_weather], max_tokens=8)
    # the same tools without the image are shown through fmgate's Hermes template
    reply = vlm.generate("Weather in Paris?", tools=[get_weather], max_tokens=8)
    assert reply.record.tools.offered == 1


# -- zero-shot classify and detect ---------------------------------------------------------------


def test_zero_shot_detect_parses_every_row(
    vlm: fmgate.Model, arch: str, red: PILImage, gradient: Any
) -> None:
    for labels in (None, ["cat", "dog"]):
        found = vlm.detect([red, gradient], labels=labels, max_tokens=64)
        assert found.errors == () and len(found.results) == 2
        for detections, (width, height) in zip(found.results, [(64, 48), (40, 30)], strict=True):
            for d in detections:
                x0, y0, x1, y1 = d.box
                assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
                assert labels is None or d.label in labels
        record = found.record
        assert record.task == "detect" and record.operation == "detect" and record.ok
        assert record.usage.items == 2 and record.usage.images_in == 2
        assert record.usage.pixels_in == 64 * 48 + 40 * 30
        assert record.usage.input_tokens and record.usage.input_tokens > 2 * IMAGE_TOKENS[arch]


def test_zero_shot_classify_runs_on_images(
    vlm: fmgate.Model, red: PILImage, gradient: Any, memory: fmgate.MemorySink
) -> None:
    """Random weights seldom name a label: either every answer maps onto one, or the call fails
    with NoLabelError; either way it is one classify record of two images."""
    labels = ["cat", "dog", "car"]
    try:
        result = vlm.classify([red, gradient], labels=labels, max_tokens=4)
    except fmgate.NoLabelError as exc:
        assert len(exc.answers) == 2
    else:
        assert all(label in labels for row in result.results for label, _ in row)
    record = memory.records[-1]
    assert record.task == "classify" and record.usage.images_in == 2
    assert record.usage.pixels_in == 64 * 48 + 40 * 30


# -- text-only models ----------------------------------------------------------------------------


def test_a_text_only_local_model_refuses_an_image_unsent(tiny: TinyFactory, red: PILImage) -> None:
    sink = fmgate.MemorySink()
    model = fmgate.load(f"transformers:{tiny('llama')}", device="cpu", sinks=[sink])
    assert "images" not in model.backend.features
    with pytest.raises(fmgate.UnsupportedFeatureError, match="cannot take images") as caught:
        model.generate(ask(red), max_tokens=4)
    assert caught.value.feature == "images"
    (record,) = sink.records
    assert record.outcome.sent is False and record.outcome.error_type == "UnsupportedFeatureError"
