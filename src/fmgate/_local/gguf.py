"""GGUF files in the transformers backend: found, described, dequantized once, cached.

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=name)``) by dequantizing every
tensor to float32, which takes about a minute for a 135M-parameter model on two cores. fmgate does
that once per file and keeps the result, written with ``save_pretrained``, under the user cache
dir (``platformdirs.user_cache_dir("fmgate")/gguf``, or ``$FMGATE_CACHE_DIR/gguf``), in a folder
named by the file's sha256 and transformers' major version; later loads read that folder in
seconds. The folder is written under a temporary name and renamed when complete, so an
interrupted conversion never leaves a folder that looks finished.

The weights that run are the GGUF's own values (a Q4_1 block's ``d * q + m``) in the dtype
chosen at load: the access profile says ``quantization="gguf:Q4_1"``, ``weights_bytes`` is the
size of the GGUF file, and ``parameters`` is the element count of its tensors.

While a conversion runs, fmgate logs at INFO on the ``fmgate`` logger and tells every
:func:`listen`-er (the CLI shows it in its loading line); transformers' own bars stay off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError

if TYPE_CHECKING:
    from .profile import ModelProfile

__all__ = [
    "GGUFFacts",
    "cache_dir",
    "dequantized",
    "find_gguf",
    "listen",
    "profile_of",
    "read_facts",
]

SUFFIX = ".gguf"
FACTS_FILE = "fmgate-gguf.json"
CACHE_ENV = "FMGATE_CACHE_DIR"
# Bumped when the recipe below changes what a cached folder holds.
RECIPE = 1
# A temporary folder older than this was left by an interrupted conversion, not a running one.
_STALE_S = 6 * 3600
_CHUNK = 1 << 20
logger = logging.getLogger("fmgate")

Listener = Callable[[str], None]
_LISTENERS: list[Listener] = []
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()
_HASHES: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True, slots=True)
class GGUFFacts:
    """What a GGUF file says about its model, read from its header and kept beside the cache."""

    path: str
    sha256: str
    file_bytes: int
    quantization: str | None  # llama.cpp's file type without MOSTLY_: "Q4_1", "Q4_K_M", "F16"
    parameters: int
    architecture: str | None
    license: str | None
    context_window: int | None


def find_gguf(model: str) -> Path | None:
    """The GGUF file ``model`` names: the file itself, or the one ``.gguf`` in a folder that is
    not a transformers folder; None when it names neither."""
    path = Path(model).expanduser()
    if path.suffix.lower() == SUFFIX:
        if not path.is_file():
            raise ConfigurationError(f"{model}: no such GGUF file ({path.resolve()}).")
        return path.resolve()
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    found = sorted(p for p in path.iterdir() if p.suffix.lower() == SUFFIX and p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ConfigurationError(
            f"{path} holds several GGUF files ({names}): name one, e.g. "
            f"transformers:{path / found[0].name}."
        )
    return found[0].resolve() if found else None


@contextlib.contextmanager
def listen(listener: Listener) -> Iterator[None]:
    """Call ``listener`` with each progress message of a GGUF conversion while inside."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


def _progress(message: str) -> None:
    logger.info("%s", message)
    _tell(message)


def _tell(message: str) -> None:
    for listener in list(_LISTENERS):
        listener(message)


# -- facts -----------------------------------------------------------------------------------


def read_facts(path: Path, sha256: str | None = None) -> GGUFFacts:
    """The file's quantization, parameter count, architecture, licence and context window."""
    reader = _reader(path)
    arch = _field(reader, "general.architecture")
    context = _field(reader, f"{arch}.context_length") if arch else None
    return GGUFFacts(
        path=str(path),
        sha256=sha256 or file_sha256(path),
        file_bytes=path.stat().st_size,
        quantization=_file_type(reader),
        parameters=sum(int(t.n_elements) for t in reader.tensors),
        architecture=arch if isinstance(arch, str) else None,
        license=_license(_field(reader, "general.license")),
        context_window=context if isinstance(context, int) else None,
    )


def _reader(path: Path) -> Any:
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        from .._extras import missing_extra

        raise missing_extra("Loading a GGUF file", "gguf", exc.name) from exc
    try:
        return GGUFReader(path)
    except (ValueError, OSError) as exc:  # a truncated file or a wrong magic number
        raise ConfigurationError(f"{path} is not a GGUF file that can be read ({exc}).") from exc


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    return field.contents() if field is not None else None


def _file_type(reader: Any) -> str | None:
    """llama.cpp's ``general.file_type`` by name (``MOSTLY_Q4_1`` -> ``Q4_1``); else the
    quantization holding most elements (older files do not say)."""
    from gguf import LlamaFileType

    code = _field(reader, "general.file_type")
    try:
        return str(LlamaFileType(code).name).removeprefix("MOSTLY_")
    except ValueError:
        pass
    counts: dict[str, int] = {}
    for t in reader.tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + int(t.n_elements)
    return max(counts, key=counts.__getitem__) if counts else None


def _license(value: Any) -> str | None:
    from .profile import normalise_license

    return normalise_license(value) if isinstance(value, str) else None


