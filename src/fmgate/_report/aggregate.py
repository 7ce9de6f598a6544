"""Per-model aggregates computed from call records alone.

One :class:`ModelSummary` per (label, role): the label is the alias or ``backend:model_id``, the
role the ``fmgate.role`` tag (``candidate`` when absent), so a model used as a judge gets a row of
its own. Warm-up calls are left out of every statistic except ``load_s``: warm-up exists to absorb
the cold start, and the cold start is exactly what ``load_s`` reports, apart from the rest.
Anything fmgate cannot compute is ``None``, never 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from .._compare.classification import CLASSIFICATION_SCORERS, ClassMetrics, class_metrics
from .._compare.image_scorers import IMAGE_SCORERS, ImageMetrics, image_metrics
from .._record import CallRecord, Score
from .._tags import ROLE, WARMUP

__all__ = [
    "ModelSummary",
    "is_image_task",
    "is_warmup",
    "label_of",
    "percentile",
    "role_of",
    "row_labels",
    "summarize",
]


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """What one model did over a set of records: reliability, speed, cost, quality, access."""

    label: str
    role: str
    operation: str
    backend: str
    model_id: str
    provider: str | None
    distribution: str
    calls: int
    ok: int
    success_rate: float | None
    latency_p50_s: float | None
    latency_p90_s: float | None
    latency_p99_s: float | None
    ttft_p50_s: float | None
    ttft_p90_s: float | None
    ttft_p99_s: float | None
    decode_tokens_per_s: float | None
    output_tokens_per_s: float | None
    load_s: float | None
    cost_per_call: Decimal | None
    cost_per_1k_calls: Decimal | None
    cost_known_calls: int
    cost_basis: str
    quality: float | None
    quality_scorer: str | None
    scored: int
    open_weights: bool | None
    license: str | None
    parameters: int | None
    data_leaves_machine: bool | None
    offline_capable: bool | None
    requires_api_key: bool | None
    errors: dict[str, int] = field(default_factory=dict)
    warmup: int = 0
    tries_per_call: float | None = None  # mean outcome.attempts: retries are part of availability
    fallbacks: int = 0  # calls this model served for another that failed
    # outcome.sent on channels whose data leaves the machine: calls that did send (sent_off),
    # and calls that cannot say (records older than the field, or a send cut off midway).
    sent_off: int = 0
    sent_unknown: int = 0
    batch_size: int | None = None  # the largest generate_many batch: latency is the batch's
    # Classification runs (scorer accuracy or macro_f1): over every graded text, not per call.
    accuracy: float | None = None
    macro_f1: float | None = None
    # Structured output (record.output): replies checked against a schema, and those valid.
    output_checked: int = 0
    output_valid: int = 0
    validity_rate: float | None = None
    # Tools (record.tools): calls offered tools, and the mean tool calls the model made in them.
    calls_with_tools: int = 0
    tools_called_per_call: float | None = None
    # Image tasks (classify or detect on images): per image, over the successful calls.
    images: int | None = None  # images in successful calls; None: no image task
    top1: float | None = None  # over every graded image (top1 and top5 scorers keep both)
    top5: float | None = None
    images_graded: int = 0
    recall: float | None = None  # detection: true boxes found at IoU >= 0.5, over all boxes
    precision: float | None = None  # detections that found a true box, over all detections
    boxes: int = 0  # true boxes graded
    latency_per_image_p50_s: float | None = None  # median of each call's latency / its images
    images_per_s: float | None = None  # all images over all call time
    cost_per_image: Decimal | None = None
    cost_per_1k_images: Decimal | None = None
    # Image generation (task "image"): images drawn in successful calls; None: drew nothing.
    # The per-image latency, rate and cost above then count the images drawn.
    generated: int | None = None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (a fraction: 0.9 for p90) by linear interpolation between closest ranks.

    The same as numpy's default (``method="linear"``) and ``statistics.quantiles(method=
    "inclusive")``; ``None`` for no values.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q is a fraction in [0, 1] (0.9 for p90), got {q!r}")
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (position - lower) * (ordered[upper] - ordered[lower])


def label_of(record: CallRecord) -> str:
    """The alias or spec; a call made by fmgate serve on a client's behalf is marked apart."""
    label = record.alias or f"{record.backend}:{record.model_id}"
    return f"{label} (served)" if record.tags.get("fmgate.served") == "true" else label


