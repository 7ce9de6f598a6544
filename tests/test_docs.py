"""The README and docs/*.md do what they say: every block is run or checked, offline and keyless.

- ``python``: run, in a fresh folder, with the API providers pointed at fmgate's loopback stub
  server and fake keys set. A name the page defines in its prose or an earlier block (``m``,
  ``prompts``, ``my_sink``) is given; on docs/local.md ``m`` is the tiny random-weight Llama.
  A block that starts its own ``stub_server()`` runs as a reader would run it: no key, no redirect.
- ``bash`` / ``sh`` / ``console``: every ``fmgate ...`` line is parsed by fmgate's own argparse
  parser (a wrong flag or subcommand fails); ``fmgate run``, ``models`` and ``backends`` lines
  also run, in-process, against the stub. Scripts must exist and take the flags shown; the SQL
  of a ``sqlite3`` line runs on a fresh store. Install commands are not run.
- ``toml``: read by fmgate's config reader; ``json``: a prompt item read by the prompt loader.
- A block marked ``<!-- docs-test: skip (why) -->`` is skipped with that reason: keep them few.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import dataclasses
import inspect
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fmgate
from fmgate import _recording
from fmgate._compare import load_prompts
from fmgate._compare.runner import new_run_id
from fmgate._config import load_config
from fmgate._providers import providers
from fmgate._registry import backend_names
from fmgate.cli import build_parser, main
from tests.doc_blocks import ROOT, Block, blocks, commands, doc_files, markers

ALL = [block for path in doc_files() for block in blocks(path)]
# A signature shown as `fmgate.records(*, alias=None, ...) -> list[CallRecord]`: checked, not run.
SIGNATURE = re.compile(r"^fmgate\.(?P<name>[\w.]+)\((?P<params>.*)\)\s*->", re.DOTALL)
SIGNATURES = [b for b in ALL if b.lang == "python" and SIGNATURE.match(b.text)]
PYTHON = [b for b in ALL if b.lang in ("python", "py") and b not in SIGNATURES]
SHELL = [b for b in ALL if b.lang in ("bash", "sh", "shell", "console")]
TOML = [b for b in ALL if b.lang == "toml"]
JSON = [b for b in ALL if b.lang == "json"]
SYNOPSES = [b for b in ALL if not b.lang and b.text.startswith("fmgate ")]
# fmgate subcommands cheap enough to run here: one call to the stub, or no call at all. The
# others load models, write reports or serve until stopped: their lines are parsed only.
RUNNABLE = {"run", "models", "backends"}
PROMPTS = ["What is the capital of France?", "What is 2 + 2?", "Name a colour."]


def params(found: list[Block]) -> list[Any]:
    marks = lambda b: [pytest.mark.skip(reason=b.skip)] if b.skip else []  # noqa: E731
    return [pytest.param(b, id=b.where, marks=marks(b)) for b in found]


# -- the sandbox: API providers answered by the loopback stub ----------------------------------


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    from fmgate.testing import stub_server

    with stub_server() as url:
        yield url


@pytest.fixture
def stubbed_apis(stub_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every API provider's default endpoint is the stub, and its key variable holds a fake."""
    rows = providers()
    for name, row in list(rows.items()):
        if row.distribution != "api":
            continue
        base_url = stub_url if row.wire == "anthropic" else f"{stub_url}/v1"
        monkeypatch.setitem(rows, name, dataclasses.replace(row, base_url=base_url))
        if row.api_key_env:
            monkeypatch.setenv(row.api_key_env, "docs-test-key-not-a-secret")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fmgate.testing import make_tiny_model

    return make_tiny_model("llama", tmp_path_factory.mktemp("models") / "llama")


