"""Short human forms of record values for the command line."""

from __future__ import annotations

from .._record import CallRecord
from .._report.render import fmt_usd

DASH = "–"


def seconds(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def count(n: int | None) -> str:
    """0.5B, 22.7M, 1.2k."""
    if n is None:
        return DASH
    for size, unit in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + unit
    return str(n)


def yes_no(value: bool | None) -> str:
    return DASH if value is None else ("yes" if value else "no")


def summary_line(record: CallRecord) -> str:
    """One line: model, outcome, tokens, latency, cost, and where the data went."""
    usage, latency, access = record.usage, record.latency, record.access
    label = record.alias or f"{record.backend}:{record.model_id}"
    parts = [label]
    if not record.ok:
        parts.append(f"FAILED {record.outcome.error_type}")
    parts.append(f"{usage.input_tokens or DASH} in / {usage.output_tokens or DASH} out")
    timing = seconds(latency.total_s)
    if latency.ttft_s is not None:
        timing += f" (TTFT {seconds(latency.ttft_s)})"
    if latency.load_s:
        timing += f" + {seconds(latency.load_s)} cold start"
    if record.outcome.attempts > 1:
        timing += f", {record.outcome.attempts} tries in {seconds(latency.wall_s)}"
    parts.append(timing)
    if record.outcome.fallback_from:
        parts.append(f"fallback for {record.outcome.fallback_from}")
    cost = record.cost
    parts.append("cost unknown" if cost.amount is None else f"{fmt_usd(cost.amount)} {cost.basis}")
    weights = {True: "open weights", False: "closed weights", None: "weights ?"}
    facts = (record.distribution, weights[access.open_weights], where_data_went(record))
    parts.append(", ".join(x for x in facts if x))
    return " · ".join(parts)


def where_data_went(record: CallRecord) -> str:
    """What this call did with the prompt: a call refused before sending sent nothing, whatever
    its channel would have done; otherwise (or when unknown) the channel says."""
    if record.outcome.sent is False:
        return "nothing sent"
    where = {True: "data left the machine", False: "data stayed local", None: ""}
    return where[record.access.data_leaves_machine]