def is_image_task(record: CallRecord) -> bool:
    """A call that classified images or detected objects (a chat call with an image is not)."""
    return record.operation in ("classify", "detect") and bool(record.usage.images_in)


def task_of(record: CallRecord) -> str:
    """The record's task as a row tells it: ``classify images`` apart from classifying texts."""
    if record.operation == "classify" and is_image_task(record):
        return "classify images"
    if record.task == "image":
        return "generate images"
    return record.operation


def row_labels(records: Sequence[CallRecord]) -> Callable[[CallRecord], str]:
    """Each record's row: its label, with the task named when the same model did several tasks
    in these records (a chat model answering prompts and classifying texts gets two rows: their
    latencies, costs and scores do not mix; classifying images is a task of its own)."""
    operations: dict[str, set[str]] = {}
    for record in records:
        operations.setdefault(label_of(record), set()).add(task_of(record))

    def row(record: CallRecord) -> str:
        label = label_of(record)
        return f"{label} · {task_of(record)}" if len(operations[label]) > 1 else label

    return row


def role_of(record: CallRecord) -> str:
    return record.tags.get(ROLE) or "candidate"


def is_warmup(record: CallRecord) -> bool:
    return record.tags.get(WARMUP) == "true"


def summarize(records: Sequence[CallRecord], scores: Sequence[Score] = ()) -> list[ModelSummary]:
    """One summary per (row, role): candidates in order of first appearance, judges last. A row
    is a model, or a model's task where it did several (:func:`row_labels`)."""
    row = row_labels(records)
    groups: dict[tuple[str, str], list[CallRecord]] = {}
    for record in records:
        groups.setdefault((row(record), role_of(record)), []).append(record)
    summaries = [_summarize_group(*key, group, scores) for key, group in groups.items()]
    rank = {"candidate": 0, "judge": 2}
    return sorted(summaries, key=lambda s: rank.get(s.role, 1))


