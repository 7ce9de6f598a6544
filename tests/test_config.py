"""fmgate.toml discovery and strict checking, and the spec grammar."""

from __future__ import annotations

from pathlib import Path

import pytest

import fmgate
from fmgate import _registry
from fmgate._config import load_config, parse_config, parse_spec

GOOD = """
[models.assistant]
backend = "fake"
model = "echo"
temperature = 0
max_tokens = 64
system = "be brief"
fake_top_k = 4
timeout = 12.5
"""


@pytest.fixture(autouse=True)
def _fake_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_plugins", lambda: {"fake": "tests.fakes:FakeBackend"})


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_alias_from_explicit_config(tmp_path: Path) -> None:
    cfg = write(tmp_path / "mine.toml", GOOD)
    m = fmgate.load("assistant", config=cfg)
    assert m.alias == "assistant" and m.spec == "fake:echo"
    assert m.backend.config.timeout == 12.5
    r = m.generate("hi")
    assert r.record.alias == "assistant"
    assert r.record.params == {"max_tokens": 64, "temperature": 0.0, "top_k": 4}


def test_overrides_beat_the_alias(tmp_path: Path) -> None:
    cfg = write(tmp_path / "mine.toml", GOOD)
    m = fmgate.load("assistant", config=cfg, temperature=0.7, max_tokens=8)
    assert m.generate("hi").record.params["temperature"] == 0.7


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_dir = tmp_path / "xdg-config" / "fmgate"
    user_dir.mkdir(parents=True)
    write(user_dir / "fmgate.toml", GOOD.replace("echo", "from-user-dir"))
    assert fmgate.load("assistant").backend.model == "from-user-dir"
    write(tmp_path / "fmgate.toml", GOOD.replace("echo", "from-cwd"))
    assert fmgate.load("assistant").backend.model == "from-cwd"
    env_file = write(tmp_path / "env.toml", GOOD.replace("echo", "from-env"))
    monkeypatch.setenv("FMGATE_CONFIG", str(env_file))
    assert fmgate.load("assistant").backend.model == "from-env"
    arg_file = write(tmp_path / "arg.toml", GOOD.replace("echo", "from-arg"))
    assert fmgate.load("assistant", config=arg_file).backend.model == "from-arg"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[models.a]\nbackend = "fake"\nmodel = "m"\ncolour = "red"\n',
            r"\[models\.a\]: unknown key 'colour'",
        ),
        (
            '[models.a]\nbackend = "fake"\nmodel = "m"\ntemperature = "hot"\n',
            r"\[models\.a\]: 'temperature' must be int or float, not str",
        ),
        (
            '[models.a]\nbackend = "fake"\nmodel = "m"\ntimeout = -1\n',
            r"\[models\.a\]: 'timeout' must be a positive",
        ),
        ('[models.a]\nbackend = "fake"\n', r"\[models\.a\] is missing the key 'model'"),
        ('[models.a]\nbackend = 3\nmodel = "m"\n', r"'backend' must be str"),
        ("[stuff]\nx = 1\n", r"unknown top-level key 'stuff'"),
        ("models = 3\n", r"'models' must be a table"),
        (
            '[models.a]\nbackend = "fake"\nmodel = "m"\nseed = true\n',
            r"'seed' must be int, not bool",
        ),
    ],
)
def test_config_errors_name_the_file_table_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    cfg = write(tmp_path / "bad.toml", text)
    with pytest.raises(fmgate.ConfigFileError, match=expected) as info:
        fmgate.load("a", config=cfg)
    assert str(cfg) in str(info.value)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "broken.toml", '[models.a]\nbackend = "fake"\nmodel = \n')
    with pytest.raises(fmgate.ConfigFileError, match=r"broken\.toml.*line 3"):
        load_config(cfg)
    with pytest.raises(fmgate.ConfigFileError) as info:
        fmgate.load("a", config=cfg)
    assert str(info.value).startswith(f"{cfg}: line 3, column 9: not valid TOML (Invalid value).")
    assert "Fix the syntax there" in str(info.value)
    unclosed = write(tmp_path / "unclosed.toml", '[models.a]\nstop = ["a",\n')
    with pytest.raises(fmgate.ConfigFileError, match=r"unclosed\.toml: end of document: not valid"):
        load_config(unclosed)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a = " + "[" * 5000 + "]" * 5000, "nest too deep"),  # RecursionError in tomllib
        ("a = 1979-02-30", "line 1, column 5: not valid TOML"),
        ("\udcff", "cannot be read"),
    ],
)
def test_any_unreadable_file_is_a_config_file_error(
    tmp_path: Path, text: str, expected: str
) -> None:
    cfg = tmp_path / "odd.toml"
    cfg.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(fmgate.ConfigFileError, match=expected):
        load_config(cfg)


