"""Break-even between self-hosting and APIs, from measured throughput (docs/economics.md).

``breakeven(records, scores, hardware=...)`` sets every local or self-hosted chat model in the
records against every API model on the same prompts; ``capacity(records)`` is a model's measured
calls per second under a p90 latency target; ``rented``, ``owned`` and ``find_hardware`` name
what the machine costs. ``fmgate breakeven`` and the report's break-even section use the same
functions.
"""

from ._economics import (
    DEFAULT_IDLE_FRACTION,
    DEFAULT_LIFETIME_YEARS,
    DEFAULT_UTILISATION,
    HOURS_PER_MONTH,
    VOLUMES,
    ApiSide,
    BreakEven,
    Call,
    Capacity,
    Hardware,
    Level,
    breakeven,
    calls_from_store,
    calls_of,
    capacity,
    default_hardware,
    find_hardware,
    hardware_table,
    levels,
    owned,
    rented,
)

__all__ = [
    "DEFAULT_IDLE_FRACTION",
    "DEFAULT_LIFETIME_YEARS",
    "DEFAULT_UTILISATION",
    "HOURS_PER_MONTH",
    "VOLUMES",
    "ApiSide",
    "BreakEven",
    "Call",
    "Capacity",
    "Hardware",
    "Level",
    "breakeven",
    "calls_from_store",
    "calls_of",
    "capacity",
    "default_hardware",
    "find_hardware",
    "hardware_table",
    "levels",
    "owned",
    "rented",
]