def file_sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB chunks; once per process for an unchanged file."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    known = _HASHES.get(key)
    if known is None:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(_CHUNK):
                digest.update(block)
        known = _HASHES[key] = digest.hexdigest()
    return known


def profile_of(folder: ModelProfile, facts: GGUFFacts) -> ModelProfile:
    """The cached folder's profile with what the GGUF file says: its quantization, size,
    parameter count, licence and window."""
    return replace(
        folder,
        parameters=facts.parameters,
        quantization=f"gguf:{facts.quantization}" if facts.quantization else "gguf",
        weights_bytes=facts.file_bytes,
        license=facts.license or folder.license,
        context_window=facts.context_window or folder.context_window,
    )


# -- the cache -------------------------------------------------------------------------------


def cache_dir() -> Path:
    """fmgate's cache: ``$FMGATE_CACHE_DIR``, else ``platformdirs.user_cache_dir("fmgate")``."""
    base = os.environ.get(CACHE_ENV)
    if not base:
        from platformdirs import user_cache_dir

        base = user_cache_dir("fmgate")
    return Path(base).expanduser()


def cache_root() -> Path:
    """Where dequantized GGUF models are kept."""
    return cache_dir() / "gguf"


def dequantized(path: Path) -> tuple[Path, GGUFFacts]:
    """The transformers folder holding ``path``'s weights, converted now if not cached yet."""
    sha = file_sha256(path)
    folder = cache_root() / f"{sha}-transformers{_transformers_major()}-r{RECIPE}"
    with _lock(folder.name):  # two threads loading one file convert it once
        facts = _cached_facts(folder)
        if facts is None:
            facts = _convert(path, sha, folder)
    return folder, replace(facts, path=str(path))


def _transformers_major() -> str:
    from importlib.metadata import version

    return version("transformers").partition(".")[0]


def _lock(key: str) -> threading.Lock:
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(key, threading.Lock())


def _cached_facts(folder: Path) -> GGUFFacts | None:
    """The facts of a complete cached folder; None when there is none (or it is unreadable)."""
    try:
        return GGUFFacts(**json.loads((folder / FACTS_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _convert(path: Path, sha: str, folder: Path) -> GGUFFacts:
    facts = read_facts(path, sha)
    mb = facts.file_bytes / 1e6
    _progress(
        f"Converting {path.name} (GGUF {facts.quantization}, {mb:.0f} MB) to transformers "
        "weights, once (about 30-60 s per 100M parameters on a small CPU); later loads "
        f"read {folder}"
    )
    t0 = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _write(path, work)
        (work / FACTS_FILE).write_text(json.dumps(asdict(facts), indent=1), encoding="utf-8")
        _publish(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _progress(f"Converted {path.name} in {time.perf_counter() - t0:.0f} s")
    return facts


def _write(path: Path, out: Path) -> None:
    """Dequantize with transformers and save the result as an ordinary model folder."""
    import torch
    import transformers

    auto: Any = transformers
    try:
        _progress(f"Reading the tokenizer of {path.name}")
        tokenizer = auto.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        with _own_steps(path.name):
            model = auto.AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name, dtype=torch.float32
            )
    except ImportError as exc:  # accelerate or gguf, which transformers needs here
        from .._extras import missing_extra

        raise missing_extra("Loading a GGUF file", "gguf", exc.name) from exc
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise ConfigurationError(
            f"transformers could not load the GGUF file {path}: {exc}"
        ) from exc
    # The weights are plain float32 tensors now; the GGUF quantizer only blocks saving them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _progress(f"Saving the dequantized weights of {path.name}")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


@contextlib.contextmanager
def _own_steps(name: str) -> Iterator[None]:
    """transformers dequantizes under a tqdm bar of its own that ignores its progress-bar
    switch; while fmgate converts, the same steps go to fmgate's listeners instead."""
    import importlib

    module: Any = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    original = getattr(module, "tqdm", None)
    if original is None:  # a transformers that no longer shows it
        yield
        return
    module.tqdm = functools.partial(_steps, name)
    try:
        yield
    finally:
        module.tqdm = original


def _steps(name: str, items: Iterable[Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
    """``items``, telling the listeners every tenth of the way."""
    items = list(items)
    every = max(1, len(items) // 10)
    for done, item in enumerate(items, 1):
        yield item
        if done % every == 0 or done == len(items):
            _tell(f"Dequantizing {name}: {done}/{len(items)} tensors")


def _publish(work: Path, folder: Path) -> None:
    """Rename the finished folder into place; another process that got there first wins."""
    try:
        work.rename(folder)
    except OSError:
        if _cached_facts(folder) is None:  # a broken folder from elsewhere: replace it
            shutil.rmtree(folder, ignore_errors=True)
            work.rename(folder)


def _remove_stale(folder: Path) -> None:
    """Temporary folders of interrupted conversions of this file, and a broken cached one."""
    if folder.exists() and _cached_facts(folder) is None:
        shutil.rmtree(folder, ignore_errors=True)
    for old in folder.parent.glob(f".{folder.name}.*"):
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > _STALE_S:
                shutil.rmtree(old, ignore_errors=True)
