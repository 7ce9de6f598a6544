"""Self-check of fmgate's loopback stub server (``fmgate.testing.stub_server``) with both SDKs.

``python benchmarks/_loopback.py --check`` calls it with both SDKs and raw httpx2, sync and async,
plain and streamed, checks every answer, and reports connection reuse; ``--port N`` serves until
interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from fmgate.testing._stub_server import REPLY, STATS_PATH, _words, respond, run_server, serve, stats

# -- self-check -----------------------------------------------------------------------------------

_MESSAGES: Any = [{"role": "user", "content": "Say hi"}]


def _check_openai(url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=_MESSAGES, max_tokens=16)
    assert r.choices[0].message.content == REPLY and r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == len(_words(REPLY))
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=_MESSAGES,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    no_usage = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=_MESSAGES,
            stream=True,
        )
    )
    assert all(c.usage is None and c.choices for c in no_usage)
    client.close()


async def _acheck_openai(url: str) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    results = await asyncio.gather(
        *(
            client.chat.completions.create(model="gpt-4o-mini", messages=_MESSAGES)
            for _ in range(20)
        )
    )
    assert all(r.choices[0].message.content == REPLY for r in results)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=_MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == REPLY
    await client.close()


def _check_anthropic(url: str) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    m = client.messages.create(model="claude-3-5-haiku-latest", messages=_MESSAGES, max_tokens=16)
    assert m.content[0].type == "text" and m.content[0].text == REPLY
    assert m.stop_reason == "end_turn" and m.usage.output_tokens == len(_words(REPLY))
    with client.messages.stream(
        model="claude-3-5-haiku-latest",
        messages=_MESSAGES,
        max_tokens=16,
    ) as stream:
        assert "".join(stream.text_stream) == REPLY
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == len(_words(REPLY))
    raw = client.messages.create(
        model="claude-3-5-haiku-latest",
        messages=_MESSAGES,
        max_tokens=16,
        stream=True,
    )
    kinds = [event.type for event in raw]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    client.close()


async def _acheck_anthropic(url: str) -> None:
    import anthropic

    client = anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)
    results = await asyncio.gather(
        *(
            client.messages.create(
                model="claude-3-5-haiku-latest", messages=_MESSAGES, max_tokens=16
            )
            for _ in range(20)
        )
    )
    assert all(r.content[0].text == REPLY for r in results)  # type: ignore[union-attr]
    async with client.messages.stream(
        model="claude-3-5-haiku-latest",
        messages=_MESSAGES,
        max_tokens=16,
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == REPLY
    await client.close()


def _check_raw(url: str) -> None:
    import httpx2

    with httpx2.Client(base_url=url) as client:
        for i in range(3):  # several requests on one kept-alive connection
            body = {"model": "m", "messages": _MESSAGES, "i": i}
            r = client.post("/v1/chat/completions", json=body)
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == REPLY
        assert client.post("/v1/nowhere", json={}).status_code == 404
        assert client.post("/v1/messages", content=b"not json").status_code == 400
        body = {"model": "m", "messages": _MESSAGES, "max_tokens": 4, "stream": True}
        with client.stream("POST", "/v1/messages", json=body) as r:
            events = [line[7:] for line in r.iter_lines() if line.startswith("event: ")]
        assert events[:3] == ["message_start", "content_block_start", "ping"], events
        r = client.post("/v1/messages", json=body, headers={"connection": "close"})
        assert r.status_code == 200


def _reuse(url: str) -> None:
    """Print how many connections each sync client opens for 10 calls (keep-alive: 1 or 0)."""
    import anthropic
    import httpx2
    import openai

    oai = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    ant = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    raw = httpx2.Client(base_url=url)
    body = {"model": "m", "messages": _MESSAGES, "max_tokens": 16}
    clients: dict[str, Callable[[], object]] = {
        "raw httpx2 POST": lambda: raw.post("/v1/chat/completions", json=body).json(),
        "openai create": lambda: oai.chat.completions.create(**body),
        "openai create(stream=True)": lambda: list(
            oai.chat.completions.create(**body, stream=True)
        ),
        "anthropic create": lambda: ant.messages.create(**body),
        "anthropic create(stream=True)": lambda: list(ant.messages.create(**body, stream=True)),
    }
    for name, call in clients.items():
        before = stats(url)["connections"]
        for _ in range(10):
            call()
        opened = stats(url)["connections"] - before - 1  # the stats request's own connection
        print(f"    {name:<30} opened {opened} connection(s) for 10 calls")
    raw.close()
    oai.close()
    ant.close()


def check() -> None:
    """Call the server with both SDKs and raw httpx2: sync and async, plain and streamed."""
    with serve() as url:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("raw httpx2", lambda: _check_raw(url)),
            ("openai sync", lambda: _check_openai(url)),
            ("openai async", lambda: asyncio.run(_acheck_openai(url))),
            ("anthropic sync", lambda: _check_anthropic(url)),
            ("anthropic async", lambda: asyncio.run(_acheck_anthropic(url))),
            ("connection reuse", lambda: _reuse(url)),
        ]
        for name, step in steps:
            step()
            print(f"ok  {name}")
    print(f"loopback server at {url}: all checks passed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--check", action="store_true", help="run the SDK self-check and exit")
    args = parser.parse_args(argv)
    if args.check:
        check()
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_server(port=args.port))


__all__ = ["REPLY", "STATS_PATH", "check", "respond", "run_server", "serve", "stats"]

if __name__ == "__main__":
    main()
