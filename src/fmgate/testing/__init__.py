"""Helpers for testing code that uses fmgate, offline: a loopback server that speaks the OpenAI
and Anthropic wire formats with canned replies, and tiny random-weight local models."""

from .._local.tiny import make_tiny_gguf, make_tiny_model
from ._stub_server import serve as stub_server
from ._stub_server import stats as stub_server_stats

__all__ = ["make_tiny_gguf", "make_tiny_model", "stub_server", "stub_server_stats"]
