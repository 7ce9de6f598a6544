"""Running a comparison: each model over a prompt set, every call tagged, recorded and graded.

For each model in turn: ``warmup`` calls (tagged ``fmgate.warmup=true``, never scored: they pay the
cold start), then ``repeat`` passes over the items. Local models that batch run ``generate_many``
one batch at a time; the others run one call per item, ``concurrency`` at a time. Chat answers are
graded on this thread after the model's pass; encoders (which embed and cannot generate) run a
retrieval task instead, graded ``retrieval@1``. A classification set (rows with a ``label``) is
classified instead (see :mod:`.classifying`), graded ``accuracy`` or ``macro_f1``. An image set
(:mod:`.images`) is classified or searched for objects (see :mod:`.imaging`), graded ``top1``,
``top5`` or ``recall@0.5``. An image-generation set (:mod:`.drawing`) is drawn, one
``generate_image`` call per row, never graded; the images go to ``image_dir``, not the store.

A row that asks for structure adds its own ``output=`` (its schema), ``tools=`` and ``tool_choice``
to the run's ``params``; a local batch holds rows that ask for the same structure, since one
``generate_many`` call takes one set of params. A reply that does not validate against its
schema is a wrong answer, not an outage: graded (``json_schema`` gives it 0) and shown in the
report's validity rate, but not counted in ``CompareRun.errors``.

Every record carries its own item's tags (run, prompt, repeat, role; batched calls take them
through ``generate_many(tags=...)``), and every score names the record it grades.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextvars import copy_context
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from .._errors import FmgateError, InvalidRequestError, NoLabelError, OutputValidationError
from .._model import Model
from .._record import CallRecord, Score
from .._recording import MemorySink, add_sink, remove_sink
from .._store import DEFAULT_STORE, SqliteStore
from .._tags import PROMPT, REPEAT, ROLE, RUN, WARMUP, tagged
from .._types import Classifications, Detections, Embeddings, Response
from .classifying import (
    ClassifyCall,
    check_classifiers,
    classify_batch,
    classify_calls,
    classify_labels,
    planned_classify_calls,
    top_labels,
)
from .drawing import DrawCall, ImageFolder, check_drawers, draw, is_image_generation
from .image_scorers import BoxRecallScorer, TopKScorer
from .images import ImageItem, canonical_labels, image_items, image_task
from .imaging import (
    ImageCall,
    check_image_models,
    image_batch,
    image_calls,
    planned_image_calls,
    see,
)
from .prompts import PromptItem, is_classification
from .scorers import (
    RETRIEVAL,
    ChecksItems,
    ClassificationScorer,
    GradesResponses,
    JsonSchemaScorer,
    RetrievalIndex,
    Scorer,
    ScoreResult,
    ToolCallScorer,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "CompareRun",
    "check_scorer",
    "embeds_only",
    "new_run_id",
    "planned_calls",
    "run_compare",
]

DEFAULT_CONCURRENCY = 8  # calls in flight per API or self-hosted model
Progress = Callable[[str, int], None]
_Outcome = Response | FmgateError
_Classified = Classifications | FmgateError
_Seen = Classifications | Detections | FmgateError
Items = Sequence[PromptItem] | Sequence[ImageItem]
_C = TypeVar("_C")
_R = TypeVar("_R")


@dataclass
class CompareRun:
    """What one comparison produced: every record tagged with its run id (candidates, warm-up,
    the judge's and index calls, failures included) in the order recorded, the scores, and the
    number of measured calls that failed."""

    run_id: str
    records: list[CallRecord] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    errors: int = 0


def new_run_id() -> str:
    """A short id that sorts by time: ``20250131-142501-a3f9`` (UTC)."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def embeds_only(model: Model) -> bool:
    """Whether ``model`` is an encoder: it embeds and cannot generate. Read from the loaded
    weights (the transformers backend's ``loaded.is_encoder``), not learned from a failed call."""
    if not model.backend.supports_embeddings:
        return False
    loaded = getattr(model.backend, "loaded", None)
    return getattr(loaded, "is_encoder", False) is True


def planned_calls(
    models: Sequence[Model], items: Items, *, repeat: int = 1, warmup: int = 1
) -> int:
    """How many calls :func:`run_compare` makes to ``models`` (not the judge's): with one model,
    the total its progress counts up to."""
    images = image_items(items)
    if images is not None:
        task = image_task(images)
        return sum(planned_image_calls(m, images, task, repeat, warmup) for m in models)
    items = _prompts(items)
    if is_image_generation(items):
        return len(models) * (warmup + repeat * len(items))
    if is_classification(items):
        return sum(planned_classify_calls(m, len(items), repeat, warmup) for m in models)
    index = 1 if any(item.expected is not None for item in items) else 0
    per_model = warmup + repeat * len(items)
    return sum(per_model + (index if embeds_only(m) else 0) for m in models)


@dataclass(frozen=True, slots=True)
class _Call:
    item: PromptItem
    repeat: int
    warmup: bool = False

    def tags(self, run_id: str) -> dict[str, str]:
        tags = {RUN: run_id, PROMPT: self.item.id, REPEAT: str(self.repeat), ROLE: "candidate"}
        return {**tags, WARMUP: "true"} if self.warmup else tags


def _prompts(items: Items) -> list[PromptItem]:
    return [item for item in items if isinstance(item, PromptItem)]


def run_compare(
    models: Sequence[Model],
    items: Items,
    *,
    repeat: int = 1,
    warmup: int = 1,
    scorer: Scorer | None = None,
    concurrency: int | None = None,
    params: Mapping[str, Any] | None = None,
    on_progress: Progress | None = None,
    run_id: str | None = None,
    store: SqliteStore | None = None,
    image_dir: str | os.PathLike[str] | None = None,
) -> CompareRun:
    """Run every model over ``items`` and grade the answers; failed calls are counted, not raised.

    ``params`` go to every call (``max_tokens=64``). ``concurrency`` (default 8) applies to API
    and self-hosted models; local models batch, or run one call at a time. ``on_progress(label,
    n_done)`` is called on this thread as calls finish, with the model's name (alias or spec)
    and that model's calls done so far (out of ``planned_calls([model], ...)``). Scores go to
    ``store`` (default: the default store, where the records go). ``items`` are a prompt set's
    (:func:`load_prompts`) or an image set's (:func:`load_images`). An image-generation set's
    images are written under ``image_dir`` (``images/<model>/``, with thumbnails and an index
    the report reads); without it they are drawn, timed and dropped.
    """
    _check(models, items, repeat, warmup, concurrency)
    _check_task(models, items, scorer)
    if isinstance(scorer, ChecksItems):
        scorer.check(items)  # a bad pattern or judge fails before any model is called
    run = CompareRun(run_id or new_run_id())
    session = _Session(run, scorer, dict(params or {}), concurrency, on_progress, store)
    session.images = ImageFolder(image_dir, run.run_id) if image_dir is not None else None
    # Records are collected as emitted, not from the results: a failed call's error does not
    # carry its record, and the judge's calls happen inside the scorer. The run tag finds them.
    collector = MemorySink(maxlen=None)
    add_sink(collector)
    try:
        for model in models:
            session.run_model(model, items, repeat, warmup)
    finally:
        remove_sink(collector)
        run.records = [r for r in collector.records if r.tags.get(RUN) == run.run_id]
    return run


def _check(
    models: Sequence[Model],
    items: Items,
    repeat: int,
    warmup: int,
    concurrency: int | None,
) -> None:
    if not models or not items:
        raise InvalidRequestError("compare needs at least one model and one prompt.")
    counts = [("repeat", repeat, 1), ("warmup", warmup, 0), ("concurrency", concurrency, 1)]
    for name, value, least in counts:
        if value is None and name == "concurrency":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InvalidRequestError(f"{name} must be an int >= {least}, not {value!r}.")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise InvalidRequestError("every prompt item needs its own id: the records name it.")


def _check_task(models: Sequence[Model], items: Items, scorer: Scorer | None) -> None:
    """A classification set needs models that classify and a scorer that grades labels; an
    image set models that classify images (or detect objects) and an image scorer."""
    check_scorer(items, scorer)
    images = image_items(items)
    if images is not None:
        check_image_models(models, image_task(images))
    elif is_image_generation(items):
        check_drawers(models)
    elif is_classification(_prompts(items)):
        check_classifiers(models)


def check_scorer(items: Items, scorer: Scorer | None) -> None:
    """Refuse a scorer that cannot grade ``items``: labels need accuracy or macro_f1, and
    those need labels; json_schema needs rows with a schema, tool_call rows with an expected
    tool; an image set top1, top5 or recall@0.5. Cheap: the CLI calls it before loading any
    model."""
    if isinstance(scorer, TopKScorer | BoxRecallScorer):
        scorer.check(items)
        return
    images = image_items(items)
    if images is not None:
        if scorer is not None:
            right = "recall@0.5" if image_task(images) == "detect" else "top1 or top5"
            raise InvalidRequestError(
                f"The set is an image set: grade it with {right}, not {scorer.name}."
            )
        return
    items = _prompts(items)
    if scorer is not None and is_image_generation(items):
        raise InvalidRequestError(
            f"The set is an image-generation set: no scorer grades drawings (no CLIP model is "
            f"available); leave out --scorer {scorer.name}."
        )
    if isinstance(scorer, ClassificationScorer):
        scorer.check(items)
    elif scorer is not None and is_classification(items):
        raise InvalidRequestError(
            f"The prompt set is a classification set (its rows have a 'label'): grade it with "
            f"the accuracy or macro_f1 scorer, not {scorer.name}."
        )
    elif isinstance(scorer, JsonSchemaScorer | ToolCallScorer):
        scorer.check(items)


class _Session:
    """One run's settings and tallies, shared by the models it runs in turn."""

    def __init__(
        self,
        run: CompareRun,
        scorer: Scorer | None,
        params: dict[str, Any],
        concurrency: int | None,
        on_progress: Progress | None,
        store: SqliteStore | None,
    ) -> None:
        self.run = run
        self._scorer = scorer
        self._params = params
        self._concurrency = concurrency or DEFAULT_CONCURRENCY
        self._on_progress = on_progress
        self._store = store if store is not None else DEFAULT_STORE.current()
        self._done = 0
        self.images: ImageFolder | None = None

    def run_model(self, model: Model, items: Items, repeat: int, warmup: int) -> None:
        self._done = 0  # progress counts per model: the CLI draws one bar for each
        images = image_items(items)
        if images is not None:
            self._images(model, images, repeat, warmup)
            return
        items = _prompts(items)
        if is_image_generation(items):
            self._drawing(model, items, repeat, warmup)
            return
        if is_classification(items):
            self._classification(model, items, repeat, warmup)
            return
        n = len(items)
        warm = [_Call(items[i % n], i // n, warmup=True) for i in range(warmup)]
        measured = [_Call(item, r) for r in range(repeat) for item in items]
        if embeds_only(model):
            self._retrieval(model, items, warm, measured)
            return
        self._chat(model, warm, width=1)  # one at a time: the cold start is paid once
        results = self._chat(model, measured, width=self._width(model))
        # a reply of the wrong shape is a wrong answer, graded as one, not an outage
        self.run.errors += sum(
            isinstance(outcome, FmgateError) and not isinstance(outcome, OutputValidationError)
            for _, outcome in results
        )
        if self._scorer is not None:
            self._grade(self._scorer, results)

    def _width(self, model: Model) -> int:
        return 1 if model.backend.distribution == "local" else self._concurrency

    def _chat(self, model: Model, calls: list[_Call], width: int) -> list[tuple[_Call, _Outcome]]:
        if model.backend.default_batch_size > 1:
            return self._batched(model, calls)
        return self._one_by_one(model, calls, width)

    def _batched(self, model: Model, calls: list[_Call]) -> list[tuple[_Call, _Outcome]]:
        """Batches of rows that ask for the same structure (one ``generate_many`` takes one
        ``output=`` and ``tools=``), in the calls' order within each; results in ``calls``'
        order."""
        size = model.backend.default_batch_size
        outcomes: dict[int, _Outcome] = {}
        for group in _same_structure(calls):
            for start in range(0, len(group), size):
                batch = group[start : start + size]
                done = model.generate_many(
                    [calls[i].item.prompt for i in batch],
                    batch_size=size,
                    return_exceptions=True,
                    tags=[calls[i].tags(self.run.run_id) for i in batch],
                    **self._call_params(calls[batch[0]].item),
                )
                outcomes.update(zip(batch, done, strict=True))
                self._advance(model, len(batch))
        return [(call, outcomes[i]) for i, call in enumerate(calls)]

    def _call_params(self, item: PromptItem) -> dict[str, Any]:
        """The run's params, and the row's structure (its ``output``, ``tools``, ``tool_choice``
        replace the run's own)."""
        return {**self._params, **item.call_params()}

    def _one_by_one(
        self, model: Model, calls: list[_Call], width: int
    ) -> list[tuple[_Call, _Outcome]]:
        """One call per item, each in its own tags; not ``generate_many``, whose calls all
        share the tags of the block around it."""

        def one(call: _Call) -> _Outcome:
            with tagged(call.tags(self.run.run_id)):
                try:
                    return model.generate(call.item.prompt, **self._call_params(call.item))
                except FmgateError as exc:
                    return exc

        return self._concurrently(model, calls, width, one)

    def _concurrently(
        self, model: Model, calls: list[_C], width: int, one: Callable[[_C], _R]
    ) -> list[tuple[_C, _R]]:
        """``one(call)`` for every call, ``width`` at a time, in the order of ``calls``."""
        outcomes: dict[int, _R] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(width, len(calls)))) as pool:
            # copy_context: the caller's own tags (an outer fmgate.tagged) reach every record
            futures = {pool.submit(copy_context().run, one, c): i for i, c in enumerate(calls)}
            for future in as_completed(futures):
                outcomes[futures[future]] = future.result()
                self._advance(model, 1)
        return [(call, outcomes[i]) for i, call in enumerate(calls)]

    def _classification(
        self, model: Model, items: list[PromptItem], repeat: int, warmup: int
    ) -> None:
        """Classify every text: warm-up calls one text at a time, then batches locally or one
        text per call, ``concurrency`` at a time, for API and self-hosted models."""
        labels = classify_labels(model, items)
        # --max-tokens bounds a zero-shot answer; a classifier of its own generates nothing
        max_tokens = self._params.get("max_tokens") if labels is not None else None
        size = classify_batch(model)
        warm, measured = classify_calls(items, repeat, warmup, size)

        def one(call: ClassifyCall) -> _Classified:
            with tagged(call.tags(self.run.run_id)):
                try:
                    texts = [item.prompt for item in call.items]
                    return model.classify(texts, labels=labels, max_tokens=max_tokens)
                except FmgateError as exc:
                    return exc

        self._concurrently(model, warm, 1, one)  # one at a time: the cold start is paid once
        width = 1 if size > 1 else self._width(model)
        results = self._concurrently(model, measured, width, one)
        # a call whose answers named no label is a wrong answer, graded as one, not an outage
        self.run.errors += sum(
            isinstance(outcome, FmgateError) and not isinstance(outcome, NoLabelError)
            for _, outcome in results
        )
        if isinstance(self._scorer, ClassificationScorer):
            self._grade_classes(self._scorer, results)

    def _images(self, model: Model, items: list[ImageItem], repeat: int, warmup: int) -> None:
        """Classify the images, or find their objects: warm-up calls one image at a time, then
        batches locally or one image per call, ``concurrency`` at a time, elsewhere."""
        task = image_task(items)
        labels = canonical_labels(items)
        max_tokens = self._params.get("max_tokens")
        size = image_batch(model, task)
        warm, measured = image_calls(items, repeat, warmup, size)

        def one(call: ImageCall) -> _Seen:
            with tagged(call.tags(self.run.run_id)):
                try:
                    return see(model, call, task, labels, max_tokens)
                except FmgateError as exc:
                    return exc

        self._concurrently(model, warm, 1, one)  # one at a time: the cold start is paid once
        width = 1 if size > 1 else self._width(model)
        results = self._concurrently(model, measured, width, one)
        self.run.errors += sum(
            isinstance(outcome, FmgateError) and not isinstance(outcome, NoLabelError)
            for _, outcome in results
        )
        if isinstance(self._scorer, TopKScorer | BoxRecallScorer):
            self._grade_images(self._scorer, results)

    def _drawing(self, model: Model, items: list[PromptItem], repeat: int, warmup: int) -> None:
        """Draw every row: warm-up calls one at a time, then one call per row and pass, one at a
        time locally, ``concurrency`` at a time elsewhere; each call's images saved as it ends."""
        n = len(items)
        warm = [DrawCall(items[i % n], i // n, warmup=True) for i in range(warmup)]
        measured = [DrawCall(item, r) for r in range(repeat) for item in items]
        folder = self.images
        name = folder.folder(model.alias or model.spec) if folder is not None else ""
        saved: dict[DrawCall, list[tuple[str, str]]] = {}
        params = {k: v for k, v in self._params.items() if k not in ("max_tokens", "temperature")}

        def one(call: DrawCall) -> FmgateError | None:
            with tagged(call.tags(self.run.run_id)):
                try:
                    drawn = draw(model, call.item, params)
                except FmgateError as exc:
                    return exc
            if folder is not None and not call.warmup:
                saved[call] = folder.save(name, call, drawn)
            return None

        self._concurrently(model, warm, 1, one)  # one at a time: the cold start is paid once
        results = self._concurrently(model, measured, self._width(model), one)
        self.run.errors += sum(outcome is not None for _, outcome in results)
        if folder is not None:
            by_row: dict[str, list[tuple[str, str]]] = {}
            for call in measured:  # in pass order: a row's strip shows its first drawing
                by_row.setdefault(call.item.id, []).extend(saved.get(call, []))
            folder.add_model(model.alias or model.spec, items, by_row)

    def _grade_images(
        self,
        scorer: TopKScorer | BoxRecallScorer,
        results: list[tuple[ImageCall, _Seen]],
    ) -> None:
        """Each call's images against their labels or boxes; a zero-shot call whose answers
        named no label is graded wrong, never left out."""
        for call, outcome in results:
            if isinstance(outcome, NoLabelError) and outcome.record is not None:
                if isinstance(scorer, TopKScorer):
                    result = scorer.grade([(item, []) for item in call.items])
                    self._add_score(outcome.record.id, scorer.name, result)
            elif isinstance(outcome, Classifications) and isinstance(scorer, TopKScorer):
                ranked = [[label for label, _ in row] for row in outcome.results]
                result = scorer.grade(list(zip(call.items, ranked, strict=True)))
                self._add_score(outcome.record.id, scorer.name, result)
            elif isinstance(outcome, Detections) and isinstance(scorer, BoxRecallScorer):
                result = scorer.grade(list(zip(call.items, outcome.results, strict=True)))
                self._add_score(outcome.record.id, scorer.name, result)

    def _grade_classes(
        self, scorer: ClassificationScorer, results: list[tuple[ClassifyCall, _Classified]]
    ) -> None:
        for call, outcome in results:
            if isinstance(outcome, Classifications):
                rows = list(zip(call.items, top_labels(outcome), strict=True))
                self._add_score(outcome.record.id, scorer.name, scorer.grade(rows))
            elif isinstance(outcome, NoLabelError) and outcome.record is not None:
                unlabelled = [(item, None) for item in call.items]
                self._add_score(outcome.record.id, scorer.name, scorer.grade(unlabelled))

    def _grade(self, scorer: Scorer, results: list[tuple[_Call, _Outcome]]) -> None:
        for call, outcome in results:
            if isinstance(scorer, GradesResponses) and isinstance(outcome, OutputValidationError):
                if outcome.record is not None:  # graded 0, not left out: a wrong shape
                    result = scorer.score_response(call.item, outcome)
                    self._add_score(outcome.record.id, scorer.name, result)
            elif isinstance(outcome, Response):
                # the run's tags, so a judge's own records are found with the run's
                with tagged({RUN: self.run.run_id, REPEAT: str(call.repeat)}):
                    result = (
                        scorer.score_response(call.item, outcome)
                        if isinstance(scorer, GradesResponses)
                        else scorer.score(call.item, outcome.text)
                    )
                self._add_score(outcome.record.id, scorer.name, result)

    def _retrieval(
        self, model: Model, items: list[PromptItem], warm: list[_Call], measured: list[_Call]
    ) -> None:
        """Encoders: embed each prompt alone (one record, one score each) and find its own
        expected text among all of them, embedded once as the index."""
        for call in warm:
            self._embed(model, call)
        index = self._index(model, items)
        for call in measured:
            outcome = self._embed(model, call)
            if isinstance(outcome, FmgateError):
                self.run.errors += 1
                continue
            result = index.score(call.item, outcome.vectors[0]) if index else _NO_INDEX
            self._add_score(outcome.record.id, RETRIEVAL, result)

    def _embed(self, model: Model, call: _Call) -> Embeddings | FmgateError:
        with tagged(call.tags(self.run.run_id)):
            try:
                return model.embed([call.item.prompt])
            except FmgateError as exc:
                return exc
            finally:
                self._advance(model, 1)

    def _index(self, model: Model, items: list[PromptItem]) -> RetrievalIndex | None:
        refs = [(item.id, item.expected) for item in items if item.expected is not None]
        if not refs:
            return RetrievalIndex([], [])  # nothing to retrieve: every score is None
        with tagged({RUN: self.run.run_id, ROLE: "index"}):
            try:
                embedded = model.embed([text for _, text in refs])
            except FmgateError:
                self.run.errors += 1
                return None
            finally:
                self._advance(model, 1)
        return RetrievalIndex([ident for ident, _ in refs], embedded.vectors)

    def _add_score(self, record_id: str, scorer: str, result: ScoreResult) -> None:
        now = datetime.now(UTC)
        score = Score(record_id, scorer, result.value, now, result.judge_record_id, result.detail)
        self.run.scores.append(score)
        if self._store is not None:
            self._store.write_score(score)

    def _advance(self, model: Model, calls: int) -> None:
        self._done += calls
        if self._on_progress is not None:
            self._on_progress(model.alias or model.spec, self._done)


_NO_INDEX = ScoreResult(None, "the index call (embedding the expected texts) failed")


def _same_structure(calls: Sequence[_Call]) -> list[list[int]]:
    """The calls' positions, grouped by the structure their rows ask for, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, call in enumerate(calls):
        key = json.dumps(call.item.call_params(), sort_keys=True, default=str)
        groups.setdefault(key, []).append(i)
    return list(groups.values())
