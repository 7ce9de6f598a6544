"""GGUF files in the transformers backend: a tiny quantized GGUF (built here, Q8_0) loads by its
path or its folder, is dequantized once into the cache and read from there afterwards, and says
its source format and quantization in the access profile."""

from __future__ import annotations

import gc
import json
import logging
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")
pytest.importorskip("accelerate")

import fmgate  # noqa: E402
from fmgate._local import gguf  # noqa: E402
from fmgate._local.tiny import make_tiny_gguf  # noqa: E402

from .conftest import TinyFactory  # noqa: E402

MAJOR = transformers.__version__.partition(".")[0]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.Q8_0.gguf")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test converts into its own cache, never the user's."""
    monkeypatch.setenv("FMGATE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "gguf"


def _fail_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, out: Path) -> None:
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(gguf, "_write", refuse)


def _forget(m: fmgate.Model) -> None:
    """Close and drop a model so that the next load reads from disk, not from memory."""
    m.close()
    del m
    gc.collect()


def test_a_gguf_file_loads_generates_and_says_its_quantization(tiny_gguf: Path) -> None:
    m = fmgate.load(f"transformers:{tiny_gguf}", max_tokens=4)
    r = m.generate("The small cat")
    assert r.usage.output_tokens and r.usage.output_tokens > 0
    access = r.record.access
    assert access.quantization == "gguf:Q8_0"
    assert access.dtype == "float32"  # what ran on this CPU
    assert access.weights_bytes == tiny_gguf.stat().st_size
    assert access.license == "Apache-2.0" and access.context_window == 2048
    reader = __import__("gguf").GGUFReader(tiny_gguf)
    assert access.parameters == sum(int(t.n_elements) for t in reader.tensors)


def test_the_dequantized_model_computes_what_the_original_did(
    tiny_gguf: Path, tiny: TinyFactory
) -> None:
    m = fmgate.load(f"transformers:{tiny_gguf}")
    loaded = m.backend.loaded  # type: ignore[attr-defined]
    original = transformers.AutoModelForCausalLM.from_pretrained(tiny("llama"))
    ids = loaded.tokenizer("The small cat sat by the window", return_tensors="pt")
    with torch.inference_mode():
        got, want = loaded.model(**ids).logits, original(**ids).logits
    assert (got - want).abs().max().item() < 0.05  # Q8_0 rounding, nothing more


def test_the_hf_alias_and_a_folder_with_one_gguf_load_the_same_weights(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(tiny_gguf, folder / "model.gguf")
    by_file = fmgate.load(f"hf:{tiny_gguf}")
    by_folder = fmgate.load(f"transformers:{folder}")
    assert by_folder.access.quantization == "gguf:Q8_0"
    assert by_folder.access.parameters == by_file.access.parameters
    # one file content, one cache entry, one model in memory
    assert by_file.backend.loaded is by_folder.backend.loaded  # type: ignore[attr-defined]


def test_the_second_load_reads_the_cache_without_converting(
    tiny_gguf: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fmgate.load(f"transformers:{tiny_gguf}")
    (entry,) = cache.iterdir()
    assert entry.name.endswith(f"-transformers{MAJOR}-r{gguf.RECIPE}")
    assert entry.name.startswith(gguf.file_sha256(tiny_gguf))
    _forget(first)
    _fail_conversion(monkeypatch)
    again = fmgate.load(f"transformers:{tiny_gguf}")
    assert again.access.quantization == "gguf:Q8_0"
    assert again.generate("Hello", max_tokens=2).record.outcome.status == "ok"


def test_an_interrupted_conversion_leaves_nothing_that_looks_finished(
    tiny_gguf: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = gguf._write

    def interrupted(path: Path, out: Path) -> None:
        real(path, out)  # every file written, then the user presses Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fmgate.load(f"transformers:{tiny_gguf}")
    assert list(cache.iterdir()) == []  # no folder, no temporary folder
    monkeypatch.setattr(gguf, "_write", real)
    assert fmgate.load(f"transformers:{tiny_gguf}").access.quantization == "gguf:Q8_0"


def test_a_cached_folder_without_its_facts_is_converted_again(tiny_gguf: Path, cache: Path) -> None:
    first = fmgate.load(f"transformers:{tiny_gguf}")
    (entry,) = cache.iterdir()
    _forget(first)
    (entry / gguf.FACTS_FILE).unlink()  # e.g. a cache cleaner that removed some files
    m = fmgate.load(f"transformers:{tiny_gguf}")
    assert m.access.quantization == "gguf:Q8_0"
    facts = json.loads((entry / gguf.FACTS_FILE).read_text(encoding="utf-8"))
    assert facts["quantization"] == "Q8_0" and facts["sha256"] == gguf.file_sha256(tiny_gguf)


def test_the_conversion_reports_progress_and_keeps_transformers_bars_off(
    tiny_gguf: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    heard: list[str] = []
    with caplog.at_level(logging.INFO, logger="fmgate"), gguf.listen(heard.append):
        fmgate.load(f"transformers:{tiny_gguf}")
    assert heard[0].startswith("Converting tiny-llama.Q8_0.gguf (GGUF Q8_0")
    assert any(h.startswith("Dequantizing tiny-llama.Q8_0.gguf: ") for h in heard)
    assert heard[-1].startswith("Converted tiny-llama.Q8_0.gguf in ")
    logged = [r.getMessage() for r in caplog.records if r.name == "fmgate"]
    assert logged[0] == heard[0] and logged[-1] == heard[-1]
    err = capfd.readouterr().err
    assert "de-quantizing" not in err and "%|" not in err


def test_a_folder_with_several_gguf_files_names_them(tiny_gguf: Path, tmp_path: Path) -> None:
    for name in ("a.gguf", "b.gguf"):
        shutil.copy(tiny_gguf, tmp_path / name)
    with pytest.raises(fmgate.ConfigurationError, match=r"several GGUF files \(a.gguf, b.gguf\)"):
        fmgate.load(f"transformers:{tmp_path}")


def test_a_missing_gguf_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(fmgate.ConfigurationError, match="no such GGUF file"):
        fmgate.load(f"transformers:{tmp_path / 'absent.gguf'}")


def test_a_file_that_is_not_gguf_is_refused_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(fmgate.ConfigurationError, match="is not a GGUF file"):
        fmgate.load(f"transformers:{bad}")


def test_revision_is_refused_for_a_gguf_file(tiny_gguf: Path) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="revision"):
        fmgate.load(f"transformers:{tiny_gguf}", revision="main")


def test_the_facts_come_from_the_file_header(tiny_gguf: Path) -> None:
    facts = gguf.read_facts(tiny_gguf)
    assert facts.quantization == "Q8_0" and facts.architecture == "llama"
    assert facts.license == "Apache-2.0" and facts.context_window == 2048
    assert facts.file_bytes == tiny_gguf.stat().st_size