@pytest.fixture
def own_environ() -> Iterator[None]:
    """A block may set a variable (the quickstart sets a stub key): it ends with the block."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


@pytest.fixture
def own_sinks() -> Iterator[None]:
    """Sinks a block adds (a JSONL file, a second store, OpenTelemetry) are removed after it."""
    before = list(_recording._SINKS)
    yield
    for sink in [s for s in _recording._SINKS if s not in before]:
        fmgate.remove_sink(sink)
        getattr(sink, "close", sink.flush)()


# -- python ------------------------------------------------------------------------------------


def run_python(block: Block, names: dict[str, Any]) -> None:
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT  # the docs show `await m.agenerate(...)` as in a REPL
    code = compile(block.text, block.where, "exec", flags=flags)
    result = eval(code, {"__name__": "__docs__", **names})  # noqa: S307 (the repo's own docs)
    if inspect.iscoroutine(result):
        asyncio.run(result)


def page_names(block: Block, request: pytest.FixtureRequest) -> dict[str, Any]:
    """What the page defines before the block, in prose or an earlier block."""
    if block.path.name == "local.md":
        m = fmgate.load(f"transformers:{request.getfixturevalue('tiny_llama')}", device="cpu")
    else:
        m = fmgate.load("openai:gpt-4o-mini")
    sink = fmgate.MemorySink()
    names = {"fmgate": fmgate, "load": fmgate.load, "m": m, "prompts": PROMPTS, "my_sink": sink}
    return {**names, **_defined_before(block)}


def _defined_before(block: Block) -> dict[str, Any]:
    """The imports, functions and classes that earlier blocks of the page define: a later block
    uses them as a reader who ran the page top to bottom would (tools.md's ``get_weather``)."""
    names: dict[str, Any] = {"__name__": "__docs__"}
    for earlier in PYTHON:
        if earlier.path != block.path or earlier.line >= block.line or earlier.skip:
            continue
        kept = [
            node
            for node in ast.parse(earlier.text).body
            if isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef)
        ]
        exec(compile(ast.Module(kept, []), earlier.where, "exec"), names)  # noqa: S102
    del names["__name__"]
    return names


@pytest.mark.usefixtures("own_environ", "own_sinks")
@pytest.mark.parametrize("block", params(PYTHON))
def test_python_block_runs(block: Block, request: pytest.FixtureRequest) -> None:
    if "stub_server(" in block.text:  # it brings its own endpoint: run it with no key at all
        run_python(block, {})
        return
    request.getfixturevalue("stubbed_apis")
    names = page_names(block, request)
    try:
        run_python(block, names)
    finally:
        names["m"].close()


@pytest.mark.parametrize("block", [b for b in PYTHON if b.skip], ids=lambda b: b.where)
def test_a_skipped_python_block_still_compiles_and_imports(block: Block) -> None:
    """What a skipped block needs from fmgate still exists under the names it shows."""
    tree = ast.parse(block.text)
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    exec(compile(ast.Module(imports, []), block.where, "exec"), {})  # noqa: S102


@pytest.mark.parametrize("block", params(SIGNATURES))
def test_a_signature_matches_the_function(block: Block) -> None:
    match = SIGNATURE.match(block.text)
    assert match is not None
    function: Any = fmgate
    for part in match.group("name").split("."):
        function = getattr(function, part)
    shown = ast.parse(f"def f({match.group('params')}): ...").body[0]
    assert isinstance(shown, ast.FunctionDef)
    real = inspect.signature(function).parameters
    shown_names = [a.arg for a in (*shown.args.args, *shown.args.kwonlyargs)]
    assert shown_names == list(real), f"{block.where}: fmgate.{match.group('name')}{real}"
    defaults = [ast.literal_eval(d) for d in shown.args.kw_defaults if d is not None]
    assert defaults == [p.default for p in real.values() if p.default is not p.empty]


# -- shell -------------------------------------------------------------------------------------


