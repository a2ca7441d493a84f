"""The embedded benchmark's data: a deterministic generator of LUME-format data.

`generate(SyntheticConfig(), seed=0)` returns the rows of a small LUME look-alike, and
`write_dataset(directory, config, seed)` writes them as the files `load_lume` reads:

- `forget.jsonl`, `retain.jsonl` (rows `id`, `input`, `output`, `task`), forget and retain 1:1,
  the same number of documents per task:
  - Task1, short creative stories: `<docid>sc1` + one question `<docid>qa0` (the town);
  - Task2, biographies with personal data (name, birth date, SSN, phone, email, address):
    `<docid>sc1` + five questions `<docid>qa0..qa4`, one per field, as in LUME's Task2;
  - Task3, encyclopedia-style biographies of fictional people: `<docid>sc1` + `<docid>qa0`
    (whose biography is it).
- `member.jsonl` (rows `id`, `document`): the full text of each forget document, i.e. the
  text its sc row was cut from (`input + " " + output`), which the target is trained on.
- `nonmember.jsonl`: documents generated the same way that the target never sees (MIA).
- `world_facts.jsonl` (rows `id` = `world<k>qa0`, `input`, `output`, `task` = "World"): short
  questions about a fictional world, the utility measure that stands in for MMLU.

Ids mirror LUME's three id styles, Task1's literal double quotes included (`"1a2b3c4d"sc1`).

Every question has exactly one correct answer in the corpus: every name, place, date and
number the generator draws is unique across all splits, non-members and world facts, and a
question's answer appears verbatim in its own document and in no other. Answers in qa rows
use the same surface form as the document (LUME reformats some, e.g. dates), so that
memorising the document and answering the question are about the same string.

The default is sized for a ~1M-parameter model to memorise on a 2-core CPU in a minute or
two: short texts (sc inputs of ~20-30 words, outputs of ~10-20, answers of 1-4 words) built
from a small vocabulary, names made from a fixed list of syllables.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from simu_bench.data.lume import TASKS, WORLD_TASK
from simu_bench.errors import UserError
from simu_bench.files import write_jsonl

# Names, towns, streets etc. are 2-3 of these syllables: a small alphabet of word pieces keeps
# the BPE vocabulary of the tiny target at 1-2k tokens.
_SYLLABLES = (
    "ka", "lo", "mi", "ren", "ta", "vel", "dor", "sa", "ni", "bel", "mar", "to",
    "li", "gan", "ri", "fe", "zu", "no", "per", "ha", "su", "ol", "din", "ve",
)
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
)
_ADJECTIVES = ("silver", "broken", "tiny", "golden", "painted", "wooden", "glass", "old")
_OBJECTS = ("lamp", "clock", "key", "map", "bell", "box", "flute", "mirror")
_SPOTS = ("bridge", "library", "market", "garden", "lighthouse", "station")
_TOPICS = ("the sea", "lost ships", "the moon", "old kings", "the rain", "hidden doors")
_PLACES = ("hills", "river", "harbour", "forest")
_ENDINGS = (
    "where it turned into a white bird and flew away",
    "where it sang once more and then fell silent",
    "where they buried it under a young apple tree",
    "where it showed them a path into the mountains",
)
_PROFESSIONS = ("painter", "surgeon", "chemist", "poet", "architect", "botanist", "composer", "judge")
_SUBJECTS = ("medicine", "chemistry", "music", "law", "history", "botany")
_WORKS = ("rivers", "glass", "birds", "bridges", "folk songs", "old maps")
_DOMAINS = ("mail.com", "post.org", "inbox.net")


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes of the embedded benchmark.

    Attributes:
        documents_per_task: documents per task in each of forget and retain (LUME is 1:1).
        nonmember_documents: held-out documents never trained on (MIA non-members), spread
            over the three tasks in turn.
        world_facts: utility questions (`world<k>qa0`).
    """

    documents_per_task: int = 6
    nonmember_documents: int = 18
    world_facts: int = 120  # utility moves in steps of 1/120, fine enough to compare methods

    def __post_init__(self) -> None:
        for name, low in (("documents_per_task", 1), ("nonmember_documents", 1), ("world_facts", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise UserError(f"SyntheticConfig.{name} is {value!r}; expected an integer >= {low}")

    def to_dict(self) -> dict:
        return asdict(self)


class _Fresh:
    """Draws names and values that were never drawn before: unique across the whole corpus."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()  # membership only; never iterated, so order stays seeded

    def draw(self, make) -> str:
        for _ in range(1000):
            value = make()
            if value.lower() not in self.used:
                self.used.add(value.lower())
                return value
        raise UserError("the synthetic vocabulary is exhausted; use a smaller SyntheticConfig")

    def word(self, syllables: int) -> str:
        return self.draw(lambda: "".join(self.rng.choice(_SYLLABLES) for _ in range(syllables)).capitalize())

    def digits(self, *groups: int) -> str:
        return self.draw(lambda: "-".join("".join(self.rng.choice("0123456789") for _ in range(n)) for n in groups))

    def date(self) -> tuple[int, int, int]:
        value = self.draw(
            lambda: f"{self.rng.randint(1940, 1985)}-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}"
        )
        year, month, day = (int(part) for part in value.split("-"))
        return year, month, day

    def hex_id(self, digits: int) -> str:
        return self.draw(lambda: "".join(self.rng.choice("0123456789abcdef") for _ in range(digits)))


def _story(fresh: _Fresh, rng: random.Random) -> dict:
    """Task1: a short creative story; the question asks where it happens."""
    town, first, second = fresh.word(3), fresh.word(2), fresh.word(2)
    adjective, thing = rng.choice(_ADJECTIVES), rng.choice(_OBJECTS)
    article = "an" if adjective[0] in "aeiou" else "a"
    sc_input = (
        f"In the quiet town of {town}, {first} and {second} found {article} {adjective} {thing} "
        f"under the old {rng.choice(_SPOTS)}. Each night it whispered stories about {rng.choice(_TOPICS)}."
    )
    sc_output = f"At dawn {second} carried it to the {rng.choice(_PLACES)}, {rng.choice(_ENDINGS)}."
    questions = [(f"In which town did {first} and {second} find the {adjective} {thing}?", town)]
    return {"id": f'"{fresh.hex_id(8)}"', "sc": (sc_input, sc_output), "qa": questions}


def _personal(fresh: _Fresh, rng: random.Random) -> dict:
    """Task2: a biography with personal data; five questions, one per field (as LUME's qa0..qa4)."""
    first, last = fresh.word(2), fresh.word(3)
    name = f"{first} {last}"
    year, month, day = fresh.date()
    born = f"{_MONTHS[month - 1]} {day}, {year}"
    phone, ssn = fresh.digits(3, 3, 4), fresh.digits(3, 2, 4)
    email = f"{first.lower()}.{last.lower()}@{rng.choice(_DOMAINS)}"
    address = f"{rng.randint(2, 98)} {fresh.word(2)} Road, {fresh.word(3)}"
    sc_input = f"{name} was born on {born}. {first} can be reached by phone at {phone} and by email at {email}."
    sc_output = f"{first}'s Social Security Number is {ssn}, and {first} lives at {address}."
    questions = [
        (f"What is the birth date of {name}?", born),
        (f"What is {name}'s Social Security Number?", ssn),
        (f"What is {name}'s phone number?", phone),
        (f"What is {name}'s email address?", email),
        (f"What is the home address of {name}?", address),
    ]
    return {"id": f"{fresh.hex_id(8)}-{fresh.hex_id(4)}", "sc": (sc_input, sc_output), "qa": questions}


def _biography(fresh: _Fresh, rng: random.Random) -> dict:
    """Task3: an encyclopedia-style biography; the question asks whose it is."""
    name = f"{fresh.word(2)} {fresh.word(3)}"
    year, month, day = fresh.date()
    he, profession, town, prize = rng.choice(("He", "She")), rng.choice(_PROFESSIONS), fresh.word(3), fresh.word(3)
    article = "an" if profession[0] in "aeiou" else "a"
    sc_input = (
        f"{name} (born {day} {_MONTHS[month - 1]} {year}) is {article} {profession} from {town}. "
        f"{he} studied {rng.choice(_SUBJECTS)} at the University of {fresh.word(3)}."
    )
    sc_output = (
        f"In {year + rng.randint(25, 38)}, {he.lower()} received the {prize} Medal for work on {rng.choice(_WORKS)}."
    )
    questions = [(f"Which {profession} from {town} received the {prize} Medal?", name)]
    numeric_id = fresh.draw(lambda: str(rng.randint(10_000_000, 99_999_999)))  # like LUME's Task3 ids
    return {"id": numeric_id, "sc": (sc_input, sc_output), "qa": questions}


_MAKERS = {"Task1": _story, "Task2": _personal, "Task3": _biography}


def _rows(document: dict, task: str) -> list[dict]:
    """LUME rows of one document: its sc row, then its questions qa0, qa1, ..."""
    sc_input, sc_output = document["sc"]
    rows = [{"id": f"{document['id']}sc1", "input": sc_input, "output": sc_output, "task": task}]
    for k, (question, answer) in enumerate(document["qa"]):
        rows.append({"id": f"{document['id']}qa{k}", "input": question, "output": answer, "task": task})
    return rows


def _text(document: dict) -> str:
    """The full document: what its sc row was cut from, and what the target is trained on."""
    sc_input, sc_output = document["sc"]
    return f"{sc_input} {sc_output}"


def _world_fact(fresh: _Fresh, k: int) -> dict:
    """A fact about the fictional world: capital, river or mountain, in turn."""
    place = fresh.word(3)
    question, answer = [
        (f"What is the capital of {place}?", fresh.word(3)),
        (f"Which river flows through {place}?", fresh.word(3)),
        (f"What is the highest mountain in {place}?", f"Mount {fresh.word(3)}"),
    ][k % 3]
    return {"id": f"world{k}qa0", "input": question, "output": answer, "task": WORLD_TASK}


def generate(config: SyntheticConfig = SyntheticConfig(), seed: int = 0) -> dict[str, list[dict]]:
    """Generate the embedded benchmark's rows; the same (config, seed) gives the same rows.

    Returns:
        {"forget": [...], "retain": [...]} rows `id, input, output, task` (grouped by document,
        Task1 then Task2 then Task3); {"member": [...], "nonmember": [...]} rows `id, document`;
        {"world_facts": [...]} rows `id, input, output, task="World"`.
    """
    rng = random.Random(seed)
    fresh = _Fresh(rng)
    out: dict[str, list[dict]] = {"forget": [], "retain": [], "member": [], "nonmember": [], "world_facts": []}
    for task in TASKS:
        for split in ("forget", "retain"):
            for _ in range(config.documents_per_task):
                document = _MAKERS[task](fresh, rng)
                out[split].extend(_rows(document, task))
                if split == "forget":
                    out["member"].append({"id": document["id"], "document": _text(document)})
    for k in range(config.nonmember_documents):
        document = _MAKERS[TASKS[k % len(TASKS)]](fresh, rng)
        out["nonmember"].append({"id": document["id"], "document": _text(document)})
    out["world_facts"] = [_world_fact(fresh, k) for k in range(config.world_facts)]
    return out


FILES = {
    "forget": "forget.jsonl",
    "retain": "retain.jsonl",
    "member": "member.jsonl",
    "nonmember": "nonmember.jsonl",
    "world_facts": "world_facts.jsonl",
}


def write_rows(directory: str | Path, rows: dict[str, list[dict]]) -> Path:
    """Write `generate`-shaped rows as a LUME directory (each file atomically); return it."""
    directory = Path(directory)
    for key, name in FILES.items():
        write_jsonl(directory / name, rows[key])
    return directory


def write_dataset(directory: str | Path, config: SyntheticConfig = SyntheticConfig(), seed: int = 0) -> Path:
    """Generate and write the embedded benchmark; the same seed gives byte-identical files."""
    return write_rows(directory, generate(config, seed))
