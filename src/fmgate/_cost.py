"""List prices for API calls, from the genai-prices package (imported on the first priced call)."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ._record import Cost, Usage

_LOCK = threading.Lock()
_MISSES: set[tuple[str, str]] = set()


@dataclass(frozen=True, slots=True)
class Priced:
    cost: Cost
    context_window: int | None = None


@functools.cache
def _snapshot_label() -> str | None:
    try:
        from importlib.metadata import version

        return f"genai-prices {version('genai-prices')} bundled data"
    except Exception:
        return None


def list_price(
    provider_id: str | None, model_id: str, usage: Usage, *, image_tokens: tuple[int, int] = (0, 0)
) -> Priced:
    """The list price of a call, or basis ``unknown`` when genai-prices does not know the model.

    Never 0 for want of data: unpriced calls have ``amount=None``. ``image_tokens``: the image
    tokens among the input and output tokens, which some models price apart (images APIs).
    """
    if provider_id is None:
        return Priced(unknown("no list prices for this provider"))
    if usage.input_tokens is None or usage.output_tokens is None:
        return Priced(unknown("the provider reported no token counts"))
    if (provider_id, model_id) in _MISSES:
        return Priced(_miss(provider_id, model_id))
    try:
        from genai_prices import data_snapshot
    except ImportError:
        return Priced(Cost(None, "unknown", source="genai-prices not installed"))
    # genai-prices' prices change at day or half-hour boundaries (start dates, off-peak hours),
    # never within a minute, and pricing one usage costs ~0.1 ms: a usage seen again in the same
    # minute under the same data snapshot has the same price.
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    snapshot = id(data_snapshot.get_snapshot())
    return _priced(provider_id, model_id, usage, minute, snapshot, image_tokens)


@functools.lru_cache(maxsize=4096)
def _priced(
    provider_id: str,
    model_id: str,
    usage: Usage,
    at: datetime,
    snapshot: int,
    image_tokens: tuple[int, int] = (0, 0),
) -> Priced:
    import genai_prices

    try:
        calc = genai_prices.calc_price(
            _gp_usage(genai_prices, usage, image_tokens),
            model_id,
            provider_id=provider_id,
            genai_request_timestamp=at,
        )
    except LookupError:
        with _LOCK:
            _MISSES.add((provider_id, model_id))
        return Priced(_miss(provider_id, model_id))
    except Exception as exc:  # genai-prices refusing a usage must not fail the call it prices
        return Priced(Cost(None, "unknown", source=f"genai-prices error: {exc}"[:200]))
    amount = Decimal(calc.total_price)
    return Priced(Cost(amount, "list_price", source=_source(calc)), calc.model.context_window)


def unknown(reason: str) -> Cost:
    """An unpriced call: no amount (never 0), and why."""
    return Cost(None, "unknown", source=reason)


def _miss(provider_id: str, model_id: str) -> Cost:
    return unknown(f"genai-prices has no price for {model_id!r} at {provider_id!r}")


def _gp_usage(genai_prices: Any, usage: Usage, image_tokens: tuple[int, int] = (0, 0)) -> Any:
    values: dict[str, int] = {
        "input_tokens": usage.input_tokens or 0,
        "output_tokens": usage.output_tokens or 0,
    }
    if usage.cache_read_tokens:
        values["cache_read_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        values["cache_write_tokens"] = usage.cache_write_tokens
    image_in, image_out = image_tokens
    if image_in:
        values["input_image_tokens"] = image_in
    if image_out:
        values["output_image_tokens"] = image_out
    return genai_prices.Usage(**values)


def _source(calc: Any) -> str | None:
    label = _snapshot_label()
    stamp = getattr(calc, "auto_update_timestamp", None)
    if stamp is not None:
        return f"genai-prices data updated {stamp.isoformat()}"
    return label
