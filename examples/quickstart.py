"""fmgate in one page: the same prompt through two API wires, with what each call recorded.

    python examples/quickstart.py

With OPENAI_API_KEY or ANTHROPIC_API_KEY set, that provider's real API is called. Otherwise the
call goes to fmgate's loopback stub server, which speaks the provider's wire format with a canned
reply: no key, no network, but the same code path, timing, pricing and record.
"""

from __future__ import annotations

import contextlib
import os

import fmgate
from fmgate.testing import stub_server

PROMPT = "In one sentence: why would someone run an open model locally instead of calling an API?"


def models(stub_url: str) -> list[tuple[str, fmgate.Model]]:
    chosen = []
    for spec, env, stub_base in [
        ("openai:gpt-4o-mini", "OPENAI_API_KEY", f"{stub_url}/v1"),
        ("anthropic:claude-3-5-haiku-latest", "ANTHROPIC_API_KEY", stub_url),
    ]:
        if os.environ.get(env):
            chosen.append(("real API", fmgate.load(spec, max_tokens=80)))
        else:
            os.environ[env] = "stub-key-not-a-secret"
            chosen.append(("stub server", fmgate.load(spec, max_tokens=80, base_url=stub_base)))
    return chosen


def show(label: str, m: fmgate.Model) -> None:
    r = m.generate(PROMPT, temperature=0)
    with m.stream(PROMPT, temperature=0) as s:
        streamed = "".join(chunk.text for chunk in s)
    rec, srec = r.record, s.record
    usage, lat, acc = rec.usage, rec.latency, rec.access
    cost = f"${rec.cost.amount:.8f}" if rec.cost.amount is not None else "unknown"
    total, ttft, load = ((v or 0.0) * 1000 for v in (lat.total_s, srec.latency.ttft_s, lat.load_s))
    print(f"\n{m.spec}  ({label}, endpoint {rec.endpoint})")
    print(f"  text:        {r.text[:70]!r}")
    print(f"  streamed:    {len(streamed)} chars in {srec.outcome.chunks} chunks")
    print(f"  tokens:      {usage.input_tokens} in, {usage.output_tokens} out ({usage.source})")
    print(f"  latency:     {total:.1f} ms total, stream TTFT {ttft:.1f} ms")
    print(f"  cold start:  {load:.0f} ms building the client (kept out of the latency above)")
    print(f"  cost:        {cost} ({rec.cost.basis}; {rec.cost.source})")
    print(
        f"  access:      open weights {acc.open_weights}, context {acc.context_window}, "
        f"data leaves machine {acc.data_leaves_machine}, needs key {acc.requires_api_key}"
    )


def main() -> None:
    with stub_server() as url:
        for label, m in models(url):
            with contextlib.closing(m):
                show(label, m)
    records = fmgate.recent()
    fields = len(records[0].to_dict())
    print(f"\n{len(records)} calls recorded, {fields} fields each (every field: docs/records.md)")


if __name__ == "__main__":
    main()