def test_config_argument_of_the_wrong_kind(tmp_path: Path) -> None:
    with pytest.raises(fmgate.ConfigurationError, match="config= takes the path"):
        fmgate.load("a", config=3)  # type: ignore[arg-type]
    with pytest.raises(fmgate.ConfigFileError, match="is a folder"):
        fmgate.load("a", config=tmp_path)


# -- found by the properties in test_properties.py -------------------------------------------------


@pytest.mark.parametrize("timeout", ["nan", "inf", "-inf", "0", "1" + "0" * 400])
def test_timeout_must_be_positive_and_finite(tmp_path: Path, timeout: str) -> None:
    cfg = write(
        tmp_path / "t.toml", f'[models.a]\nbackend = "fake"\nmodel = "m"\ntimeout = {timeout}\n'
    )
    with pytest.raises(fmgate.ConfigFileError, match="'timeout' must be a positive number"):
        fmgate.load("a", config=cfg)
    with pytest.raises(fmgate.InvalidRequestError, match="'timeout' must be a positive number"):
        fmgate.load("fake:m", timeout=float(timeout))


@pytest.mark.parametrize("path", ["~nosuchuser-fmgate/records.db", "~\x00/x"])
def test_a_store_path_that_cannot_be_expanded(tmp_path: Path, path: str) -> None:
    with pytest.raises(fmgate.ConfigFileError, match=r"\[store\]: 'path' .* cannot be expanded"):
        parse_config({"store": {"path": path}}, source=str(tmp_path / "fmgate.toml"))


@pytest.mark.parametrize("alias", ["", " a", "a ", " "])
def test_an_alias_load_could_not_find_is_refused(alias: str) -> None:
    with pytest.raises(fmgate.ConfigFileError, match="an alias cannot be empty or start or end"):
        parse_config({"models": {alias: {"backend": "fake", "model": "m"}}})


def test_unknown_backend_in_config_suggests_close_names(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[models.a]\nbackend = "opneai"\nmodel = "gpt-4o-mini"\n')
    with pytest.raises(fmgate.UnknownBackendError, match="Did you mean 'openai'"):
        fmgate.load("a", config=cfg)


def test_unknown_alias_suggests_close_aliases(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", GOOD)
    with pytest.raises(fmgate.UnknownAliasError, match="Did you mean 'assistant'"):
        fmgate.load("asistant", config=cfg)
    with pytest.raises(fmgate.UnknownAliasError, match="no fmgate.toml was found"):
        fmgate.load("assistant")


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("gpt-4o", "openai:gpt-4o"),
        ("gpt-4o-mini", "openai:gpt-4o-mini"),
        ("o3-mini", "openai:o3-mini"),
        ("claude-3-5-haiku-latest", "anthropic:claude-3-5-haiku-latest"),
        ("gemini-2.0-flash", "gemini:gemini-2.0-flash"),
        ("deepseek-chat", "deepseek:deepseek-chat"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "transformers:Qwen/Qwen2.5-0.5B-Instruct"),
    ],
)
def test_a_bare_model_name_suggests_its_exact_spec_first(name: str, spec: str) -> None:
    with pytest.raises(fmgate.UnknownAliasError) as caught:
        fmgate.load(name)
    assert f"Did you mean {spec!r}?" in str(caught.value)
    # The generic example would read as a suggestion of another model: it goes.
    assert "e.g." not in str(caught.value)