def _summarize_group(
    label: str, role: str, group: list[CallRecord], scores: Sequence[Score]
) -> ModelSummary:
    counted = [r for r in group if not is_warmup(r)]
    ok = [r for r in counted if r.ok]
    newest = max(group, key=lambda r: r.started_at)
    total = _present(r.latency.total_s for r in ok)
    ttft = _present(r.latency.ttft_s for r in ok)
    cost = _costs(counted)
    classes = _classified(counted, scores)
    pictures = _pictured(counted, scores)
    quality = _quality(counted, scores, classes, pictures)
    drawing = [r for r in counted if r.task == "image"]
    per_image = _per_image(drawing or counted)
    access = newest.access
    structure = _structure(counted)
    return ModelSummary(
        label=label,
        role=role,
        operation=Counter(r.operation for r in group).most_common(1)[0][0],
        backend=newest.backend,
        model_id=newest.model_id,
        provider=newest.provider,
        distribution=newest.distribution,
        calls=len(counted),
        ok=len(ok),
        success_rate=len(ok) / len(counted) if counted else None,
        latency_p50_s=percentile(total, 0.5),
        latency_p90_s=percentile(total, 0.9),
        latency_p99_s=percentile(total, 0.99),
        ttft_p50_s=percentile(ttft, 0.5),
        ttft_p90_s=percentile(ttft, 0.9),
        ttft_p99_s=percentile(ttft, 0.99),
        decode_tokens_per_s=percentile(_present(r.latency.decode_tokens_per_s for r in ok), 0.5),
        output_tokens_per_s=_throughput(ok),
        load_s=max(_present(r.latency.load_s for r in group), default=None),
        cost_per_call=cost.per_call,
        cost_per_1k_calls=cost.per_call * 1000 if cost.per_call is not None else None,
        cost_known_calls=cost.known,
        cost_basis=cost.basis,
        quality=quality.mean,
        quality_scorer=quality.scorer,
        scored=quality.scored,
        open_weights=access.open_weights,
        license=access.license,
        parameters=access.parameters,
        data_leaves_machine=access.data_leaves_machine,
        offline_capable=access.offline_capable,
        requires_api_key=access.requires_api_key,
        errors=dict(Counter(r.outcome.error_type or "unknown" for r in counted if not r.ok)),
        warmup=len(group) - len(counted),
        tries_per_call=sum(r.outcome.attempts for r in counted) / len(counted) if counted else None,
        fallbacks=sum(1 for r in counted if r.outcome.fallback_from),
        sent_off=sum(1 for r in counted if _leaves(r) and r.outcome.sent),
        sent_unknown=sum(1 for r in counted if _leaves(r) and r.outcome.sent is None),
        batch_size=_batch_size(counted),
        accuracy=classes.accuracy,
        macro_f1=classes.macro_f1,
        output_checked=structure.checked,
        output_valid=structure.valid,
        validity_rate=structure.validity_rate,
        calls_with_tools=structure.with_tools,
        tools_called_per_call=structure.tools_called,
        images=None if drawing else per_image.images,
        top1=pictures.top1,
        top5=pictures.top5,
        images_graded=pictures.images,
        recall=pictures.recall,
        precision=pictures.precision,
        boxes=pictures.boxes,
        latency_per_image_p50_s=per_image.latency_p50_s,
        images_per_s=per_image.per_s,
        cost_per_image=per_image.cost,
        cost_per_1k_images=per_image.cost * 1000 if per_image.cost is not None else None,
        generated=per_image.images if drawing else None,
    )


class _PerImage(NamedTuple):
    images: int | None
    latency_p50_s: float | None
    per_s: float | None
    cost: Decimal | None


def _per_image(counted: list[CallRecord]) -> _PerImage:
    """Speed and cost per image over the successful image calls: a batched call's latency is
    shared by its images, so per image it is the call's latency over its images."""
    calls = [r for r in counted if is_image_task(r) or r.task == "image"]
    if not calls:
        return _PerImage(None, None, None, None)
    ok = [(r, _images_of(r)) for r in calls if r.ok and _images_of(r)]
    timed = [(r.latency.total_s, n) for r, n in ok if r.latency.total_s is not None]
    seconds = sum(t for t, _ in timed)
    priced = [(r.cost.amount, n) for r, n in ok if r.cost.amount is not None]
    cost = sum((a for a, _ in priced), Decimal(0)) / sum(n for _, n in priced) if priced else None
    return _PerImage(
        sum(n for _, n in ok),
        percentile([t / n for t, n in timed], 0.5),
        sum(n for _, n in timed) / seconds if seconds > 0 else None,
        cost,
    )


def _images_of(record: CallRecord) -> int:
    return record.usage.items or record.usage.images_in or 0


class _Structure(NamedTuple):
    checked: int
    valid: int
    validity_rate: float | None
    with_tools: int
    tools_called: float | None


def _structure(counted: list[CallRecord]) -> _Structure:
    """Validity over the replies checked against a schema (``output.valid`` True or False; a
    call that failed before any reply, or called a tool instead, was not checked), and tool
    use over the calls offered tools."""
    checked = [r.output.valid for r in counted if r.output.valid is not None]
    offered = [r for r in counted if r.tools.offered]
    called = [r.tools.called for r in offered if r.tools.called is not None]
    valid = sum(checked)
    return _Structure(
        len(checked),
        valid,
        valid / len(checked) if checked else None,
        len(offered),
        sum(called) / len(called) if called else None,
    )


def _leaves(record: CallRecord) -> bool:
    return record.access.data_leaves_machine is not False


