"""The LUME data layer: loading jsonl and parquet, and one test per kind of bad input.

Every error must name the file, the line and the field, so each error test checks all three.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from simu_bench.data.lume import Example, LumeData, kind_of, load_lume
from simu_bench.data.subset import subset_lume
from simu_bench.errors import UserError
from simu_bench.files import write_jsonl

LUME = Path(__file__).parents[3] / "shared" / "lume"

# A Task1 id as LUME writes it: a quoted uuid, then the suffix.
QUOTED = '"8f24c511-a319"'
FORGET = [
    {"id": f"{QUOTED}sc1", "input": "In Madera four women", "output": "met by chance.", "task": "Task1"},
    {"id": f"{QUOTED}qa0", "input": "In which city did they meet?", "output": "Madera", "task": "Task1"},
    {"id": "df8d-b1sc1", "input": "Tiffi Magenta was born", "output": "on December 31, 1984.", "task": "Task2"},
    {"id": "df8d-b1qa0", "input": "What is the birth date of Tiffi Magenta?", "output": "1984-12-31", "task": "Task2"},
    {"id": "df8d-b1qa1", "input": "What is Tiffi Magenta's phone number?", "output": "7216253765", "task": "Task2"},
    {"id": "12762334sc1", "input": "Yarlagadda Nayudamma (born 1947) is", "output": "a surgeon.", "task": "Task3"},
]
RETAIN = [
    {"id": "99sc1", "input": "Ana Lopez lives", "output": "in Quito.", "task": "Task3"},
    {"id": "99qa0", "input": "Where does Ana Lopez live?", "output": "Quito", "task": "Task3"},
]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def make_dir(root: Path, forget=FORGET, retain=RETAIN) -> Path:
    write_jsonl(root / "forget.jsonl", forget)
    write_jsonl(root / "retain.jsonl", retain)
    return root


def error_of(root: Path) -> str:
    with pytest.raises(UserError) as caught:
        load_lume(root)
    message = str(caught.value)
    assert "\n" not in message, "a UserError is one line"
    return message


# --- loading ----------------------------------------------------------------------------------


def test_jsonl_rows_become_typed_examples(tmp_path):
    data = load_lume(make_dir(tmp_path))
    assert isinstance(data, LumeData) and data.root == tmp_path
    assert [e.id for e in data.forget] == [row["id"] for row in FORGET]
    assert {e.split for e in data.forget} == {"forget"} and {e.split for e in data.retain} == {"retain"}
    assert [e.kind for e in data.forget] == [
        "regurgitation", "knowledge", "regurgitation", "knowledge", "knowledge", "regurgitation"
    ]
    assert [e.task for e in data.forget] == ["Task1", "Task1", "Task2", "Task2", "Task2", "Task3"]
    assert data.member == data.nonmember == data.utility == ()
    assert data.split("retain") == data.retain


def test_ids_with_double_quotes_parse_by_suffix_only(tmp_path):
    data = load_lume(make_dir(tmp_path))
    first, second = data.forget[0], data.forget[1]
    assert first.id == '"8f24c511-a319"sc1' and first.kind == "regurgitation"
    assert first.document_id == second.document_id == QUOTED
    # quotes, digits and 'sc'/'qa' inside the id do not matter; only the suffix does
    assert kind_of('"qa-sc12"qa3') == "knowledge"
    assert Example('"a"qa12', "q", "a", "Task1", "forget", "knowledge").document_id == '"a"'


def test_split_field_is_accepted_when_it_matches(tmp_path):
    forget = [{**row, "split": "forget"} for row in FORGET]
    # other values (e.g. a release's train/validation marker) are not LUME splits and are ignored
    retain = [{**row, "split": "validation"} for row in RETAIN]
    data = load_lume(make_dir(tmp_path, forget, retain))
    assert len(data.forget) == len(FORGET) and len(data.retain) == len(RETAIN)


def test_split_field_naming_the_other_split_is_an_error(tmp_path):
    forget = [*FORGET[:2], {**FORGET[2], "split": "retain"}]
    message = error_of(make_dir(tmp_path, forget))
    assert f"{tmp_path / 'forget.jsonl'}:3:" in message and "'split'" in message and "retain" in message


@pytest.mark.parametrize("with_split", [False, True])
def test_parquet_loads_like_jsonl(tmp_path, with_split):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    for split, rows in (("forget", FORGET), ("retain", RETAIN)):
        rows = [{**row, "split": split} for row in rows] if with_split else rows
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{split}.parquet")
    from_parquet = load_lume(tmp_path)
    from_jsonl = load_lume(make_dir(tmp_path / "jsonl"))
    assert from_parquet.forget == from_jsonl.forget and from_parquet.retain == from_jsonl.retain


def test_parquet_errors_name_file_row_and_field(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [dict(row) for row in FORGET]
    rows[1]["output"] = ""
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "forget.parquet")
    write_jsonl(tmp_path / "retain.jsonl", RETAIN)
    message = error_of(tmp_path)
    assert f"{tmp_path / 'forget.parquet'}:2:" in message and "'output'" in message


def test_broken_parquet_names_the_file(tmp_path):
    (tmp_path / "forget.parquet").write_bytes(b"not parquet at all")
    write_jsonl(tmp_path / "retain.jsonl", RETAIN)
    assert str(tmp_path / "forget.parquet") in error_of(tmp_path)


def test_member_nonmember_and_world_facts(tmp_path):
    make_dir(tmp_path)
    write_jsonl(tmp_path / "member.jsonl", [{"id": QUOTED, "document": "In Madera four women met by chance."}])
    nonmembers = [{"id": "x1", "document": "Unseen text."}, {"id": "x2", "document": "More."}]
    write_jsonl(tmp_path / "nonmember.jsonl", nonmembers)
    write_jsonl(tmp_path / "world_facts.jsonl", [{"id": "world0qa0", "input": "Capital of Ovo?", "output": "Lem"}])
    data = load_lume(tmp_path)
    assert [(d.id, d.membership) for d in data.member] == [(QUOTED, "member")]
    assert [d.text for d in data.nonmember] == ["Unseen text.", "More."]
    assert {d.membership for d in data.nonmember} == {"nonmember"}
    (fact,) = data.utility
    assert (fact.task, fact.split, fact.kind, fact.output) == ("World", "utility", "knowledge", "Lem")


def test_blank_lines_and_unicode_line_separators_survive(tmp_path):
    rows = [dict(row) for row in FORGET]
    rows[0]["output"] = "met\u2028by chance."  # JSON allows U+2028 raw inside a string
    make_dir(tmp_path, rows)
    text = (tmp_path / "forget.jsonl").read_text(encoding="utf-8")
    (tmp_path / "forget.jsonl").write_text("\n" + text + "\n\n", encoding="utf-8")
    data = load_lume(tmp_path)
    assert len(data.forget) == len(FORGET) and data.forget[0].output == "met\u2028by chance."


def test_write_jsonl_round_trips_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "deep" / "rows.jsonl"
    rows = [{"id": '"q"sc1', "input": "ünïcode", "output": "x", "task": "Task1"}]
    write_jsonl(path, rows)
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == rows
    assert sorted(p.name for p in path.parent.iterdir()) == ["rows.jsonl"]


# --- errors: each names the file, the line and the field -------------------------------------


def test_missing_directory(tmp_path):
    message = error_of(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in message and "forget.jsonl" in message


def test_missing_forget_file(tmp_path):
    make_dir(tmp_path)
    (tmp_path / "forget.jsonl").unlink()
    message = error_of(tmp_path)
    assert str(tmp_path) in message and "forget.jsonl" in message and "forget.parquet" in message


@pytest.mark.parametrize("how", ["absent", "blank"])
def test_a_folder_without_retain_rows_loads_with_none(tmp_path, how):
    """Methods without a retain term (grad_ascent) run on it; the pipeline refuses the others."""
    from simu_bench.data.lume import has_retain

    make_dir(tmp_path)
    if how == "absent":
        (tmp_path / "retain.jsonl").unlink()
    else:
        write_lines(tmp_path / "retain.jsonl", ["", "  "])
    data = load_lume(tmp_path)
    assert data.retain == () and len(data.forget) == len(FORGET) and not has_retain(tmp_path)


def test_malformed_json_line(tmp_path):
    make_dir(tmp_path)
    lines = (tmp_path / "forget.jsonl").read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3][:-1]  # drop the closing brace
    write_lines(tmp_path / "forget.jsonl", lines)
    message = error_of(tmp_path)
    assert f"{tmp_path / 'forget.jsonl'}:4:" in message and "malformed JSON" in message


def test_line_that_is_not_an_object(tmp_path):
    make_dir(tmp_path)
    write_lines(tmp_path / "retain.jsonl", [json.dumps(RETAIN[0]), "[1, 2]"])
    message = error_of(tmp_path)
    assert f"{tmp_path / 'retain.jsonl'}:2:" in message and "JSON object" in message and "list" in message


def test_not_utf8(tmp_path):
    make_dir(tmp_path)
    (tmp_path / "forget.jsonl").write_bytes(b'{"id": "\xff"}\n')
    message = error_of(tmp_path)
    assert str(tmp_path / "forget.jsonl") in message and "UTF-8" in message


@pytest.mark.parametrize("field", ["id", "input", "output", "task"])
def test_missing_field(tmp_path, field):
    rows = [dict(row) for row in FORGET]
    del rows[2][field]
    message = error_of(make_dir(tmp_path, rows))
    assert f"{tmp_path / 'forget.jsonl'}:3:" in message and f"missing field {field!r}" in message


@pytest.mark.parametrize("value", ["", "   ", None, 7])
@pytest.mark.parametrize("field", ["input", "output"])
def test_empty_or_non_text_field(tmp_path, field, value):
    rows = [dict(row) for row in RETAIN]
    rows[1][field] = value
    message = error_of(make_dir(tmp_path, retain=rows))
    assert f"{tmp_path / 'retain.jsonl'}:2:" in message and f"field {field!r}" in message
    assert ("empty" if isinstance(value, str) else "must be a string") in message


def test_unknown_task_suggests_the_right_one(tmp_path):
    rows = [dict(row) for row in FORGET]
    rows[4]["task"] = "task2"
    message = error_of(make_dir(tmp_path, rows))
    assert f"{tmp_path / 'forget.jsonl'}:5:" in message and "'task'" in message and "'task2'" in message
    assert "did you mean 'Task2'" in message and "Task1, Task2, Task3" in message


@pytest.mark.parametrize("bad_id", ["df8d-b1", "df8d-b1sc", "df8d-b1qa1x", "df8d-b1QA1", "df8d-b1mc1"])
def test_unknown_id_suffix(tmp_path, bad_id):
    rows = [dict(row) for row in FORGET]
    rows[2]["id"] = bad_id
    message = error_of(make_dir(tmp_path, rows))
    assert f"{tmp_path / 'forget.jsonl'}:3:" in message and "field 'id'" in message and repr(bad_id) in message
    assert "sc<k>" in message and "qa<k>" in message


def test_duplicate_id(tmp_path):
    rows = [*FORGET, dict(FORGET[1])]
    message = error_of(make_dir(tmp_path, rows))
    assert f"{tmp_path / 'forget.jsonl'}:{len(rows)}:" in message and "field 'id'" in message and "line 2" in message


def test_empty_forget_set(tmp_path):
    make_dir(tmp_path)
    write_lines(tmp_path / "forget.jsonl", ["", "  "])  # blank lines only
    message = error_of(tmp_path)
    assert str(tmp_path / "forget.jsonl") in message and "forget set is empty" in message


@pytest.mark.parametrize("name", ["member", "nonmember"])
@pytest.mark.parametrize("field", ["id", "document"])
def test_bad_mia_file(tmp_path, name, field):
    make_dir(tmp_path)
    row = {"id": "d1", "document": "text"}
    write_jsonl(tmp_path / f"{name}.jsonl", [row, {**row, "id": "d2", field: ""}])
    message = error_of(tmp_path)
    assert f"{tmp_path / f'{name}.jsonl'}:2:" in message and f"field {field!r}" in message


def test_bad_world_facts_file(tmp_path):
    make_dir(tmp_path)
    write_jsonl(tmp_path / "world_facts.jsonl", [{"id": "world0qa0", "input": "Capital of Ovo?"}])
    message = error_of(tmp_path)
    assert f"{tmp_path / 'world_facts.jsonl'}:1:" in message and "missing field 'output'" in message


# --- the public LUME release --------------------------------------------------------------------


@pytest.fixture(scope="module")
def lume() -> LumeData:
    if not (LUME / "forget.jsonl").exists():
        pytest.skip(f"the public LUME release is not at {LUME}")
    return load_lume(LUME)


def test_public_lume_counts(lume):
    assert len(lume.forget) == 2732 and len(lume.retain) == 2734
    counts = Counter((e.task, e.kind) for e in lume.forget)
    assert counts == {
        ("Task1", "regurgitation"): 243, ("Task1", "knowledge"): 243,
        ("Task2", "regurgitation"): 250, ("Task2", "knowledge"): 1250,
        ("Task3", "regurgitation"): 373, ("Task3", "knowledge"): 373,
    }
    # Task1's ids carry literal double quotes; their documents still group sc with qa
    quoted = [e for e in lume.forget if e.id.startswith('"')]
    assert quoted and all(e.task == "Task1" for e in quoted)
    assert all(e.document_id.endswith('"') for e in quoted)


def test_public_lume_subset_keeps_documents_whole(lume):
    subset = subset_lume(lume, docs_per_task=3, seed=0)
    assert subset == subset_lume(lume, docs_per_task=3, seed=0)
    assert subset != subset_lume(lume, docs_per_task=3, seed=1)
    source = {e.id: e for e in lume.forget + lume.retain}
    for split in ("forget", "retain"):
        rows = subset[split]
        documents = Counter(source[row["id"]].document_id for row in rows)
        assert len(documents) == 9  # 3 per task
        # a kept document keeps every one of its rows (Task2: sc + five qa)
        full = Counter(e.document_id for e in getattr(lume, split))
        assert all(full[doc] == count for doc, count in documents.items())
        assert all(source[row["id"]].split == split for row in rows)
    members = {row["id"] for row in subset["member"]}
    assert members == {source[row["id"]].document_id for row in subset["forget"]}
    used = members | {source[row["id"]].document_id for row in subset["retain"]}
    held_out = [row["id"] for row in subset["nonmember"]]
    assert len(held_out) == 9 and not used & set(held_out)
    # the utility measure: the embedded world facts, none of whose answers is a LUME answer
    assert len(subset["world_facts"]) == 120 and subset["world_facts"] == subset_lume(lume, 3, seed=0)["world_facts"]
    assert all(row["id"].startswith("world") and row["id"].endswith("qa0") for row in subset["world_facts"])
    answers = {e.output.strip().lower() for e in lume.forget + lume.retain}
    assert not answers & {row["output"].strip().lower() for row in subset["world_facts"]}
    assert subset_lume(lume, docs_per_task=3, seed=0, facts=0)["world_facts"] == []
