"""Comparing image generation end to end: the tiny diffusers pipeline and an images API served by
the stub server (an alias for openai:gpt-image-1), one tagged record per call, the images written
beside the report (never in the store), the Images generated table and the thumbnail strips."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fmgate
from fmgate._compare import load_prompts, planned_calls, run_compare
from fmgate._compare.drawing import THUMB_PX, read_index
from fmgate._compare.scorers import get_scorer
from fmgate._errors import InvalidRequestError
from fmgate._report import summarize, write_report
from fmgate._tags import PROMPT, REPEAT, ROLE, RUN, WARMUP

pytest.importorskip("torch")
pytest.importorskip("diffusers")

ROWS = [  # what both an in-process pipeline and OpenAI's Images API take: a size
    {"id": "fox", "prompt": "a red fox in snow", "size": "64x64"},
    {"id": "cup", "prompt": "a blue cup", "task": "image", "size": "64x48"},
    {"id": "sea", "prompt": "a calm sea", "size": "64x64"},
]
SETTINGS = [  # a pipeline's own settings, which OpenAI's Images API does not take
    {"id": "fox", "prompt": "a red fox in snow", "size": "64x64", "seed": 1, "steps": 2},
    {"id": "sea", "prompt": "a calm sea", "size": "32x32", "steps": 3, "negative_prompt": "boat"},
]


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-canary0123456789abcdefABCDEF")


@pytest.fixture(scope="module")
def sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fmgate.testing import make_tiny_model

    return make_tiny_model("stable-diffusion", tmp_path_factory.mktemp("tiny") / "sd")


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    from fmgate.testing import stub_server

    with stub_server() as url:
        yield url + "/v1"


def prompts(tmp_path: Path, rows: list[dict[str, Any]] = ROWS) -> Path:
    path = tmp_path / "draw.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def models(sd: Path, stub: str, tmp_path: Path) -> list[fmgate.Model]:
    """The tiny pipeline, and ``gpt-image`` (an alias in fmgate.toml) pointing at the stub."""
    (tmp_path / "fmgate.toml").write_text(
        f'[models.gpt-image]\nbackend = "openai"\nmodel = "gpt-image-1"\nbase_url = "{stub}"\n'
    )
    local = fmgate.Model(fmgate.load(f"diffusers:{sd}", device="cpu").backend, alias="tiny-sd")
    return [local, fmgate.load("gpt-image")]


def test_image_rows_load_as_an_image_generation_set(tmp_path: Path) -> None:
    assert [i.task for i in load_prompts(prompts(tmp_path))] == ["image"] * 3
    items = load_prompts(prompts(tmp_path, SETTINGS))
    assert (items[0].size, items[0].seed, items[0].steps) == ("64x64", 1, 2)
    assert items[1].negative_prompt == "boat" and items[1].seed is None
    bundled = load_prompts("image-prompts")
    assert 4 <= len(bundled) <= 6 and all(i.task == "image" and i.size for i in bundled)
    csv = tmp_path / "draw.csv"
    csv.write_text("id,prompt,size,seed\na,a cat,64x64,3\n")
    [row] = load_prompts(csv)
    assert (row.task, row.size, row.seed) == ("image", "64x64", 3)


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ({"prompt": "x", "size": "big"}, "WIDTHxHEIGHT"),
        ({"prompt": "x", "seed": "one"}, "not a whole number"),
        ({"prompt": "x", "task": "video"}, "only task"),
        ({"prompt": "x", "task": "image", "expected": "a fox"}, "cannot carry 'expected'"),
    ],
)
def test_bad_image_rows_are_refused_naming_the_line(
    tmp_path: Path, row: dict[str, str], says: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(InvalidRequestError, match=says) as caught:
        load_prompts(path)
    assert "line 1" in str(caught.value)


def test_a_set_that_draws_on_some_rows_only_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"prompt": "a fox", "size": "64x64"}\n{"prompt": "What is 2+2?"}\n')
    with pytest.raises(InvalidRequestError, match="line 2: a prompt to answer"):
        load_prompts(path)


def test_models_that_cannot_draw_and_scorers_are_refused(tmp_path: Path) -> None:
    from tests.fakes import FakeBackend, fake_config

    items = load_prompts(prompts(tmp_path))
    chat = fmgate.Model(FakeBackend(fake_config("chat")), alias="chat")
    with pytest.raises(InvalidRequestError, match="chat cannot generate images"):
        run_compare([chat], items)
    with pytest.raises(InvalidRequestError, match="no scorer grades drawings"):
        run_compare([chat], items, scorer=get_scorer("exact"))


def test_both_models_draw_every_row_and_the_images_go_beside_the_report(
    sd: Path, stub: str, tmp_path: Path
) -> None:
    items = load_prompts(prompts(tmp_path))
    pair = models(sd, stub, tmp_path)
    out = tmp_path / "report"
    store = fmgate.SqliteStore(tmp_path / "s.sqlite3")
    assert planned_calls(pair, items, repeat=2) == 2 * (1 + 2 * 3)
    run = run_compare(pair, items, repeat=2, store=store, image_dir=out)
    assert run.errors == 0 and run.scores == []
    assert len(run.records) == 2 * 7 and {r.task for r in run.records} == {"image"}
    for alias in ("tiny-sd", "gpt-image"):
        mine = [r for r in run.records if r.alias == alias]
        assert sum(WARMUP in r.tags for r in mine) == 1
        measured = [r for r in mine if WARMUP not in r.tags]
        tagged = sorted((r.tags[PROMPT], r.tags[REPEAT]) for r in measured)
        assert tagged == sorted((i.id, str(n)) for i in items for n in range(2))
        assert all(r.tags[RUN] == run.run_id and r.tags[ROLE] == "candidate" for r in mine)
        assert all(r.usage.images_out == 1 for r in measured)
        by_prompt = {r.tags[PROMPT]: r for r in measured}
        assert by_prompt["cup"].params["size"] == "64x48"
        assert "a red fox" not in json.dumps([r.to_dict() for r in mine], default=str)
    # full images and 128 px thumbnails per model, per row and pass; none for the warm-up
    from PIL import Image

    for folder in ("tiny-sd", "gpt-image"):
        full = sorted(p.name for p in (out / "images" / folder).glob("*.png"))
        assert full == sorted(f"{i.id}-r{n}-0.png" for i in items for n in range(2))
        with Image.open(out / "images" / folder / "cup-r0-0.png") as image:
            assert image.size == (64, 48)
        with Image.open(out / "images" / folder / "thumbs" / "cup-r0-0.png") as thumb:
            assert max(thumb.size) <= THUMB_PX
    index = read_index(out)
    assert [m["model"] for m in index] == ["tiny-sd", "gpt-image"]
    for model in index:
        assert [row["id"] for row in model["rows"]] == ["fox", "cup", "sea"]
        assert all(row["thumb"].endswith("-r0-0.png") for row in model["rows"])
    # the store holds the records, never the images
    from fmgate._store import DEFAULT_STORE

    records = DEFAULT_STORE.current()
    assert records is not None and len(records.records(tags={RUN: run.run_id})) == 14
    assert b"PNG" not in Path(records.path).read_bytes()


def test_a_rows_settings_reach_the_pipeline_and_an_api_that_takes_none_refuses_them(
    sd: Path, stub: str, tmp_path: Path
) -> None:
    """seed, steps and negative_prompt go to every call; OpenAI's Images API takes none of them,
    so its calls are refused before sending (recorded, counted as errors), never drawn without."""
    items = load_prompts(prompts(tmp_path, SETTINGS))
    local, api = models(sd, stub, tmp_path)
    run = run_compare([local, api], items, warmup=0, image_dir=tmp_path / "out")
    drawn = {r.tags[PROMPT]: r for r in run.records if r.alias == "tiny-sd"}
    assert all(r.ok for r in drawn.values())
    assert (drawn["fox"].params["seed"], drawn["fox"].params["steps"]) == (1, 2)
    assert drawn["sea"].params["steps"] == 3 and drawn["sea"].params["negative_prompt"] is True
    refused = [r for r in run.records if r.alias == "gpt-image"]
    assert run.errors == 2 and len(refused) == 2
    assert {r.outcome.error_type for r in refused} == {"InvalidRequestError"}
    assert all(r.outcome.sent is False for r in refused)
    rows = {m["model"]: m["rows"] for m in read_index(tmp_path / "out")}
    assert [row["thumb"] is not None for row in rows["tiny-sd"]] == [True, True]
    assert [row["thumb"] for row in rows["gpt-image"]] == [None, None]  # the strip keeps places


def test_the_report_shows_the_table_and_strips_that_line_up(
    sd: Path, stub: str, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    items = load_prompts(prompts(tmp_path))
    out = tmp_path / "report"
    run = run_compare(models(sd, stub, tmp_path), items, image_dir=out)
    by_label = {s.label: s for s in summarize(run.records)}
    api = by_label["gpt-image"]
    assert api.generated == 3 and api.images is None and api.calls == 3
    assert api.cost_per_image is not None and api.cost_basis == "list_price"
    assert api.cost_per_1k_images == api.cost_per_image * 1000
    assert api.latency_per_image_p50_s is not None and api.images_per_s is not None
    assert by_label["tiny-sd"].generated == 3 and by_label["tiny-sd"].distribution == "local"
    written = write_report(out, run.records, run.scores, title="draw")
    md = written["md"].read_text()
    assert "## Images generated" in md and "no quality score: no CLIP model available" in md
    [header] = [line for line in md.splitlines() if line.startswith("| model | calls | images")]
    assert "ms / image p50 | images/s | cost / image | cost / 1k images" in header
    strip = [line for line in md.splitlines() if "](images/" in line]
    assert [line.split(" | ")[0] for line in strip] == ["| tiny-sd", "| gpt-image"]
    for line, folder in zip(strip, ("tiny-sd", "gpt-image"), strict=True):
        links = [
            f"[![{i}](images/{folder}/thumbs/{i}-r0-0.png)](images/{folder}/{i}-r0-0.png)"
            for i in ("fox", "cup", "sea")
        ]
        assert line == f"| {folder} | " + " | ".join(links) + " |"
    html = written["html"].read_text()
    assert "<h2>Images generated</h2>" in html and "Images generated: thumbnails" in html
    assert html.count('<td class="strip"><a href="images/') == 6
    assert html.count("data:image/png;base64,") >= 6  # thumbnails embedded: one file to share
    assert html.index('tiny-sd</td><td class="strip">') < html.index(
        'gpt-image</td><td class="strip">'
    )
    # another run's report written into the same folder shows none of these images
    other = [dataclasses.replace(r, tags={**r.tags, RUN: "another-run"}) for r in run.records]
    again = write_report(out, other, title="other", formats=["md"])
    assert "thumbnails" not in again["md"].read_text()


def test_compare_on_the_command_line_writes_the_images_under_out(
    sd: Path, stub: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fmgate.cli import main

    models(sd, stub, tmp_path)  # the alias in fmgate.toml
    code = main(
        [
            "compare",
            "-m",
            "gpt-image",
            "--prompts",
            str(prompts(tmp_path)),
            "--out",
            "rep",
            "--format",
            "md",
        ]
    )
    assert code == 0
    assert len(list((tmp_path / "rep" / "images" / "gpt-image").glob("*.png"))) == 3
    assert "Images generated: thumbnails" in (tmp_path / "rep" / "report.md").read_text()
