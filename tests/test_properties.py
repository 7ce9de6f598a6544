"""Properties of the input parsers: whatever they are given, they accept it or raise a
ConfigurationError (a typed error that says what to fix), never another exception.

Each property runs at hypothesis' default example count; the file runs in a few seconds.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fmgate
from fmgate import _registry, _secrets
from fmgate._config import (
    CONNECTION_KEYS,
    PARAM_KEYS,
    Config,
    load_config,
    parse_config,
    parse_spec,
)
from fmgate._types import Message, make_params, normalize_messages

# The autouse fixtures of conftest.py (no network, a clean environment) are set once per test,
# which is what these properties need: none of them depends on state a previous example left.
PROPERTY = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _forget_generated_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """A generated ``api_key`` becomes a Secret, which redact() then masks everywhere: keep such
    strings ("user", "0000") from masking text in the tests that run after these."""
    monkeypatch.setattr(_secrets, "_KNOWN", set())


# -- strategies ----------------------------------------------------------------------------------

# An int with more digits than repr() will print (sys.get_int_max_str_digits()); built, not
# sampled, because Hypothesis prints the values it samples from.
huge = st.builds(lambda: 10**5000)
edges = st.sampled_from([0, -1, 0.0, -0.0, 1, 2, 1e-300, math.nan, math.inf, -math.inf]) | huge

# Values TOML can hold (no None), with the awkward floats and paths mixed in.
toml_scalars = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.sampled_from(["", " ", "none", "~", "~nosuchuser-fmgate/x", "~\x00", "a\x00b", "fake"]),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | huge | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["role", "content", "name"]) | st.text(max_size=6), inner)
    ),
    max_leaves=8,
)
paths = st.sampled_from(["~nosuchuser-fmgate/x", "~\x00", "none", " ", "runs/r.db"]) | toml_values
ALIAS_KEYS = [*CONNECTION_KEYS, *PARAM_KEYS, "api_key", "fake_top_k", "fake_", "colour", ""]
alias_names = st.sampled_from(["a", "assistant", "a:b", "", " a", "a b"]) | st.text(max_size=8)
# Values a key of an alias table may plausibly hold, right type or not.
setting_values = st.one_of(
    st.integers(-2, 300),
    st.floats(),
    st.text(max_size=6),
    st.booleans(),
    st.lists(st.text(max_size=4), max_size=3),
)
backends = st.just("fake") | st.sampled_from(["fkae", "nosuch", "", " "]) | toml_values
model_ids = st.just("m") | st.sampled_from(["", "~/x", "a:b"]) | toml_values
alias_tables = st.builds(
    lambda required, others: {**others, **required},
    st.fixed_dictionaries({"backend": backends, "model": model_ids})
    | st.fixed_dictionaries({}, optional={"backend": backends, "model": model_ids}),
    st.dictionaries(st.sampled_from(ALIAS_KEYS), setting_values | toml_values, max_size=3),
)
store_tables = st.fixed_dictionaries({}, optional={"path": paths, "other": toml_values})
config_dicts = st.fixed_dictionaries(
    {},
    optional={
        "models": st.dictionaries(alias_names, alias_tables | toml_values, max_size=3)
        | toml_values,
        "store": store_tables | toml_values,
        "extra": toml_values,
    },
)
TOML_LINES = [
    "[models.a]",
    "[models.b]",
    "[store]",
    'backend = "fake"',
    'model = "m"',
    "timeout = nan",
    "timeout = inf",
    "timeout = 0",
    "max_tokens = 0",
    "temperature = 3",
    "top_p = 0",
    'stop = ["", 1]',
    'path = "~nosuchuser-fmgate/x"',
    'path = "none"',
    'api_key = "sk-test-0123456789abcdef"',
    'api_key_env = "X"',
    "a = [[[[[1]]]]]",
    "a = 1979-02-30",
    "a = 1" + "0" * 5000,
    "[models]",
    "models = 1",
]
toml_texts = st.lists(st.sampled_from(TOML_LINES) | st.text(max_size=20), max_size=8).map("\n".join)
# The one backend the properties can build: nothing is downloaded or sent.
FAKE_ONLY = {"fake": "tests.fakes:FakeBackend"}


@contextlib.contextmanager
def only_fake_backend() -> Iterator[None]:
    """No real backend can be built (nothing to download or send), only the fake one."""
    with (
        mock.patch.object(_registry, "_plugins", lambda: FAKE_ONLY),
        mock.patch.object(_registry, "providers", dict),
    ):
        yield


# -- the spec grammar ----------------------------------------------------------------------------


@PROPERTY
@given(st.text() | st.sampled_from([":", "a:", ":b", " a : b ", "a:b:c"]))
def test_parse_spec_parses_or_raises_a_spec_error(spec: str) -> None:
    try:
        backend, model = parse_spec(spec)
    except fmgate.SpecError:
        return
    assert backend and model and ":" not in backend
    assert backend == backend.strip() and model == model.strip()
    assert parse_spec(f"{backend}:{model}") == (backend, model)


@PROPERTY
@given(
    st.text()
    | st.builds(lambda b, m: f"{b}:{m}", st.sampled_from(["fake", "fkae"]), st.text())
    | json_values
)
def test_load_accepts_a_spec_or_raises_a_configuration_error(spec: Any) -> None:
    with only_fake_backend():
        try:
            model = fmgate.load(spec, config=Config.empty())
        except fmgate.ConfigurationError:
            return
    assert model.spec.startswith("fake:")


# -- the config file -----------------------------------------------------------------------------


@PROPERTY
@given(config_dicts)
def test_parse_config_parses_or_raises_a_config_file_error(data: dict[str, Any]) -> None:
    try:
        config = parse_config(data)
    except fmgate.ConfigFileError:
        return
    for alias, entry in config.models.items():
        assert entry.alias == alias and entry.backend.strip() and entry.model.strip()
        timeout = entry.settings.get("timeout")
        assert timeout is None or (math.isfinite(timeout) and timeout > 0)


@PROPERTY
@given(store_tables)
def test_a_store_table_parses_or_raises_a_config_file_error(table: dict[str, Any]) -> None:
    try:
        config = parse_config({"store": table}, source="/somewhere/fmgate.toml")
    except fmgate.ConfigFileError:
        return
    assert config.store_path is None or config.store_path.strip()


@PROPERTY
@given(st.dictionaries(alias_names, alias_tables, max_size=2))
def test_every_parsed_alias_loads_or_says_what_is_wrong(models: dict[str, Any]) -> None:
    try:
        config = parse_config({"models": models})
    except fmgate.ConfigFileError:
        return
    with only_fake_backend():
        for alias in config.models:
            try:
                model = fmgate.load(alias, config=config)
            except fmgate.UnknownAliasError:  # parse_config accepted it: load must find it
                raise
            except fmgate.ConfigurationError:
                continue
            timeout = model.backend.config.timeout
            assert timeout is None or (math.isfinite(timeout) and timeout > 0)


# Tables whose values have the right types, so that the checks of their ranges are reached.
well_typed_tables = st.fixed_dictionaries(
    {"backend": st.just("fake"), "model": st.just("m")},
    optional={
        "timeout": edges | st.floats() | st.integers(),
        "max_tokens": edges.filter(lambda v: isinstance(v, int)) | st.integers(),
        "temperature": edges | st.floats(),
        "top_p": edges | st.floats(),
        "stop": st.text() | st.lists(st.text(max_size=3), max_size=2),
        "seed": st.integers(),
        "system": st.text(max_size=5),
    },
)


@PROPERTY
@given(well_typed_tables)
def test_a_well_typed_alias_loads_only_with_values_in_range(table: dict[str, Any]) -> None:
    with only_fake_backend():
        try:
            model = fmgate.load("a", config=parse_config({"models": {"a": table}}))
        except fmgate.ConfigFileError:
            return
    timeout = model.backend.config.timeout
    assert timeout is None or (math.isfinite(timeout) and timeout > 0)
    assert model.generate("hi").record.outcome.status == "ok"


@PROPERTY
@given(toml_texts.map(lambda text: text.encode("utf-8", "surrogatepass")) | st.binary(max_size=40))
def test_load_config_reads_any_file_or_raises_a_config_file_error(content: bytes) -> None:
    fd, name = tempfile.mkstemp(suffix=".toml")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        with contextlib.suppress(fmgate.ConfigFileError):
            load_config(Path(name))
    finally:
        os.unlink(name)


# -- prompts and parameters ----------------------------------------------------------------------


@PROPERTY
@given(
    json_values | st.lists(st.fixed_dictionaries({"role": json_values, "content": json_values})),
    st.none() | json_values,
)
def test_normalize_messages_accepts_or_raises_invalid_request(prompt: Any, system: Any) -> None:
    try:
        messages = normalize_messages(prompt, system)
    except fmgate.InvalidRequestError:
        return
    assert all(isinstance(m, Message) and isinstance(m.content, str) for m in messages)
    assert any(m.role != "system" and m.content.strip() for m in messages)


@PROPERTY
@given(st.dictionaries(st.sampled_from([*PARAM_KEYS, "fake_x", "fake_", "x"]), json_values))
def test_make_params_accepts_only_values_in_range(values: dict[str, Any]) -> None:
    try:
        params = make_params(values, ("fake",))
    except fmgate.InvalidRequestError:
        return
    if params.max_tokens is not None:
        assert type(params.max_tokens) is int and 1 <= params.max_tokens < 2**31
    assert params.seed is None or -(2**63) <= params.seed < 2**63
    if params.temperature is not None:
        assert 0 <= params.temperature <= 2
    if params.top_p is not None:
        assert 0 < params.top_p <= 1
    for value in (params.temperature, params.top_p):
        assert value is None or math.isfinite(value)


@pytest.mark.parametrize("top_p", [0, 0.0, -0.1, 1.01, float("nan")])
def test_top_p_must_lie_in_the_half_open_unit_interval(top_p: float) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match=r"top_p must lie in \(0, 1\]"):
        make_params({"top_p": top_p}, ())


# -- what the properties found -------------------------------------------------------------------


@pytest.mark.parametrize("role", [[], {}, ["user"], None, 1])
def test_a_role_that_is_not_a_str_is_refused(role: Any) -> None:
    # A list role used to raise TypeError (unhashable) from the lookup in ROLES.
    with pytest.raises(fmgate.InvalidRequestError, match="Message 0 has role"):
        normalize_messages([{"role": role, "content": "hi"}])


@pytest.mark.parametrize(
    "prompt",
    [
        [{"role": "user", "content": ""}],
        [{"role": "user", "content": " \n"}, {"role": "assistant", "content": ""}],
    ],
)
def test_messages_that_are_all_blank_are_an_empty_prompt(prompt: Any) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="The prompt is empty"):
        normalize_messages(prompt, "a system prompt is not a prompt")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"max_tokens": 2**31}, r"max_tokens must be a positive int \(at most 2\*\*31 - 1\)"),
        ({"max_tokens": 10**5000}, "not an int too large to print"),
        ({"seed": 2**63}, "seed must fit in 64 bits"),
        ({"temperature": -(10**5000)}, "temperature must lie in .* too large to print"),
    ],
)
def test_values_too_large_for_a_record_are_refused(params: dict[str, Any], expected: str) -> None:
    # They used to pass (and then fail in the store's writer), or fail to print in the message.
    with pytest.raises(fmgate.InvalidRequestError, match=expected):
        make_params(params, ())
