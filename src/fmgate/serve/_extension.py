"""fmgate's extension of OpenAI's wire: what a served call cost, and what the served model is.

OpenAI's SDK keeps fields it does not know as extras (pydantic ``extra="allow"``) and other
clients ignore them, so the extension rides in the documented objects:

- ``usage.fmgate`` on a chat completion, on the last chunk of a stream with
  ``stream_options.include_usage``, and on an embeddings list: the served call's cost, from its
  own record (:func:`extension`);
- the ``x-fmgate-cost-usd`` and ``x-fmgate-cost-basis`` headers of every answer that is not a
  stream (:func:`cost_headers`);
- on ``/v1/models`` objects, vLLM's ``max_model_len`` and an ``fmgate`` object with the model's
  access facts (:func:`model_facts`).

A self-hosted fmgate client reads them back (``fmgate.backends._server_facts``). docs/serve.md
documents the fields.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from .._record import Access, CallRecord
from .._secrets import redact

# What /v1/models tells of a served model, from its access profile. Never a secret or a path;
# peak memory and the network facts describe this server's side of the channel, not the model.
_ACCESS_FACTS = (
    "open_weights",
    "license",
    "parameters",
    "dtype",
    "quantization",
    "weights_bytes",
    "context_window",
    "hardware",
)


def extension(record: CallRecord) -> dict[str, Any]:
    """``usage.fmgate``: the call's cost as its record says. The amount is a decimal string
    (exact, unlike a JSON number), null when the server could not price the call."""
    cost = record.cost
    energy = cost.energy_j
    return {
        "cost_usd": _amount(cost.amount),
        "cost_basis": cost.basis,
        "cost_source": cost.source,
        "energy_j": energy if energy is not None and math.isfinite(energy) else None,
        "record_id": record.id,
    }


def cost_headers(record: CallRecord) -> dict[str, str]:
    """``x-fmgate-cost-basis``, and ``x-fmgate-cost-usd`` where the amount is known."""
    headers: dict[str, str] = {"x-fmgate-cost-basis": record.cost.basis}
    amount = _amount(record.cost.amount)
    if amount is not None:
        headers["x-fmgate-cost-usd"] = amount
    return headers


def model_facts(access: Access, distribution: str | None) -> dict[str, Any]:
    """The ``fmgate`` object of a model on ``/v1/models``: its access facts and the channel it
    runs on here (``local`` for a model in the server's process)."""
    facts: dict[str, Any] = {}
    for key in _ACCESS_FACTS:
        value = getattr(access, key)
        facts[key] = redact(value) if isinstance(value, str) else value
    facts["distribution"] = distribution
    return facts


def _amount(amount: Decimal | None) -> str | None:
    if amount is None or not amount.is_finite():
        return None
    return format(amount, "f")
