"""The classify task: ``Model.classify`` and ``Model.aclassify``, on the model's recording path.

Without ``labels``, the model's own classifier labels each text (``Backend.classify``: fastText,
a sequence-classification head). With ``labels``, any chat model classifies zero-shot: fmgate asks
it, in a prompt of its own (:data:`ZERO_SHOT_PROMPT`, versioned in the record's ``params``), to
answer with one label, and maps the answer onto a label. The texts go through ``generate_many``:
batched on a local model, concurrent on an API. Either way a call is one record, ``task ==
"classify"``, with ``usage.items`` the number of texts.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._errors import (
    FmgateError,
    InvalidRequestError,
    MalformedResponseError,
    NoLabelError,
    UnsupportedFeatureError,
    UnsupportedTaskError,
    shown,
)
from ._images import Image, is_image, names_an_image, to_image, to_images, to_pil
from ._record import CallRecord, Usage
from ._recording import CallTimer, parts_of_one_call
from ._types import Classifications, ClassifyResult, DetectResult, Prompt, Ranked, Response

if TYPE_CHECKING:
    from ._model import Model

ZERO_SHOT_VERSION = "zero-shot-v1"
ZERO_SHOT_PROMPT = (
    "Choose the one label that fits the text. Labels: {labels}.\n"
    'Text: """{text}"""\n'
    "Answer with the label only."
)
ZERO_SHOT_IMAGE_VERSION = "zero-shot-image-v1"
ZERO_SHOT_IMAGE_PROMPT = (
    "Choose the one label that fits the image. Labels: {labels}.\nAnswer with the label only."
)
ZERO_SHOT_MAX_TOKENS = 16  # a label or two words: a longer answer is not a label

Inputs = Any
"""A text or an image (a path, bytes, a PIL image, an array), or a list of one kind."""


def classify(
    model: Model, inputs: Inputs, labels: Sequence[str] | None, top_k: int, max_tokens: int | None
) -> Classifications:
    if labels is None:
        with model.recording("classify", params={"top_k": top_k}) as timer:
            batch = _own_classifier(model, inputs, top_k)
            if isinstance(batch, Pictures):
                timer.read_images(batch.sizes)
                result = model.backend.classify_images(batch.images, top_k=top_k)
            else:
                result = model.backend.classify(batch, top_k=top_k)
        return _done(timer, result, len(batch), "image" if isinstance(batch, Pictures) else "text")
    params = _zero_shot_params(model, labels, max_tokens, inputs)
    with model.recording("classify", params=params) as timer:
        items, prompts = _zero_shot(model, inputs, params, top_k, timer)
        with parts_of_one_call():
            rows = model.generate_many(prompts, return_exceptions=True, **_sent(params))
        result = _answers(rows, params["labels"], _noun(prompts))
    return _done(timer, result, items, _noun(prompts))


async def aclassify(
    model: Model, inputs: Inputs, labels: Sequence[str] | None, top_k: int, max_tokens: int | None
) -> Classifications:
    if labels is None:
        with model.recording("classify", params={"top_k": top_k}) as timer:
            batch = _own_classifier(model, inputs, top_k)
            if isinstance(batch, Pictures):
                timer.read_images(batch.sizes)
                result = await model.backend.aclassify_images(batch.images, top_k=top_k)
            else:
                result = await model.backend.aclassify(batch, top_k=top_k)
        return _done(timer, result, len(batch), "image" if isinstance(batch, Pictures) else "text")
    params = _zero_shot_params(model, labels, max_tokens, inputs)
    with model.recording("classify", params=params) as timer:
        items, prompts = _zero_shot(model, inputs, params, top_k, timer)
        with parts_of_one_call():
            rows = await model.agenerate_many(prompts, return_exceptions=True, **_sent(params))
        result = _answers(rows, params["labels"], _noun(prompts))
    return _done(timer, result, items, _noun(prompts))


@dataclasses.dataclass(frozen=True, slots=True)
class Pictures:
    """The images of a call as a local model reads them (PIL, RGB), and their sizes."""

    images: list[Any]

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [image.size for image in self.images]

    def __len__(self) -> int:
        return len(self.images)


def pictures(inputs: object, what: str) -> Pictures:
    """One image or a list of them, decoded for a local model (paths read, arrays converted)."""
    return Pictures([to_pil(x) for x in to_images(inputs, what)])


# -- checks ---------------------------------------------------------------------------------------


def _own_classifier(model: Model, inputs: Inputs, top_k: int) -> list[str] | Pictures:
    """The texts or images, once the model is known to have a classifier of its own."""
    _check_top_k(top_k)
    if "classify" not in model.tasks:
        _texts_or_images(inputs)  # bad input is named first
        raise model.backend.unsupported("classify")
    if model.backend.classifies == "image":
        return pictures(inputs, "classify()")
    return _texts(inputs, model.spec)


def _zero_shot(
    model: Model, inputs: Inputs, params: dict[str, Any], top_k: int, timer: CallTimer
) -> tuple[int, list[Prompt]]:
    """The number of items and their prompts, once the model is known to chat (and to see
    images, for images). Images are encoded once here; the record counts them."""
    batch = _texts_or_images(inputs)
    _check_top_k(top_k)
    if "chat" not in model.tasks:
        raise UnsupportedTaskError(
            f"{model.spec} classifies with its own labels and does not chat, and labels= asks a "
            f"chat model to choose among them: drop labels=. Its tasks are "
            f"{', '.join(sorted(model.tasks))}.",
            tasks=model.tasks,
        )
    listed = ", ".join(params["labels"])
    if isinstance(batch[0], str):
        return len(batch), [ZERO_SHOT_PROMPT.format(labels=listed, text=text) for text in batch]
    if "images" not in model.backend.features:
        raise UnsupportedFeatureError(
            f"{model.spec} does not read images, so it cannot classify them zero-shot: use a "
            "vision chat model, or an image classifier without labels=.",
            feature="images",
        )
    images = [to_image(x) for x in batch]
    timer.read_images([(image.width, image.height) for image in images])
    question = ZERO_SHOT_IMAGE_PROMPT.format(labels=listed)
    return len(images), [image_prompt(image, question) for image in images]


def image_prompt(image: Image, question: str) -> list[dict[str, Any]]:
    """One user message: the image, then the question."""
    content = [{"type": "image", "image": image}, {"type": "text", "text": question}]
    return [{"role": "user", "content": content}]


def _texts_or_images(inputs: object) -> list[Any]:
    """Texts, or images (a str that names an image file, a data URL, bytes, PIL, an array)."""
    batch = [inputs] if isinstance(inputs, str) or is_image(inputs) else inputs
    if isinstance(batch, Sequence) and not isinstance(batch, bytes | bytearray) and batch:
        batch = list(batch)
        kinds = {_is_picture(x) for x in batch}
        if kinds == {True}:
            return batch
        if kinds == {False} and all(isinstance(t, str) for t in batch):
            return batch
        if kinds == {True, False}:
            raise InvalidRequestError(
                "classify() takes texts or images in one call, not both: split the list."
            )
    raise InvalidRequestError(
        f"classify() takes a str, an image, or a non-empty list of either, not {shown(inputs)}."
    )


def _is_picture(value: object) -> bool:
    return is_image(value) or (isinstance(value, str) and names_an_image(value))


def _texts(inputs: object, spec: str) -> list[str]:
    batch = [inputs] if isinstance(inputs, str) else inputs
    if isinstance(batch, Sequence) and not isinstance(batch, bytes | bytearray):
        batch = list(batch)
        if batch and all(isinstance(t, str) for t in batch):
            return batch
        image = next((t for t in batch if is_image(t)), None)
    else:
        image = inputs if is_image(inputs) else None
    if image is not None:
        raise InvalidRequestError(
            f"{spec} classifies text, not images (got a {type(image).__name__}): load an image "
            "classifier, or give a vision chat model labels=[...]."
        )
    raise InvalidRequestError(
        f"classify() takes a str or a non-empty list of str, not {shown(inputs)}."
    )


def _check_top_k(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidRequestError(f"top_k must be a positive int, not {shown(top_k)}.")


def _zero_shot_params(
    model: Model, labels: Sequence[str], max_tokens: int | None, inputs: object
) -> dict[str, Any]:
    """What the record says of a zero-shot call; labels it refuses are a recorded refusal."""
    try:
        params = _params(labels, max_tokens)
    except InvalidRequestError:
        with model.recording("classify"):
            raise
    batch = inputs if isinstance(inputs, list | tuple) else [inputs]
    if any(_is_picture(x) for x in batch):
        params["classify_prompt"] = ZERO_SHOT_IMAGE_VERSION
    return params


def _params(labels: Sequence[str], max_tokens: int | None) -> dict[str, Any]:
    """The prompt's version, the labels offered, and the generation settings."""
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise InvalidRequestError(f"labels must be a list of str, not {shown(labels)}.")
    listed = list(dict.fromkeys(labels))
    if not listed or not all(isinstance(label, str) and label.strip() for label in listed):
        raise InvalidRequestError(
            f"labels must be a non-empty list of non-blank str, not {shown(labels)}."
        )
    return {
        "classify_prompt": ZERO_SHOT_VERSION,
        "labels": [label.strip() for label in listed],
        "max_tokens": ZERO_SHOT_MAX_TOKENS if max_tokens is None else max_tokens,
        "temperature": 0.0,
    }