def _batch_size(counted: list[CallRecord]) -> int | None:
    """Calls run together in one pass (``params["batch_size"]``, set by ``generate_many``) share
    one clock: each call's latency is its whole batch's. ``None`` when no call was batched."""
    sizes = [r.params.get("batch_size") for r in counted]
    batched = [n for n in sizes if isinstance(n, int) and n > 1]
    return max(batched, default=None)


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def _throughput(ok: list[CallRecord]) -> float | None:
    """End-to-end output tokens per second: also defined for non-streamed API calls. Embedding
    calls generate no tokens: they have none, rather than 0."""
    tokens = 0
    seconds = 0.0
    for r in ok:
        if (
            r.operation == "chat"
            and r.usage.output_tokens is not None
            and r.latency.total_s is not None
        ):
            tokens += r.usage.output_tokens
            seconds += r.latency.total_s
    return tokens / seconds if seconds > 0 else None


class _Cost(NamedTuple):
    per_call: Decimal | None
    known: int
    basis: str


def _costs(counted: list[CallRecord]) -> _Cost:
    amounts = [r.cost.amount for r in counted if r.cost.amount is not None]
    bases = sorted({r.cost.basis for r in counted if r.cost.amount is not None})
    if not amounts:
        return _Cost(None, 0, "unknown")
    basis = bases[0] if len(bases) == 1 else "mixed: " + ", ".join(bases)
    return _Cost(sum(amounts, Decimal(0)) / len(amounts), len(amounts), basis)


class _Quality(NamedTuple):
    mean: float | None
    scorer: str | None
    scored: int


def _quality(
    counted: list[CallRecord],
    scores: Sequence[Score],
    classes: ClassMetrics,
    pictures: ImageMetrics,
) -> _Quality:
    """The mean score of the scorer that graded most of these calls; scores from different
    scorers are never averaged together, and a later score replaces an earlier one. A
    classification scorer's quality is its metric over the texts (a batched call holds many),
    an image scorer's over the images (top-1, top-5) or the true boxes (recall)."""
    ids = {r.id for r in counted}
    latest: dict[str, dict[str, float | None]] = {}
    for score in scores:
        if score.record_id in ids:
            latest.setdefault(score.scorer, {})[score.record_id] = score.value
    graded = {
        scorer: [v for v in values.values() if v is not None] for scorer, values in latest.items()
    }
    graded = {scorer: values for scorer, values in graded.items() if values}
    if not graded:
        return _Quality(None, None, 0)
    scorer, values = max(graded.items(), key=lambda kv: len(kv[1]))
    if scorer in CLASSIFICATION_SCORERS and classes.rows:
        metric = classes.macro_f1 if scorer == "macro_f1" else classes.accuracy
        return _Quality(metric, scorer, classes.rows)
    if scorer in IMAGE_SCORERS and pictures.images:
        if scorer == "recall@0.5":
            return _Quality(pictures.recall, scorer, pictures.boxes)
        return _Quality(
            pictures.top1 if scorer == "top1" else pictures.top5, scorer, pictures.images
        )
    return _Quality(sum(values) / len(values), scorer, len(values))


def _classified(counted: list[CallRecord], scores: Sequence[Score]) -> ClassMetrics:
    """Accuracy and macro-F1 over the texts these calls classified: the rows each record's
    latest classification score keeps (``accuracy`` and ``macro_f1`` keep the same rows)."""
    ids = {r.id for r in counted}
    details = {
        s.record_id: s.detail
        for s in scores
        if s.record_id in ids and s.scorer in CLASSIFICATION_SCORERS
    }
    return class_metrics(details.values())


def _pictured(counted: list[CallRecord], scores: Sequence[Score]) -> ImageMetrics:
    """Top-1, top-5, recall and precision over the images these calls saw: the rows each
    record's latest image score keeps (``top1`` and ``top5`` keep the same rows)."""
    ids = {r.id for r in counted}
    details = {
        s.record_id: s.detail for s in scores if s.record_id in ids and s.scorer in IMAGE_SCORERS
    }
    return image_metrics(details.values())
