"""Helpers for testing code that uses fmgate, offline: a loopback server that speaks the OpenAI
and Anthropic wire formats with canned replies."""

from ._stub_server import serve as stub_server
from ._stub_server import stats as stub_server_stats

__all__ = ["stub_server", "stub_server_stats"]
