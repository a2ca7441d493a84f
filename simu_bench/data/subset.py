"""A seeded subset of real LUME data, to build the tiny target on (`simu-bench prepare --data DIR`).

The full LUME release is far too large for a ~1M-parameter model to memorise on a CPU, so
`subset_lume` keeps N documents per task and split. A document is every row that shares an id
prefix (`Example.document_id`: one sc row and its questions), so a chosen document keeps all its
rows. Documents left over in either split become the held-out non-members for the MIA.

Real LUME has no utility questions (the official utility is MMLU, which says nothing about a
~1M-parameter model), so the subset gets the embedded benchmark's world facts
(`simu_bench.data.synthetic`: short questions about an invented world, none of whose words
occur in LUME): the tiny target memorises them along with the LUME rows, and their exact match
after unlearning is the utility, named `world_facts`, that makes a final score possible.
"""

from __future__ import annotations

import random

from simu_bench.data.lume import TASKS, Example, LumeData
from simu_bench.data.synthetic import SyntheticConfig, generate
from simu_bench.errors import UserError


def _documents(examples: tuple[Example, ...], task: str) -> dict[str, list[Example]]:
    """The task's rows grouped by document, documents in file order."""
    documents: dict[str, list[Example]] = {}
    for example in examples:
        if example.task == task:
            documents.setdefault(example.document_id, []).append(example)
    return documents


def _text(rows: list[Example]) -> str:
    """The full document text: its sentence-completion row put back together (input + " " + output)."""
    sc = [row for row in rows if row.kind == "regurgitation"]
    return " ".join(f"{row.input} {row.output}" for row in sc)


def _row(example: Example) -> dict:
    return {"id": example.id, "input": example.input, "output": example.output, "task": example.task}


def world_facts(count: int, seed: int) -> list[dict]:
    """The first `count` world facts of the embedded benchmark for `seed` (rows `id, input, output, task`).

    Up to the embedded default (120) they are exactly the embedded benchmark's; more are drawn by
    the same generator after them.
    """
    config = SyntheticConfig(world_facts=max(count, SyntheticConfig().world_facts))
    return generate(config, seed)["world_facts"][:count]


def subset_lume(data: LumeData, docs_per_task: int, seed: int, facts: int = 120) -> dict[str, list[dict]]:
    """Pick N documents per task and split, seeded; the rest of each task gives N non-members.

    Args:
        data: a loaded LUME directory (`load_lume`).
        docs_per_task: N, the documents kept per task in forget and in retain, and the held-out
            documents per task; each task needs at least 3N documents over its two splits.
        seed: the same data and seed give the same subset.
        facts: how many world facts to add as the utility measure (0: none).

    Returns:
        The keys of `synthetic.generate`: "forget" and "retain" rows (`id, input, output, task`,
        in file order), "member" (the chosen forget documents) and "nonmember" (held-out
        documents drawn from the unchosen forget and retain documents), rows `id, document`
        with the document's full text = its sc row's input + " " + output, and "world_facts":
        `facts` of the embedded benchmark's world facts (real LUME has none; see the module doc).
        Documents without an sc row have no text and are never picked as non-members.

    Raises:
        UserError: N < 1, or a task has fewer than N documents in a split or fewer than 3N
            documents in all.
    """
    if not isinstance(docs_per_task, int) or isinstance(docs_per_task, bool) or docs_per_task < 1:
        raise UserError(f"documents per task is {docs_per_task!r}; expected an integer >= 1")
    n = docs_per_task
    rng = random.Random(seed)
    if not isinstance(facts, int) or isinstance(facts, bool) or facts < 0:
        raise UserError(f"world facts is {facts!r}; expected an integer >= 0")
    out: dict[str, list[dict]] = {"forget": [], "retain": [], "member": [], "nonmember": [],
                                  "world_facts": world_facts(facts, seed) if facts else []}
    for task in TASKS:
        by_split = {"forget": _documents(data.forget, task), "retain": _documents(data.retain, task)}
        counts = {split: len(documents) for split, documents in by_split.items()}
        if min(counts.values()) < n or sum(counts.values()) < 3 * n:
            most = min(min(counts.values()), sum(counts.values()) // 3)
            raise UserError(
                f"{task} has {counts['forget']} forget and {counts['retain']} retain documents, too few for "
                f"{n} per split plus {n} held out; use at most {most} documents per task"
            )
        unused: list[list[Example]] = []
        for split, documents in by_split.items():
            ids = list(documents)
            chosen = set(rng.sample(ids, n))
            for doc_id in ids:  # file order, so the rows read like the source files
                rows = documents[doc_id]
                if doc_id not in chosen:
                    unused.append(rows)
                    continue
                out[split].extend(_row(row) for row in rows)
                if split == "forget" and _text(rows):
                    out["member"].append({"id": doc_id, "document": _text(rows)})
        candidates = [rows for rows in unused if _text(rows)]
        if len(candidates) < n:
            raise UserError(
                f"{task} has {len(candidates)} unused documents with a sentence-completion row, "
                f"too few for {n} held-out non-members; use fewer documents per task"
            )
        for rows in rng.sample(candidates, n):
            out["nonmember"].append({"id": rows[0].document_id, "document": _text(rows)})
    return out
