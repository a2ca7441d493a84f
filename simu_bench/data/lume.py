"""The LUME data layer: load a LUME directory into typed, validated records.

A LUME directory holds `forget.jsonl` and `retain.jsonl` (or `.parquet`; rows `id`, `input`,
`output`, `task`, optionally `split`; the retain file may be empty or absent, for methods without
a retain term, and the pipeline refuses it for the others), optional MIA files `member.jsonl` / `nonmember.jsonl`
(rows `id`, `document`) and, for the embedded benchmark, `world_facts.jsonl` (rows `id`,
`input`, `output`): the utility questions that stand in for MMLU.

The kind of a row comes from the suffix of its id only: `...sc<k>` is a sentence completion
(regurgitation, scored by ROUGE-L recall) and `...qa<k>` a question (knowledge, scored by exact
match). Ids may contain literal double quotes, so nothing else in the id is parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from simu_bench.errors import UserError, did_you_mean
from simu_bench.files import read_bytes, read_jsonl

TASKS = ("Task1", "Task2", "Task3")
SPLITS = ("forget", "retain")
KINDS = ("regurgitation", "knowledge")
WORLD_TASK = "World"  # the `task` of world-fact rows
WORLD_FACTS = "world_facts"  # the embedded utility: its file stem and its name in metrics

_SUFFIX = re.compile(r"(sc|qa)(\d+)$")
_KIND_OF_SUFFIX = {"sc": "regurgitation", "qa": "knowledge"}
_ROW_FIELDS = ("id", "input", "output", "task")
_DOC_FIELDS = ("id", "document")


@dataclass(frozen=True)
class Example:
    """One LUME row: a prompt (`input`) and the answer the model memorised (`output`)."""

    id: str
    input: str
    output: str
    task: str  # Task1 | Task2 | Task3 | World (utility)
    split: str  # forget | retain | utility
    kind: str  # regurgitation (sc ids) | knowledge (qa ids)

    @property
    def document_id(self) -> str:
        """The id of the document this row was made from: the id without its sc/qa suffix."""
        return _SUFFIX.sub("", self.id)


@dataclass(frozen=True)
class Document:
    """One MIA document: members were trained on, non-members never were."""

    id: str
    text: str
    membership: str  # member | nonmember


@dataclass(frozen=True)
class LumeData:
    """Everything the benchmark reads from one data directory."""

    forget: tuple[Example, ...]
    retain: tuple[Example, ...]
    member: tuple[Document, ...] = ()
    nonmember: tuple[Document, ...] = ()
    utility: tuple[Example, ...] = ()
    root: Path | None = field(default=None, compare=False)

    def split(self, name: str) -> tuple[Example, ...]:
        return {"forget": self.forget, "retain": self.retain, "utility": self.utility}[name]


def kind_of(example_id: str, where: str = "") -> str:
    """Return 'regurgitation' or 'knowledge' from the id's suffix; raise UserError otherwise."""
    match = _SUFFIX.search(example_id)
    if match is None:
        raise UserError(
            f"{where}field 'id' is {example_id!r}, which does not end in 'sc<k>' (sentence completion) or "
            f"'qa<k>' (question); LUME ids carry their kind as a suffix, e.g. 'doc42sc1' or "
            f"'doc42qa0': fix the id"
        )
    return _KIND_OF_SUFFIX[match.group(1)]


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    """Read a .jsonl or .parquet file into (line number, row) pairs (parquet: row number)."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = read_bytes(path, "a LUME parquet file")  # a folder, pipe or unreadable file: one clear line
        try:
            table = pq.read_table(pa.BufferReader(data))
        except Exception as error:  # pyarrow raises several types for a broken file
            raise UserError(f"{path}: cannot read as parquet ({error}); expected a LUME parquet file") from None
        return [(i + 1, row) for i, row in enumerate(table.to_pylist())]
    return read_jsonl(path)


def _field(row: dict, name: str, where: str) -> str:
    if name not in row:
        raise UserError(
            f"{where}missing field {name!r}; each row needs {name!r} (found fields: {', '.join(sorted(row)) or 'none'})"
        )
    value = row[name]
    if not isinstance(value, str):
        raise UserError(f"{where}field {name!r} must be a string, found {type(value).__name__}")
    if not value.strip():
        raise UserError(f"{where}field {name!r} is empty; expected non-empty text")
    return value


def _find(root: Path, stem: str) -> Path | None:
    for suffix in (".jsonl", ".parquet"):
        candidate = root / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    return None


def load_examples(path: Path, split: str) -> tuple[Example, ...]:
    """Load one forget/retain/utility file; every problem names the file, line and field."""
    examples = []
    first_line: dict[str, int] = {}  # id -> line it first appeared on; scores are keyed by id
    for number, row in _read_rows(path):
        where = f"{path}:{number}: "
        values = {name: _field(row, name, where) for name in ("id", "input", "output")}
        if values["id"] in first_line:
            raise UserError(
                f"{where}field 'id' repeats {values['id']!r} from line {first_line[values['id']]}; "
                "ids must be unique within a file"
            )
        first_line[values["id"]] = number
        if split == "utility":
            task = str(row.get("task") or WORLD_TASK)
            kind = "knowledge"
        else:
            task = _field(row, "task", where)
            if task not in TASKS:
                raise UserError(f"{where}field 'task' is unknown: {task!r}{did_you_mean(task, TASKS)}")
            kind = kind_of(values["id"], where)
            # Some LUME releases add a `split` field; the file decides the split, and only a row
            # that names the other split (a retain row in the forget file) is an error.
            row_split = row.get("split")
            if row_split in SPLITS and row_split != split:
                raise UserError(
                    f"{where}field 'split' is {row_split!r} in the {split} file; "
                    f"expected {split!r} or no split field: move the row to {row_split}.jsonl"
                )
        examples.append(Example(values["id"], values["input"], values["output"], task, split, kind))
    return tuple(examples)


def load_documents(path: Path, membership: str) -> tuple[Document, ...]:
    documents = []
    for number, row in _read_rows(path):
        where = f"{path}:{number}: "
        documents.append(Document(_field(row, "id", where), _field(row, "document", where), membership))
    return tuple(documents)


def has_retain(root) -> bool:
    """True when the LUME folder `root` holds at least one retain row (methods without a retain
    term, such as grad_ascent, run on a folder whose retain file is empty or absent)."""
    path = _find(Path(root), "retain")
    return path is not None and bool(load_examples(path, "retain"))


def check_data_dir(path, flag: str = "--data") -> None:
    """A data folder given on the command line must exist (its files are checked when read)."""
    if path is not None and not Path(path).is_dir():
        raise UserError(f"{flag} {path}: no such directory; expected a LUME folder with forget.jsonl and retain.jsonl")


def load_lume(root: str | Path) -> LumeData:
    """Load a LUME directory; raise UserError with file, line and field for any bad input."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"data directory {root} does not exist; expected a LUME folder with "
            "forget.jsonl and retain.jsonl (run `simu-bench prepare` for the embedded one)"
        )
    splits = {}
    for split in SPLITS:
        path = _find(root, split)
        if path is None and split == "forget":
            raise UserError(
                f"{root}: missing {split}.jsonl (or {split}.parquet); a LUME folder needs a forget file"
            )
        splits[split] = load_examples(path, split) if path is not None else ()
        if not splits[split] and split == "forget":
            raise UserError(f"{path}: the {split} set is empty; expected at least one row")
    member, nonmember = (_find(root, stem) for stem in ("member", "nonmember"))
    documents = {
        "member": load_documents(member, "member") if member else (),
        "nonmember": load_documents(nonmember, "nonmember") if nonmember else (),
    }
    if bool(documents["member"]) != bool(documents["nonmember"]):  # one alone would silently give no MIA
        found, missing = ("member", "nonmember") if documents["member"] else ("nonmember", "member")
        raise UserError(
            f"{root}: {len(documents[found])} {found} documents but no {missing} ones; the membership-inference "
            f"test compares the two: add {missing}.jsonl (rows id, document) or remove {found}.jsonl"
        )
    utility = _find(root, WORLD_FACTS)
    return LumeData(
        forget=splits["forget"],
        retain=splits["retain"],
        member=documents["member"],
        nonmember=documents["nonmember"],
        utility=load_examples(utility, "utility") if utility else (),
        root=root,
    )
