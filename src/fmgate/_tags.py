"""Tags: labels put on every record of the calls made inside a ``with fmgate.tagged(...)`` block.

The tags live in a context variable, so they follow asyncio tasks and the threads of
``generate_many``, and nest (an inner block adds to, and may override, the outer one).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

from ._errors import InvalidRequestError

_EMPTY: Mapping[str, str] = MappingProxyType({})
_TAGS: ContextVar[Mapping[str, str]] = ContextVar("fmgate_tags", default=_EMPTY)


@contextmanager
def tagged(tags: Mapping[str, str] | None = None, /, **more: str) -> Iterator[None]:
    """Label the records of the calls started inside the block.

    ``with fmgate.tagged(experiment="prompt-v2"): m.generate(...)`` gives the record
    ``tags == {"experiment": "prompt-v2"}``. Keys and values are strings; keys that start
    with ``fmgate.`` are set by fmgate itself (``fmgate compare``).
    """
    merged = {**(tags or {}), **more}
    for key, value in merged.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise InvalidRequestError(
                f"tags must map non-empty strings to strings; got {key!r}: {value!r}"
            )
    token = _TAGS.set(MappingProxyType({**_TAGS.get(), **merged}))
    try:
        yield
    finally:
        _TAGS.reset(token)


def current_tags() -> Mapping[str, str]:
    """The tags in force now (read-only)."""
    return _TAGS.get()


# The tags ``fmgate compare`` puts on its calls; the report reads them back.
RUN = "fmgate.run"  # the comparison run's id
PROMPT = "fmgate.prompt"  # the prompt item's id in the prompt set
REPEAT = "fmgate.repeat"  # "0", "1", ...: which repeat of the prompt
WARMUP = "fmgate.warmup"  # "true" on warm-up calls, which statistics leave out
TOOL_LOOP = "fmgate.tool_loop"  # the id shared by the model calls of one run_tools=True loop
ROLE = "fmgate.role"  # "candidate" (a model compared), "judge" (a judge grading), "index"
SWEEP = "fmgate.sweep"  # the concurrency sweep's id (``fmgate bench``: the run id)
CONCURRENCY = "fmgate.concurrency"  # "1", "2", "4", ...: calls in flight (or batch size)