def _sent(params: dict[str, Any]) -> dict[str, Any]:
    """The generation settings among the record's params."""
    return {"max_tokens": params["max_tokens"], "temperature": params["temperature"]}


# -- answers --------------------------------------------------------------------------------------


def _noun(prompts: Sequence[Prompt]) -> str:
    return "text" if isinstance(prompts[0], str) else "image"


def _answers(
    rows: Sequence[Response | FmgateError], labels: list[str], noun: str = "text"
) -> ClassifyResult:
    """The rows' answers as labels, and their usage summed. A row that failed, or whose answer
    names no label, gets an empty ranking and its reason; only a call whose rows all failed fails.
    """
    results: list[Ranked] = []
    errors: list[str | None] = []
    for i, row in enumerate(rows):
        label = to_label(row.text, labels) if isinstance(row, Response) else None
        results.append([(label, 1.0)] if label is not None else [])
        errors.append(None if label is not None else _why(i, row, noun))
    responses = [row for row in rows if isinstance(row, Response)]
    if all(error is not None for error in errors):
        first = next((row for row in rows if isinstance(row, FmgateError)), None)
        if first is not None:
            raise first
        answers = [row.text for row in responses]
        raise NoLabelError(_unmapped_message(errors, noun), answers=answers)
    model_id = responses[0].record.model_id if responses else None
    usage = sum_usage([r.usage for r in responses])
    failed = tuple(errors) if any(errors) else ()
    return ClassifyResult(results, usage, model_id, failed)


