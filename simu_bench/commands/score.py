"""`simu-bench score`: score generations made anywhere (vLLM, another harness) the LUME way.

    simu-bench score generations.jsonl
    simu-bench score generations.jsonl --mia nll.jsonl --utility 0.242 --utility-name mmlu

GENERATIONS.jsonl rows: `id`, `task` (Task1|Task2|Task3), `split` (forget|retain), `input`,
`output` (the expected answer), `generation` (the model's text: new tokens only, special tokens
skipped). The kind comes from the id's suffix (`sc<k>` / `qa<k>`). MIA.jsonl rows: `id`,
`membership` (member|nonmember), `nll` (the document's mean-token NLL). Prints the metrics
JSON on stdout; `mia` only with --mia, `final` only with --mia and --utility. Generations
that leave any of the 12 components without a row are refused (a Task Aggregate of the others
would read as a full score); `--allow-partial` scores them, warns on stderr and lists what is
missing under `partial` in the JSON.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from simu_bench.data.lume import KINDS, SPLITS, TASKS, kind_of
from simu_bench.errors import UserError, did_you_mean
from simu_bench.evaluation import scoring
from simu_bench.files import read_jsonl

GENERATION_FIELDS = ("id", "task", "split", "input", "output", "generation")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "score", help="score generations made elsewhere (LUME metrics JSON)",
        description="Score LUME generations from a JSONL file exactly as the official scorer does "
                    "and print the metrics JSON (components, task_aggregate, mia, utility, final).",
    )
    parser.add_argument("generations", type=Path, metavar="GENERATIONS.jsonl",
                        help="rows: id, task, split (forget|retain), input, output, generation")
    parser.add_argument("--mia", type=Path, metavar="MIA.jsonl", help="rows: id, membership (member|nonmember), nll")
    parser.add_argument("--utility", type=float, metavar="X", help="utility score in [0, 1] (e.g. MMLU accuracy)")
    parser.add_argument(
        "--utility-name", default="utility", metavar="NAME", help="what --utility measured (default: utility)"
    )
    parser.add_argument(
        "--allow-partial", action="store_true",
        help="score generations that lack some of the 12 components (forget/retain x Task1-3 x kind); the output "
        "lists them under 'partial' and the aggregate covers only the others (default: refuse)",
    )
    parser.add_argument(
        "--no-csv-na", dest="csv_na", action="store_false",
        help="score each generation as written; by default a generation (or expected answer) that pandas reads as "
        "missing ('', 'None', 'NA', 'null', ...) is scored as the string 'nan', as after the official script's CSV "
        "round trip",
    )
    parser.set_defaults(handler=main)


def _rows(path: Path):
    if not path.exists():
        raise UserError(f"{path} does not exist; expected a JSONL file with one JSON object per line")
    for number, row in read_jsonl(path):  # folders, pipes, bad bytes, deep nesting: one line each
        yield f"{path}:{number}: ", row


def _text(row: dict, name: str, where: str) -> str:
    if name not in row:
        raise UserError(f"{where}missing field {name!r}; generation rows need {', '.join(GENERATION_FIELDS)}")
    if not isinstance(row[name], str):
        raise UserError(f"{where}field {name!r} must be a string, found {type(row[name]).__name__}")
    return row[name]


def read_generations(path: Path, csv_na: bool = True) -> list[tuple[str, str, str, float]]:
    """(split, task, kind, score) for every row; UserError with file:line for a bad one."""
    scored, seen = [], set()
    for where, row in _rows(path):
        values = {name: _text(row, name, where) for name in GENERATION_FIELDS}
        if values["split"] not in SPLITS:
            raise UserError(f"{where}field 'split' is {values['split']!r}; expected one of {', '.join(SPLITS)}")
        if values["task"] not in TASKS:
            raise UserError(f"{where}unknown task {values['task']!r}{did_you_mean(values['task'], TASKS)}")
        key = (values["split"], values["id"])
        if key in seen:
            raise UserError(
                f"{where}id {values['id']!r} appears twice in the {values['split']} split; keep one generation per row"
            )
        seen.add(key)
        kind = kind_of(values["id"], where)
        scored.append(
            (values["split"], values["task"], kind,
             scoring.score_row(kind, values["output"], values["generation"], csv_na=csv_na))
        )
    if not scored:
        raise UserError(f"{path} holds no rows; expected one generation per forget/retain row")
    return scored


def read_mia(path: Path) -> tuple[list[float], list[float]]:
    """Member and non-member NLLs; UserError with file:line for a bad row or a missing class."""
    nll = {"member": [], "nonmember": []}
    for where, row in _rows(path):
        for name in ("id", "membership", "nll"):
            if name not in row:
                raise UserError(f"{where}missing field {name!r}; MIA rows need id, membership, nll")
        if row["membership"] not in nll:
            raise UserError(f"{where}field 'membership' is {row['membership']!r}; expected 'member' or 'nonmember'")
        value = row["nll"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"{where}field 'nll' is {value!r}; expected a finite number (mean-token NLL in nats)")
        nll[row["membership"]].append(float(value))
    for membership, values in nll.items():
        if not values:
            raise UserError(f"{path}: no {membership} rows; the MIA AUC needs both members and non-members")
    return nll["member"], nll["nonmember"]


def missing_components(scored) -> list[str]:
    """The components (split/task/kind) of LUME's 12 that no scored row covers, in LUME's order."""
    present = {(split, task, kind) for split, task, kind, _ in scored}
    return [f"{split}/{task}/{kind}" for split in SPLITS for task in TASKS for kind in KINDS
            if (split, task, kind) not in present]


def main(args) -> int:
    scored = read_generations(args.generations, args.csv_na)
    missing = missing_components(scored)
    if missing and not args.allow_partial:
        raise UserError(
            f"{args.generations}: no rows for {len(missing)} of the 12 components ({', '.join(missing)}); "
            "the Task Aggregate is the harmonic mean of all 12: add generations for every forget and retain row, "
            "or pass --allow-partial to score the others"
        )
    member_nll = nonmember_nll = None
    if args.mia is not None:
        member_nll, nonmember_nll = read_mia(args.mia)
    utility = None
    if args.utility is not None:
        if not (math.isfinite(args.utility) and 0.0 <= args.utility <= 1.0):
            raise UserError(f"--utility is {args.utility}; expected a score in [0, 1] (e.g. MMLU accuracy 0.242)")
        utility = {"name": args.utility_name, "value": args.utility}
    result = scoring.metrics(scored, member_nll, nonmember_nll, utility)
    if missing:
        result["partial"] = {"missing_components": missing, "scored_components": 12 - len(missing)}
        print(f"warning: {args.generations}: partial score: task_aggregate covers {12 - len(missing)} of the 12 "
              f"components; missing: {', '.join(missing)}", file=sys.stderr)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
