"""Prompt sets: JSONL, CSV, bundled names; each mistake is an error naming the file and line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from fmgate import InvalidRequestError
from fmgate._compare import (
    PromptItem,
    bundled_prompt_sets,
    is_classification,
    label_set,
    load_prompts,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prompts"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_items_with_default_ids_and_numbers_as_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "set.jsonl",
        '{"prompt": "2+2?", "expected": 4}\n\n{"id": "b", "prompt": "Hi"}\n{"prompt": "x"}\n',
    )
    assert load_prompts(path) == [
        PromptItem("1", "2+2?", "4"),
        PromptItem("b", "Hi", None),
        PromptItem("3", "x", None),
    ]


def test_csv_items_with_quoted_commas_line_breaks_and_a_bom(tmp_path: Path) -> None:
    text = '\ufeffprompt,expected,id\n"a, b",1,x\n"two\nlines",,\nplain,"3,000",\n'
    path = write(tmp_path, "set.csv", text)
    assert load_prompts(str(path)) == [
        PromptItem("x", "a, b", "1"),
        PromptItem("2", "two\nlines", None),
        PromptItem("3", "plain", "3,000"),
    ]


def test_bundled_sets_load_by_name() -> None:
    sets = bundled_prompt_sets()
    assert {"capitals", "arithmetic", "pairs", "langid"} <= set(sets)
    for name, path in sets.items():
        items = load_prompts(name)
        assert path.suffix == ".jsonl", name
        if is_classification(items):
            continue  # langid: its own test below
        if all(item.task == "image" for item in items):
            continue  # image-prompts: drawn, not graded (test_image_generation)
        assert 8 <= len(items) <= 20, name
        assert all(item.expected or item.expected_tool for item in items), name
    assert PromptItem(
        "france", "What is the capital of France? Answer with the city name only.", "Paris"
    ) in load_prompts("capitals")


def test_the_examples_load_with_the_same_fields() -> None:
    jsonl, csv = load_prompts(EXAMPLES / "units.jsonl"), load_prompts(EXAMPLES / "science.csv")
    assert len(jsonl) == 5 and all(item.expected for item in jsonl)
    assert [item.id for item in csv][:2] == ["water", "planet"]
    assert next(i for i in csv if i.id == "photosynthesis").expected is None


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.jsonl", '{"prompt": "a"}\n{"prompt": "b"\n', r"a\.jsonl, line 2: not valid JSON"),
        ("a.jsonl", '["a"]\n', r"line 1: expected a JSON object"),
        ("a.jsonl", '{"prompt": "a"}\n{"expected": "b"}\n', r"line 2: missing or empty 'prompt'"),
        ("a.jsonl", '{"prompt": "   "}\n', r"line 1: missing or empty 'prompt'"),
        ("a.jsonl", '{"prompt": 3}\n', r"line 1: 'prompt' must be a string, got int \(3\)"),
        ("a.jsonl", '{"prompt": ["a"]}\n', r"line 1: 'prompt' must be a string, got list"),
        ("a.jsonl", '{"prompt": null}\n', r"line 1: missing or empty 'prompt'"),
        ("a.jsonl", '{"prompt": "a", "answer": "b"}\n', r"line 1: unknown field 'answer'"),
        ("a.jsonl", '{"prompt": "a", "expected": [1]}\n', r"'expected' must be text or a num"),
        ("a.jsonl", '{"prompt": "a", "id": true}\n', r"'id' must be text or a number"),
        ("a.jsonl", '{"id": "x", "prompt": "a"}\n{"id": "x", "prompt": "b"}\n', "duplicate id"),
        ("a.jsonl", '{"prompt": "a"}\n{"id": "1", "prompt": "b"}\n', r"line 2: duplicate id '1'"),
        ("a.jsonl", "\n\n", r"a\.jsonl: no prompts"),
        ("a.jsonl", '{"text": "a", "prompt": "b"}\n', r"line 1: both 'prompt' and 'text'"),
        (
            "a.jsonl",
            '{"text": "a", "expected": "x", "label": "x"}\n',
            r"both 'expected' and 'label'",
        ),
        ("a.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n', r"line 2: no 'label'"),
        ("a.jsonl", '{"text": "a", "label": 1.5}\n{"text": "b", "label": ["x"]}\n', "'label' must"),
        ("a.csv", "text,label\na,x\nb,\n", r"line 3: no 'label', where other rows"),
        ("a.csv", "question,expected\nq,a\n", r"a\.csv, line 1: .*'prompt' column"),
        ("a.csv", "prompt,answer\nq,a\n", r"line 1: unknown field 'answer'"),
        ("a.csv", "prompt,expected\nq,a,extra\n", r"line 2: 3 fields for 2 columns"),
        ("a.csv", "prompt\nq\n,\n\nr,s\n", r"line 5: 2 fields for 1 columns"),
        ("a.csv", "id,prompt\nx,q\nx,r\n", r"line 3: duplicate id 'x' \(first on line 2\)"),
        ("a.csv", "prompt,id\n,x\n", r"line 2: missing or empty 'prompt'"),
        ("a.csv", "prompt\n", r"no prompts"),
        ("a.txt", "prompt\nq\n", r"must be a \.jsonl or \.csv file"),
    ],
)
def test_mistakes_name_the_file_the_line_and_the_fix(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(InvalidRequestError, match=message) as caught:
        load_prompts(path)
    assert str(path) in str(caught.value)


def test_text_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("prompt\ncafé\n".encode("latin-1"))
    with pytest.raises(InvalidRequestError, match="not UTF-8"):
        load_prompts(path)


def test_an_unknown_name_suggests_the_closest_bundled_set(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match=r"'capitols'\. Did you mean 'capitals'\?"):
        load_prompts("capitols")
    with pytest.raises(InvalidRequestError) as caught:
        load_prompts("zzz")
    assert "Did you mean" not in str(caught.value)
    assert all(name in str(caught.value) for name in ("arithmetic", "capitals", "pairs"))


def test_a_missing_file_is_said_to_be_missing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(InvalidRequestError, match="no such file") as caught:
        load_prompts(missing)
    assert str(missing) in str(caught.value)


def test_classification_rows_in_jsonl_and_csv_with_comments_and_text(tmp_path: Path) -> None:
    jsonl = write(
        tmp_path,
        "set.jsonl",
        "# written for this test\n"
        '{"id": "a", "text": "Il pleut.", "label": "fr"}\n'
        "  # an indented comment\n"
        '{"id": "b", "prompt": "It rains.", "label": " en "}\n',
    )
    items = load_prompts(jsonl)
    assert items == [
        PromptItem("a", "Il pleut.", None, "fr"),
        PromptItem("b", "It rains.", None, "en"),
    ]
    assert is_classification(items) and label_set(items) == ["en", "fr"]
    csv = write(tmp_path, "set.csv", "id,text,label\na,Il pleut.,fr\nb,It rains.,en\n")
    assert load_prompts(csv) == items
    assert not is_classification(load_prompts("capitals")) and not is_classification([])


# The languages of fastText lid.176 (ISO 639-1 where it has one) that langid may use.
LID176 = set(
    "af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb "
    "ckb co cs cv cy da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom "
    "gu gv he hi hif hr hsb ht hu hy ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw "
    "ky la lb lez li lmo lo lrc lt lv mai mg mhr min mk ml mn mr mrj ms mt mwl my myv mzn nah nap "
    "nds ne new nl nn no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa sah sc scn sco sd "
    "sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep vi vls vo wa "
    "war wuu xal xmf yi yo yue zh".split()
)


def test_the_bundled_langid_set() -> None:
    items = load_prompts("langid")
    counts = Counter(item.label for item in items)
    assert len(counts) >= 10 and set(counts.values()) == {20}
    assert {"en", "fr", "de", "es", "it", "pt", "nl", "sv", "pl", "tr"} <= set(counts)
    assert {"ca", "ro", "da", "no"} <= set(counts)  # the Latin-script look-alikes
    assert set(counts) <= LID176
    assert len({item.id for item in items}) == len(items)
    assert all(item.id.startswith(f"{item.label}-") for item in items)
    for item in items:
        assert 4 <= len(item.prompt.split()) <= 15, item
        assert item.prompt == item.prompt.strip() and "\n" not in item.prompt, item
    per_language = {label: {i.prompt for i in items if i.label == label} for label in counts}
    assert all(len(texts) == 20 for texts in per_language.values())  # no sentence twice


def test_langid_says_where_it_comes_from() -> None:
    head = bundled_prompt_sets()["langid"].read_text(encoding="utf-8").splitlines()[:5]
    assert all(line.startswith("#") for line in head)
    assert "written for fmgate" in " ".join(head)


def test_compare_help_and_the_docs_name_every_bundled_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fmgate.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    docs = (Path(__file__).resolve().parents[2] / "docs" / "compare.md").read_text("utf-8")
    for name in bundled_prompt_sets():
        assert name in help_text and f"`{name}`" in docs, name
