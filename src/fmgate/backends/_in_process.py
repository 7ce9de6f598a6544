"""What every in-process model that does not chat shares: fastText, OpenCV's detectors, torch
image classifiers.

Such a backend runs on this machine (``endpoint == "in-process"``; nothing leaves it, no network,
no key), serves the tasks it is built with, is priced by the energy meter of
:mod:`fmgate._local.energy` on its device, and refuses chat (``Model`` refuses first, naming its
tasks). A subclass gives its tasks, its device and what only it knows of its weights
(:meth:`local_access`). No torch here: fastText and OpenCV run without it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from .._local.energy import CostSettings, make_meter, process_peak_memory
from .._record import Access, Task
from .._types import ChatRequest, Completion, Delta
from ._base import Backend, BackendConfig, Meter

__all__ = ["InProcessBackend"]


class InProcessBackend(Backend):
    """An in-process model with fixed tasks, no chat, and a local cost."""

    def __init__(self, config: BackendConfig, tasks: Iterable[Task], device: str = "cpu") -> None:
        super().__init__(config)
        self._tasks: frozenset[Task] = frozenset(tasks)
        self._device = device
        self._cost = CostSettings.from_options(config.options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.config.name}:{self.model}>"

    @property
    def tasks(self) -> frozenset[Task]:
        return self._tasks

    @property
    def endpoint(self) -> str:
        return "in-process"

    def local_access(self, **facts: Any) -> Access:
        """The access profile of weights in a file on this machine, with the subclass's facts
        (licence, parameters, dtype, weights_bytes, hardware, ...)."""
        known: dict[str, Any] = {
            "open_weights": True,  # the weights are a file on this machine
            "license": self.config.options.get("license"),
            "peak_memory_bytes": self.peak_memory_bytes(),
            "data_leaves_machine": False,
            "requires_network": False,
            "requires_api_key": False,
            "offline_capable": True,
            "hardware": "cpu",
        }
        return Access(**{**known, **facts})

    def peak_memory_bytes(self) -> int | None:
        return process_peak_memory()

    def start_meter(self) -> Meter:
        return make_meter(self._device, self._cost)

    # These models do not chat: Model refuses chat before calling them.
    def complete(self, request: ChatRequest) -> Completion:
        raise self.unsupported("chat")

    async def acomplete(self, request: ChatRequest) -> Completion:
        raise self.unsupported("chat")

    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        raise self.unsupported("chat")

    def astream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        raise self.unsupported("chat")