def test_a_model_name_suggests_the_aliases_of_that_model_then_close_aliases(
    tmp_path: Path,
) -> None:
    toml = '[models.gpt]\nbackend = "fake"\nmodel = "gpt-4o"\n'
    toml += '[models.gpt-4o-x]\nbackend = "fake"\nmodel = "m"\n'
    cfg = write(tmp_path / "c.toml", toml)
    with pytest.raises(fmgate.UnknownAliasError) as caught:
        fmgate.load("gpt-4o", config=cfg)
    assert "Did you mean 'openai:gpt-4o' or 'gpt' or 'gpt-4o-x'?" in str(caught.value)


def test_an_unknown_name_without_guesses_shows_the_spec_form_and_a_valid_table(
    tmp_path: Path,
) -> None:
    with pytest.raises(fmgate.UnknownAliasError) as caught:
        fmgate.load("zzz-qqq")
    assert "Did you mean" not in str(caught.value)
    assert "(e.g. 'openai:gpt-4o-mini')" in str(caught.value)
    assert "[models.zzz-qqq]" in str(caught.value)
    with pytest.raises(fmgate.UnknownAliasError, match=r'\[models\."my model"\]'):
        fmgate.load("my model")


def test_missing_config_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(fmgate.ConfigFileError, match="does not exist"):
        fmgate.load("a", config=tmp_path / "nope.toml")
    monkeypatch.setenv("FMGATE_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(fmgate.ConfigFileError, match="FMGATE_CONFIG"):
        fmgate.load("a")


def test_backend_param_with_a_foreign_prefix_is_refused(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[models.a]\nbackend = "fake"\nmodel = "m"\nother_thing = 1\n')
    with pytest.raises(
        fmgate.ConfigFileError, match=r"c\.toml: \[models\.a\]: unknown key 'other_thing'"
    ):
        fmgate.load("a", config=cfg)
    with pytest.raises(fmgate.InvalidRequestError, match="unknown key 'other_thing'.*fake_<name>"):
        fmgate.load("fake:m", other_thing=1)


def test_none_overrides_mean_unset() -> None:
    m = fmgate.load("fake:m", timeout=None, base_url=None, temperature=None)
    assert m.backend.config.timeout is None and m.backend.config.base_url is None


def test_backend_settings_are_typed_and_reach_the_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes import FakeBackend

    monkeypatch.setattr(FakeBackend, "settings", {"device": (str,), "offload": (bool,)})
    cfg = write(tmp_path / "c.toml", '[models.a]\nbackend = "fake"\nmodel = "m"\ndevice = "cpu"\n')
    m = fmgate.load("a", config=cfg, offload=True)
    assert dict(m.backend.config.options) == {"device": "cpu", "offload": True}
    bad = write(tmp_path / "d.toml", '[models.a]\nbackend = "fake"\nmodel = "m"\ndevice = 0\n')
    with pytest.raises(fmgate.ConfigFileError, match=r"\[models\.a\]: 'device' must be str"):
        fmgate.load("a", config=bad)
    with pytest.raises(fmgate.InvalidRequestError, match="'offload' must be bool"):
        fmgate.load("fake:m", offload="yes")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("ollama:llama3.1:8b", ("ollama", "llama3.1:8b")),
        (
            "huggingface:meta-llama/Llama-3.1-8B-Instruct:novita",
            ("huggingface", "meta-llama/Llama-3.1-8B-Instruct:novita"),
        ),
        (" groq : llama-3.1-8b-instant ", ("groq", "llama-3.1-8b-instant")),
    ],
)
def test_spec_grammar(spec: str, expected: tuple[str, str]) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", [":gpt", "openai:", ":", "openai:  "])
def test_malformed_specs(spec: str) -> None:
    with pytest.raises(fmgate.SpecError, match="backend:model"):
        fmgate.load(spec)


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_load_rejects_non_specs(bad: object) -> None:
    with pytest.raises(fmgate.ConfigurationError):
        fmgate.load(bad)  # type: ignore[arg-type]


