"""``generate(..., run_tools=True)``: call the model, run the tools it asks for, send the results
back, until it answers in text. Each model call is its own record, all tagged with the loop's id
(``fmgate.tool_loop``); the tools' own run time is not in any record (it is not the model's).

A tool that raises does not end the loop: the model gets ``"Error: <type>: <message>"`` as the
result and may try again, as Pydantic AI and ``llm`` do. After ``max_tool_rounds`` rounds of
calls the model is asked once more with ``tool_choice="none"``, so the loop always ends in text.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import InvalidRequestError
from ._tags import TOOL_LOOP, tagged
from ._tools import ToolCall, to_tools
from ._types import Prompt, Response, normalize_messages

if TYPE_CHECKING:
    from ._model import Model

__all__ = ["arun_tools", "run_tools"]


def run_tools(
    model: Model, prompt: Prompt, system: str | None, params: dict[str, Any], rounds: int
) -> Response:
    loop = _Loop(prompt, params, rounds)
    with tagged({TOOL_LOOP: loop.id}):
        while True:
            response = model.generate(loop.messages, system=system, **loop.next_params())
            if not loop.took(response):
                return loop.done(response, system)
            for call in response.tool_calls:
                loop.answer(call, loop.run(call))


async def arun_tools(
    model: Model, prompt: Prompt, system: str | None, params: dict[str, Any], rounds: int
) -> Response:
    loop = _Loop(prompt, params, rounds)
    with tagged({TOOL_LOOP: loop.id}):
        while True:
            response = await model.agenerate(loop.messages, system=system, **loop.next_params())
            if not loop.took(response):
                return loop.done(response, system)
            for call in response.tool_calls:
                result = loop.run(call, awaiting=True)
                if inspect.isawaitable(result):
                    try:
                        result = _text(await result)
                    except Exception as exc:  # the model reads the failure and may try again
                        result = _failure(exc)
                loop.answer(call, result)


class _Loop:
    """The conversation so far, and the functions the model may call."""

    def __init__(self, prompt: Prompt, params: dict[str, Any], rounds: int) -> None:
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise InvalidRequestError(f"max_tool_rounds must be a positive int, not {rounds!r}.")
        tools = to_tools(params.get("tools"))
        if not tools:
            raise InvalidRequestError("run_tools=True needs tools=[...] to run.")
        schema_only = [t.name for t in tools if t.func is None]
        if schema_only:
            raise InvalidRequestError(
                f"run_tools=True runs Python functions, and {schema_only[0]!r} is a schema only: "
                "pass the function itself, or run the tools yourself from Response.tool_calls."
            )
        self.id = uuid.uuid4().hex[:16]
        self.funcs: dict[str, Callable[..., Any]] = {t.name: t.func for t in tools if t.func}
        self.params = {**params, "tools": list(tools)}
        self.messages: list[Mapping[str, Any]] = (
            [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        )
        self.rounds_left = rounds

    def next_params(self) -> dict[str, Any]:
        """The first round asks as the caller did; later rounds let the model stop (a forced
        choice would call tools forever), and the round past the limit forbids calls."""
        if self.rounds_left <= 0:
            return {**self.params, "tool_choice": "none"}
        if self.params.get("tool_choice") not in (None, "auto", "none"):
            first, self.params = self.params, {**self.params, "tool_choice": "auto"}
            return first
        return self.params

    def took(self, response: Response) -> bool:
        """Whether the model asked for tools, which are then run: one round used."""
        if not response.tool_calls:
            return False
        self.rounds_left -= 1
        self.messages.append(
            {
                "role": "assistant",
                "content": response.text,
                "tool_calls": [call.to_openai() for call in response.tool_calls],
            }
        )
        return True

    def run(self, call: ToolCall, *, awaiting: bool = False) -> Any:
        func = self.funcs.get(call.name)
        if func is None:
            known = ", ".join(self.funcs)
            return f"Error: there is no tool named {call.name!r}; the tools are {known}."
        try:
            result = func(**call.arguments)
        except Exception as exc:  # the model reads the failure and may try again
            return _failure(exc)
        if inspect.isawaitable(result):
            if awaiting:
                return result
            _close(result)
            raise InvalidRequestError(
                f"Tool {call.name!r} is async: run the loop with agenerate(..., run_tools=True)."
            )
        return _text(result)

    def answer(self, call: ToolCall, result: str) -> None:
        self.messages.append(
            {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result}
        )

    def done(self, response: Response, system: str | None) -> Response:
        """The last response, with the whole conversation (prompt, calls, results)."""
        messages = [*self.messages, {"role": "assistant", "content": response.text}]
        return dataclasses.replace(response, messages=normalize_messages(messages, system))


def _text(result: Any) -> str:
    """A tool's return value as the text the model reads: a str as it is, else JSON."""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, ensure_ascii=False, default=str)
    except ValueError:  # a circular structure
        return str(result)


def _failure(exc: BaseException) -> str:
    return f"Error: {type(exc).__name__}: {exc}"


def _close(result: Any) -> None:
    close = getattr(result, "close", None)
    if callable(close):
        close()  # a coroutine never awaited would warn