def _why(i: int, row: Response | FmgateError, noun: str) -> str:
    if isinstance(row, FmgateError):
        return f"{noun} {i}: {type(row).__name__}: {row}"
    return f"{noun} {i}: the answer {row.text[:200]!r} names none of the labels"


def to_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label an answer names: the whole answer (case and surrounding punctuation aside),
    else the first label the answer names as a word; None when it names none."""
    bare = answer.strip().strip("\"'`.,:;!*()[]").strip().casefold()
    for label in labels:
        if label.casefold() == bare:
            return label
    found = [(m.start(), label) for label in labels if (m := _word(label).search(answer))]
    return min(found)[1] if found else None


def _word(label: str) -> re.Pattern[str]:
    # a word, not a substring: the label "en" is not in "French"
    return re.compile(rf"(?<!\w){re.escape(label)}(?!\w)", re.IGNORECASE)


def _unmapped_message(errors: Sequence[str | None], noun: str = "input") -> str:
    failed = [e for e in errors if e is not None]
    more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
    return f"{len(failed)} of {len(errors)} {noun}s got no label: {'; '.join(failed[:5])}{more}."


def sum_usage(parts: Sequence[Usage]) -> Usage:
    """The rows' token counts added up: a count unknown for one row is unknown for all."""

    def total(name: str) -> int | None:
        values = [getattr(u, name) for u in parts]
        return None if not values or None in values else sum(values)

    sources = {u.source for u in parts}
    source = sources.pop() if len(sources) == 1 else "estimate"
    return Usage(
        input_tokens=total("input_tokens"),
        output_tokens=total("output_tokens"),
        cache_read_tokens=total("cache_read_tokens"),
        cache_write_tokens=total("cache_write_tokens"),
        reasoning_tokens=total("reasoning_tokens"),
        source=source,
    )


def _done(timer: CallTimer, result: ClassifyResult, items: int, noun: str) -> Classifications:
    failed = _unmapped_message(result.errors, noun) if result.errors else None
    record = finish_items(
        timer, result, items, f"classifier returned %d results for %d {noun}s", failed
    )
    return Classifications(result.results, record.usage, record, result.errors)


def finish_items(
    timer: CallTimer,
    result: ClassifyResult | DetectResult,
    items: int,
    mismatch: str,
    failed: str | None,
) -> CallRecord:
    """Record a task call over ``items`` inputs: failed (MalformedResponseError, ``mismatch``
    filled with the counts) when the backend answered another number of rows, else a success
    counting the items, whose error fields say which rows failed (``failed``)."""
    if len(result.results) != items:
        error = MalformedResponseError(f"the {mismatch % (len(result.results), items)}")
        timer.fail(error)
        raise error
    usage = dataclasses.replace(result.usage, items=items)
    partly = MalformedResponseError(failed) if failed else None
    return timer.succeed(
        usage=usage, model_id=result.model_id, finish_reason=None, failed_items=partly
    )
