"""fmgate.toml discovery and strict checking, and the spec grammar."""

from __future__ import annotations

from pathlib import Path

import pytest

import fmgate
from fmgate import _registry
from fmgate._config import load_config, parse_spec

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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('backend = "fake"\nmodel = "m"\nmax_tokens = 0\n', r"\[models\.a\]: max_tokens must be"),
        ('backend = "fake"\nmodel = "m"\ntemperature = 5\n', r"\[models\.a\]: temperature must"),
        ('backend = "fake"\nmodel = "m"\nstop = []\n', r"\[models\.a\]: stop must be"),
        ('backend = "fake"\nmodel = ""\n', r"\[models\.a\]: 'model' must not be empty"),
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
