"""The embedded benchmark's data generator, and the seeded subset of LUME-format data."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from simu_bench.data.lume import TASKS, load_lume
from simu_bench.data.subset import subset_lume
from simu_bench.data.synthetic import FILES, SyntheticConfig, generate, write_dataset
from simu_bench.errors import UserError

DEFAULT = generate(SyntheticConfig(), seed=0)
LARGE = SyntheticConfig(documents_per_task=20, nonmember_documents=30, world_facts=45)
QA_PER_DOCUMENT = {"Task1": 1, "Task2": 5, "Task3": 1}


def document_of(row_id: str) -> str:
    return re.sub(r"(sc|qa)\d+$", "", row_id)


def training_documents(rows: dict[str, list[dict]]) -> dict[str, str]:
    """Document id -> full text, for forget, retain and the held-out documents."""
    texts = {document_of(r["id"]): f"{r['input']} {r['output']}" for split in ("forget", "retain")
             for r in rows[split] if r["id"].endswith("sc1")}
    texts.update({r["id"]: r["document"] for r in rows["nonmember"]})
    return texts


def test_default_sizes_and_lume_row_layout():
    assert {key: len(rows) for key, rows in DEFAULT.items()} == {
        "forget": 60, "retain": 60, "member": 18, "nonmember": 18, "world_facts": 120
    }
    for split in ("forget", "retain"):
        rows = DEFAULT[split]
        assert all(list(row) == ["id", "input", "output", "task"] for row in rows)
        assert Counter(row["task"] for row in rows) == {"Task1": 12, "Task2": 36, "Task3": 12}
        by_document: dict[str, list[str]] = {}
        for row in rows:
            by_document.setdefault(document_of(row["id"]), []).append(row["id"][len(document_of(row["id"])):])
        # 6 documents per task, each its sc1 row followed by qa0..qa<n-1>
        tasks = Counter(next(r["task"] for r in rows if document_of(r["id"]) == doc) for doc in by_document)
        assert tasks == {task: 6 for task in TASKS}
        for doc, suffixes in by_document.items():
            task = next(r["task"] for r in rows if document_of(r["id"]) == doc)
            assert suffixes == ["sc1"] + [f"qa{k}" for k in range(QA_PER_DOCUMENT[task])]
    assert [row["id"] for row in DEFAULT["world_facts"]] == [f"world{k}qa0" for k in range(120)]
    assert {row["task"] for row in DEFAULT["world_facts"]} == {"World"}
    # Task1 ids carry literal double quotes, as in LUME
    assert all(row["id"].startswith('"') for row in DEFAULT["forget"] if row["task"] == "Task1")


def test_members_are_the_forget_documents_and_nonmembers_are_unseen():
    forget = {document_of(r["id"]): f"{r['input']} {r['output']}" for r in DEFAULT["forget"] if r["id"].endswith("sc1")}
    assert {r["id"]: r["document"] for r in DEFAULT["member"]} == forget
    trained = " ".join(f"{r['input']} {r['output']}"
                       for split in ("forget", "retain", "world_facts") for r in DEFAULT[split])
    seen_ids = {document_of(r["id"]) for split in ("forget", "retain") for r in DEFAULT[split]}
    for row in DEFAULT["nonmember"]:
        assert row["id"] not in seen_ids and row["document"] not in trained
    # held-out documents mirror the three tasks (6 of each): same styles as the members
    assert Counter(r["id"].startswith('"') for r in DEFAULT["nonmember"]) == {True: 6, False: 12}


def test_text_lengths_fit_a_tiny_model():
    sc = [r for split in ("forget", "retain") for r in DEFAULT[split] if r["id"].endswith("sc1")]
    assert all(18 <= len(r["input"].split()) <= 30 for r in sc)
    assert all(10 <= len(r["output"].split()) <= 20 for r in sc)
    qa = [r for split in ("forget", "retain", "world_facts") for r in DEFAULT[split] if "qa" in r["id"][-3:]]
    assert all(1 <= len(r["output"].split()) <= 4 for r in qa)
    text = " ".join(r["input"] + " " + r["output"] for rows in DEFAULT.values() for r in rows if "input" in r)
    assert text.isascii()
    # a small vocabulary: a 1-2k-token BPE covers it
    assert len(set(re.findall(r"[A-Za-z]+", text))) < 600


@pytest.mark.parametrize("config, seed", [(SyntheticConfig(), 0), (SyntheticConfig(), 1), (LARGE, 7)])
def test_every_question_has_exactly_one_answer_in_the_corpus(config, seed):
    rows = generate(config, seed)
    documents = training_documents(rows)
    questions = [r for split in ("forget", "retain") for r in rows[split] if not r["id"].endswith("sc1")]
    facts = rows["world_facts"]
    every = questions + facts
    assert len({r["input"] for r in every}) == len(every), "a question is asked twice"
    assert len({r["output"].lower() for r in every}) == len(every), "two questions share an answer"
    for row in questions:
        pattern = re.compile(rf"(?<![\w.@-]){re.escape(row['output'])}(?![\w@-]|\.\w)", re.IGNORECASE)
        holders = [doc for doc, text in documents.items() if pattern.search(text)]
        assert holders == [document_of(row["id"])], (row, holders)
    for row in facts:  # world facts are their own source: no document mentions their answers
        pattern = re.compile(rf"\b{re.escape(row['output'])}\b", re.IGNORECASE)
        assert not any(pattern.search(text) for text in documents.values()), row


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    first = write_dataset(tmp_path / "a", SyntheticConfig(), seed=3)
    second = write_dataset(tmp_path / "b", SyntheticConfig(), seed=3)
    other = write_dataset(tmp_path / "c", SyntheticConfig(), seed=4)
    assert first == tmp_path / "a"
    assert sorted(p.name for p in first.iterdir()) == sorted(FILES.values())
    for name in FILES.values():
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / "forget.jsonl").read_bytes() != (other / "forget.jsonl").read_bytes()


def test_written_dataset_loads_with_the_data_layer(tmp_path):
    config = SyntheticConfig(documents_per_task=2, nonmember_documents=4, world_facts=5)
    data = load_lume(write_dataset(tmp_path, config, seed=0))
    assert len(data.forget) == len(data.retain) == 2 * (2 + 6 + 2)
    assert Counter((e.task, e.kind) for e in data.forget) == {
        ("Task1", "regurgitation"): 2, ("Task1", "knowledge"): 2,
        ("Task2", "regurgitation"): 2, ("Task2", "knowledge"): 10,
        ("Task3", "regurgitation"): 2, ("Task3", "knowledge"): 2,
    }
    assert (len(data.member), len(data.nonmember), len(data.utility)) == (6, 4, 5)
    assert {e.task for e in data.utility} == {"World"}
    assert {d.id for d in data.member} == {e.document_id for e in data.forget}


@pytest.mark.parametrize("field, value", [("documents_per_task", 0), ("nonmember_documents", -1),
                                          ("world_facts", -1), ("documents_per_task", 2.5)])
def test_config_rejects_bad_sizes(field, value):
    with pytest.raises(UserError, match=f"SyntheticConfig.{field}"):
        SyntheticConfig(**{field: value})


def test_config_is_frozen_and_hashable():
    config = SyntheticConfig()
    with pytest.raises(AttributeError):
        config.world_facts = 3  # type: ignore[misc]
    assert hash(config) == hash(SyntheticConfig()) and config.to_dict()["documents_per_task"] == 6
    assert generate(SyntheticConfig(world_facts=0))["world_facts"] == []


# --- subset_lume on LUME-format data ------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return load_lume(write_dataset(tmp_path_factory.mktemp("lume"), SyntheticConfig(documents_per_task=5), seed=0))


def test_subset_keeps_whole_documents_and_holds_out_the_rest(corpus):
    subset = subset_lume(corpus, docs_per_task=2, seed=0)
    assert subset == subset_lume(corpus, docs_per_task=2, seed=0)
    assert subset != subset_lume(corpus, docs_per_task=2, seed=1)
    assert {key: len(rows) for key, rows in subset.items()} == {
        "forget": 20, "retain": 20, "member": 6, "nonmember": 6, "world_facts": 120
    }  # the embedded benchmark's world facts stand in for the utility measure (real LUME has none)
    assert subset["world_facts"] == generate(SyntheticConfig(), seed=0)["world_facts"]
    assert subset_lume(corpus, docs_per_task=2, seed=0, facts=0)["world_facts"] == []
    for split in ("forget", "retain"):
        kept = Counter(document_of(r["id"]) for r in subset[split])
        full = Counter(e.document_id for e in corpus.split(split))
        assert all(full[doc] == n for doc, n in kept.items())
    sc_text = {e.document_id: f"{e.input} {e.output}"
               for e in corpus.forget + corpus.retain if e.kind == "regurgitation"}
    members = {r["id"]: r["document"] for r in subset["member"]}
    assert members == {doc: sc_text[doc] for doc in {document_of(r["id"]) for r in subset["forget"]}}
    used = {document_of(r["id"]) for split in ("forget", "retain") for r in subset[split]}
    for row in subset["nonmember"]:
        assert row["id"] not in used and row["document"] == sc_text[row["id"]]
    assert Counter(row["id"].startswith('"') for row in subset["nonmember"]) == {True: 2, False: 4}


@pytest.mark.parametrize("n", [0, -1, 4])
def test_subset_rejects_impossible_sizes(corpus, n):
    # 5 documents per task and split: 4 per split would leave only 2 of the 4 to hold out
    with pytest.raises(UserError, match="documents per task"):
        subset_lume(corpus, docs_per_task=n, seed=0)
