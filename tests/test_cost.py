"""List prices come from genai-prices; unknown models are unpriced, never free."""

from __future__ import annotations

from decimal import Decimal

import genai_prices

from fmgate import Usage
from fmgate._cost import list_price


def test_list_price_equals_genai_prices() -> None:
    usage = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=200, source="provider")
    priced = list_price("openai", "gpt-4o-mini", usage)
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=200),
        "gpt-4o-mini",
        provider_id="openai",
    )
    assert priced.cost.amount == Decimal(expected.total_price)
    assert priced.cost.basis == "list_price" and priced.cost.currency == "USD"
    assert priced.cost.source is not None and "genai-prices" in priced.cost.source


def test_unknown_model_is_unpriced_not_free() -> None:
    priced = list_price("openai", "my-private-finetune", Usage(10, 10))
    assert priced.cost.amount is None and priced.cost.basis == "unknown"
    # the miss is remembered and still unpriced
    assert list_price("openai", "my-private-finetune", Usage(10, 10)).cost.amount is None


def test_missing_usage_or_provider_is_unpriced() -> None:
    assert list_price("openai", "gpt-4o-mini", Usage(None, 10)).cost.amount is None
    assert list_price(None, "gpt-4o-mini", Usage(10, 10)).cost.amount is None


def test_a_repeated_usage_is_priced_once_a_minute_with_the_same_result() -> None:
    from fmgate import _cost

    _cost._priced.cache_clear()
    first = list_price("anthropic", "claude-3-5-haiku-latest", Usage(1000, 100))
    again = list_price("anthropic", "claude-3-5-haiku-latest", Usage(1000, 100))
    other = list_price("anthropic", "claude-3-5-haiku-latest", Usage(1000, 101))
    assert again == first and other.cost.amount != first.cost.amount
    assert _cost._priced.cache_info().hits == 1


def test_a_usage_genai_prices_refuses_is_unpriced_not_an_error() -> None:
    # more cached tokens than input tokens: genai-prices rejects it; the call must not fail
    priced = list_price("openai", "gpt-4o-mini", Usage(10, 10, cache_read_tokens=50))
    assert priced.cost.amount is None and priced.cost.basis == "unknown"
    assert priced.cost.source is not None and "cannot exceed" in priced.cost.source
