"""fmgate: one Model interface over local open models and commercial APIs, with every call's
cost, latency and accessibility recorded.

    from fmgate import load
    m = load("openai:gpt-4o-mini")
    r = m.generate("Say hi")
    r.text, r.record.cost.amount, r.record.latency.total_s, r.record.access.open_weights
"""

from ._config import Config
from ._errors import (
    AuthenticationError,
    BackendError,
    BadRequestError,
    ConfigFileError,
    ConfigurationError,
    ConnectionError,
    ContextLengthError,
    FmgateError,
    InvalidRequestError,
    MalformedResponseError,
    MissingAPIKeyError,
    MissingExtraError,
    NoLabelError,
    NotFoundError,
    OfflineError,
    OutputValidationError,
    RateLimitError,
    ServerError,
    SpecError,
    StoreError,
    TimeoutError,
    UnknownAliasError,
    UnknownBackendError,
    UnsupportedFeatureError,
    UnsupportedTaskError,
)
from ._fallback import FallbackModel
from ._image_gen import Images
from ._load import load
from ._model import Model
from ._otel import OpenTelemetrySink
from ._record import (
    Access,
    CallRecord,
    Cost,
    Environment,
    Latency,
    Outcome,
    OutputCheck,
    Score,
    ToolUse,
    Usage,
)
from ._recording import JsonlSink, MemorySink, Sink, add_sink, flush, recent, remove_sink
from ._registry import backend_names
from ._secrets import Secret
from ._store import SqliteStore, records
from ._stream import AsyncStream, Stream
from ._tags import tagged
from ._tools import Tool, ToolCall
from ._types import Chunk, Classifications, Detection, Detections, Embeddings, Message, Response

__version__ = "0.1.0"

__all__ = [
    "Access",
    "AsyncStream",
    "AuthenticationError",
    "BackendError",
    "BadRequestError",
    "CallRecord",
    "Chunk",
    "Classifications",
    "Config",
    "ConfigFileError",
    "ConfigurationError",
    "ConnectionError",
    "ContextLengthError",
    "Cost",
    "Detection",
    "Detections",
    "Embeddings",
    "Environment",
    "FallbackModel",
    "FmgateError",
    "Images",
    "InvalidRequestError",
    "JsonlSink",
    "Latency",
    "MalformedResponseError",
    "MemorySink",
    "Message",
    "MissingAPIKeyError",
    "MissingExtraError",
    "Model",
    "NoLabelError",
    "NotFoundError",
    "OfflineError",
    "OpenTelemetrySink",
    "Outcome",
    "OutputCheck",
    "OutputValidationError",
    "RateLimitError",
    "Response",
    "Score",
    "Secret",
    "ServerError",
    "Sink",
    "SpecError",
    "SqliteStore",
    "StoreError",
    "Stream",
    "TimeoutError",
    "Tool",
    "ToolCall",
    "ToolUse",
    "UnknownAliasError",
    "UnknownBackendError",
    "UnsupportedFeatureError",
    "UnsupportedTaskError",
    "Usage",
    "__version__",
    "add_sink",
    "backend_names",
    "flush",
    "load",
    "recent",
    "records",
    "remove_sink",
    "tagged",
]