def check_fmgate(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        args = build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        if exc.code == 0:  # --help, --version
            return
        message = capsys.readouterr().err.strip().splitlines()[-1:]
        raise AssertionError(
            f"`{' '.join(argv)}` is refused by fmgate's parser: {message}"
        ) from exc
    if args.command in RUNNABLE:
        code = main(argv[1:])
        output = capsys.readouterr()
        assert code == 0, f"`{' '.join(argv)}` exited {code}: {output.err or output.out}"


def check_script(argv: list[str]) -> None:
    script = ROOT / argv[1]
    assert script.is_file(), f"{argv[1]} does not exist"
    source = script.read_text(encoding="utf-8")
    for flag in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
        assert f'"{flag}"' in source, f"{argv[1]} has no option {flag}"


def check_sql(argv: list[str], tmp_path: Path) -> None:
    """The query runs on a store fmgate creates, so its table and column names are real."""
    store = fmgate.SqliteStore(tmp_path / "check.sqlite3")
    store.close()
    with sqlite3.connect(tmp_path / "check.sqlite3") as db:
        db.execute(argv[-1]).fetchall()


# Commands that read or show what another printed (`fmgate run --json ... | jq .text`), or move
# about: nothing of fmgate's to check.
PASSIVE = {"jq", "head", "tail", "less", "grep", "cat", "tee", "sort", "wc", "ls", "cd", "echo"}


def is_install(argv: list[str]) -> bool:
    """pip, npm, apt-get, playwright ... install; a venv and its activation."""
    setup = argv[0] in (".", "source") or argv[1:3] in (["-m", "venv"], ["-m", "pip"])
    return setup or "install" in argv[1:3]


def check_command(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    python = argv[0] in ("python", "python3")
    if argv[0] == "fmgate" or (python and argv[1:3] == ["-m", "fmgate"]):
        check_fmgate(["fmgate", *argv[3 if python else 1 :]], capsys)
    elif argv[0] in PASSIVE:
        pass
    elif python and argv[1:3] == ["-m", "pytest"]:
        pass  # the README's test command: this suite itself
    elif python:
        check_script(argv)
    elif argv[0] == "sqlite3":
        check_sql(argv, tmp_path)
    else:
        raise AssertionError(f"the docs test does not know how to check {argv[0]!r}: teach it")


@pytest.mark.usefixtures("stubbed_apis")
@pytest.mark.parametrize("block", params(SHELL))
def test_shell_block_parses_and_cheap_commands_run(
    block: Block, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = commands(block)
    assert found, f"{block.where}: an empty shell block"
    checked = [argv for argv in found if not is_install(argv)]
    if not checked:
        pytest.skip("installs packages (pip install ...): not run by the tests")
    for argv in checked:
        check_command(argv, tmp_path, capsys)


@pytest.mark.parametrize("block", params(SYNOPSES))
def test_a_command_synopsis_names_real_options(block: Block) -> None:
    words = block.text.split()
    parser = subcommand(words[1])
    known = {option for action in parser._actions for option in action.option_strings}
    shown = set(re.findall(r"--[a-z][a-z0-9-]*", block.text))
    assert shown <= known, f"fmgate {words[1]} has no {sorted(shown - known)}"


def subcommand(name: str) -> argparse.ArgumentParser:
    actions = build_parser()._actions
    sub = next(a for a in actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[name]
    return parser


# -- data blocks -------------------------------------------------------------------------------


@pytest.mark.parametrize("block", params(TOML))
def test_toml_block_is_a_valid_fmgate_config(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "fmgate.toml"
    path.write_text(block.text, encoding="utf-8")
    path.chmod(0o600)  # a literal api_key is accepted only in a private file, as the docs say
    config = load_config(path)
    for alias, entry in config.models.items():
        assert entry.backend in backend_names(), f"[models.{alias}]: no backend {entry.backend!r}"


@pytest.mark.parametrize("block", params(JSON))
def test_json_block_is_a_prompt_item_the_loader_reads(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(block.text, encoding="utf-8")
    assert load_prompts(path)


# -- the collector and the few facts the docs state -------------------------------------------


def test_every_block_is_tested_or_plain_output() -> None:
    tested = {*PYTHON, *SIGNATURES, *SHELL, *TOML, *JSON, *SYNOPSES}
    untested = [b.where for b in ALL if b not in tested and b.lang not in ("", "text")]
    assert not untested, f"blocks in a language this test does not check: {untested}"
    assert len(PYTHON) >= 20 and len(SHELL) >= 10, "the collector lost blocks"


def test_skips_are_few_and_each_marker_precedes_a_block() -> None:
    skipped = [b.where for b in ALL if b.skip]
    assert len(skipped) <= 10, f"too many skipped blocks: {skipped}"
    for path in doc_files():
        attached = {b.line for b in blocks(path) if b.skip}
        lines = path.read_text(encoding="utf-8").splitlines()
        for n in markers(path):
            following = next(i for i in range(n, len(lines)) if lines[i].strip())
            assert following + 1 in attached, f"{path.name}:{n}: a marker with no block after it"


def test_run_ids_in_the_docs_have_the_real_format() -> None:
    shape: Callable[[str], str] = lambda run_id: re.sub(r"[0-9a-f]", "h", run_id)  # noqa: E731
    real = shape(new_run_id())
    shown = [m for p in doc_files() for m in re.findall(r"--run ([\w-]+)", p.read_text())]
    assert shown, "the docs show no --run example any more: drop this test"
    for run_id in shown:
        placeholder = run_id == "latest" or run_id.isupper()  # `--run latest`, `--run ID`
        assert placeholder or shape(run_id) == real, f"{run_id} is not a run id"


STALE = [
    "does not retry yet",  # it retries: docs/reliability.md
    "retries with backoff are coming",
    "reserved for opt-in fallback",  # fallback exists
]


@pytest.mark.parametrize("phrase", STALE)
def test_no_doc_says_what_stopped_being_true(phrase: str) -> None:
    for path in doc_files():
        assert phrase not in path.read_text(encoding="utf-8"), f"{path.name}: {phrase!r}"


# -- the checks themselves catch what they are for ---------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "fmgate reprot --since 7d",  # no such subcommand
        "fmgate report --sicne 7d",  # no such flag
        "fmgate compare -m gpt",  # a required option missing
        "fmgate run nope-not-a-model hi",  # runs, and fails
        "python benchmarks/store_throughput.py --quik",
        "python examples/nowhere.py",
        "python -m fmgate report --sicne 7d",
        "curl https://example.com",  # not something the test knows how to check
    ],
)
def test_the_shell_check_refuses_a_wrong_line(
    line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (argv,) = commands(Block(ROOT / "README.md", 1, "bash", line + "\n"))
    with pytest.raises(AssertionError):
        check_command(argv, tmp_path, capsys)


def test_the_collector_reads_markers_chains_continuations_and_prompts(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n<!-- docs-test: skip (needs OPENAI_API_KEY) -->\n\n```python\nx = 1\n```\n"
        "```bash\nA=1 B=2 fmgate run m 'a b' \\\n  --no-stream && pip install x  # note\n```\n"
        "```console\n$ fmgate models\nNo aliases\n```\n",
        encoding="utf-8",
    )
    python, bash, console = blocks(page)
    assert (python.line, python.skip, python.text) == (5, "needs OPENAI_API_KEY", "x = 1\n")
    assert commands(bash) == [["fmgate", "run", "m", "a b", "--no-stream"], ["pip", "install", "x"]]
    assert commands(console) == [["fmgate", "models"]]


@pytest.mark.parametrize(
    ("line", "install"),
    [
        ('pip install -q "fmgate[local]"', True),
        ("python3 -m venv .venv", True),
        (". .venv/bin/activate", True),
        ("playwright install chromium", True),
        ("sudo apt-get install chromium", True),
        ("fmgate run openai:gpt-4o-mini install", False),
        ("python -m pytest -q", False),
    ],
)
def test_install_commands_are_told_apart(line: str, install: bool) -> None:
    (argv,) = commands(Block(ROOT / "README.md", 1, "bash", line + "\n"))
    assert is_install(argv) is install