def test_unknown_backend_spec_lists_known_backends() -> None:
    with pytest.raises(fmgate.UnknownBackendError, match="Known backends: .*anthropic.*openai"):
        fmgate.load("nosuch:model")
    with pytest.raises(fmgate.UnknownBackendError, match="Did you mean 'openai'"):
        fmgate.load("opnai:gpt-4o-mini")


@pytest.mark.parametrize(("backend", "sdk"), [("openai", "openai"), ("anthropic", "anthropic")])
def test_a_missing_sdk_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, backend: str, sdk: str
) -> None:
    import sys

    monkeypatch.delitem(sys.modules, f"fmgate.backends.{backend}", raising=False)
    monkeypatch.setitem(sys.modules, sdk, None)  # import openai -> ImportError, as if missing
    with pytest.raises(fmgate.MissingExtraError, match=rf'pip install "fmgate\[{sdk}\]"') as info:
        fmgate.load(f"{backend}:some-model")
    assert info.value.extra == sdk and isinstance(info.value, ImportError)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"max_tokens": True}, "max_tokens must be a positive int"),
        ({"max_tokens": 0}, "max_tokens must be a positive int"),
        ({"max_tokens": "5"}, "max_tokens must be a positive int"),
        ({"temperature": 2.01}, r"temperature must lie in \[0, 2\]"),
        ({"top_p": 0}, r"top_p must lie in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must lie in \(0, 1\]"),
    ],
)
def test_load_refuses_default_params_out_of_range(params: dict[str, object], expected: str) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match=expected):
        fmgate.load("fake:m", **params)


def test_a_literal_key_in_a_mapping_is_masked_at_once() -> None:
    secret = "sk-in-memory-0123456789abcdef"
    config = parse_config({"models": {"a": {"backend": "fake", "model": "m", "api_key": secret}}})
    entry = config.models["a"]
    assert entry.api_key is not None and entry.api_key.reveal() == secret
    assert "api_key" not in entry.settings and secret not in repr(config)
    assert fmgate.load("a", config=config).backend.config.api_key is entry.api_key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('backend = "fake"\nmodel = "m"\nmax_tokens = 0\n', r"\[models\.a\]: max_tokens must be"),
        ('backend = "fake"\nmodel = "m"\ntemperature = 5\n', r"\[models\.a\]: temperature must"),
        ('backend = "fake"\nmodel = "m"\nstop = []\n', r"\[models\.a\]: stop must be"),
        ('backend = "fake"\nmodel = ""\n', r"\[models\.a\]: 'model' must not be empty"),
        (
            'backend = "fake"\nmodel = "m"\ntop_p = 0\n',
            r"\[models\.a\]: top_p must lie in \(0, 1\]",
        ),
        (
            'backend = "fake"\nmodel = "m"\nmax_tokens = true\n',
            r"'max_tokens' must be int, not bool",
        ),
        (
            'backend = "fake"\nmodel = "m"\nmax_tokens = 1.5\n',
            r"'max_tokens' must be int, not float",
        ),
        (
            'backend = "fake"\nmodel = "m"\ntemperature = -0.1\n',
            r"temperature must lie in \[0, 2\]",
        ),
    ],
)
def test_bad_values_in_a_file_name_the_file_and_table(
    tmp_path: Path, text: str, expected: str
) -> None:
    cfg = write(tmp_path / "v.toml", "[models.a]\n" + text)
    with pytest.raises(fmgate.ConfigFileError, match=expected) as info:
        fmgate.load("a", config=cfg)
    assert str(cfg) in str(info.value)


def test_an_unknown_backend_in_a_file_names_the_file_and_table(tmp_path: Path) -> None:
    cfg = write(tmp_path / "b.toml", '[models.a]\nbackend = "opnai"\nmodel = "gpt-4o-mini"\n')
    with pytest.raises(fmgate.UnknownBackendError, match=r"b\.toml: \[models\.a\]: 'backend'"):
        fmgate.load("a", config=cfg)
