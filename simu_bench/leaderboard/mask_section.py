"""The leaderboard's section on critical-neuron masks, from each run's `mask.json`.

One row per method whose finished runs wrote a `mask.json` (SIMU and the variants that compute its
mask; `simu_bench.simu.diagnostics` says what each number is). Each cell is the mean over those
runs, with the 95% Student-t half-width when there are two or more. The causal check's columns
are the evidence whether attribution finds units that carry the forget set: zeroing the selected
units should raise the forget NLL more than zeroing as many random units per layer, and more than
it raises the retain NLL.
"""

from __future__ import annotations

import json

from simu_bench.leaderboard.stats import mean_ci

MASK_FILE = "mask.json"
TITLE = "Critical-neuron masks: what they hold and whether their units carry the forget set"
EXPLANATION = (
    "Per method with a mask, mean over its finished runs (± 95% t half-width): units selected (all layers), "
    "units in C_f (critical for the forget set) and C_r (for the retain set), their Jaccard, the share of "
    "the trained weights the mask covers, the Jaccard of the masks "
    "chosen from two disjoint halves of the forget rows, and the causal check on the model before unlearning: "
    "the forget NLL increase when the selected units are zeroed, when as many random units per layer are "
    "zeroed (mean of 10 draws), and the retain NLL increase when the selected units are zeroed."
)
# (header, path in mask.json)
COLUMNS = (
    ("selected units", ("counts", "selected")),
    ("C_f units", ("counts", "forget_critical")),
    ("C_r units", ("counts", "retain_critical")),
    ("C_f/C_r Jaccard", ("counts", "forget_retain_jaccard")),
    ("share of trained weights", ("mask_share_of_trained",)),
    ("stability (Jaccard of halves)", ("stability", "jaccard")),
    ("forget NLL rise, mask zeroed", ("causal_check", "forget_nll_increase")),
    ("forget NLL rise, random units", ("causal_check", "random_forget_nll_increase")),
    ("retain NLL rise, mask zeroed", ("causal_check", "retain_nll_increase")),
)


def value_at(record: dict, path: tuple[str, ...]) -> float | None:
    """The number at `path` in a `mask.json` record (None when absent or not a number)."""
    for key in path:
        record = record.get(key) if isinstance(record, dict) else None
    return record if isinstance(record, (int, float)) and not isinstance(record, bool) else None


def collect(rows) -> dict[str, list[dict]]:
    """method -> the `mask.json` records of its finished runs (methods without one are left out)."""
    found = {}
    for row in rows:
        records = []
        for run in row.ok:
            path = run.path / MASK_FILE
            if path.is_file():
                records.append(json.loads(path.read_text(encoding="utf-8")))
        if records:
            found[row.method] = records
    return found


def summary(rows) -> dict[str, dict]:
    """method -> {column path joined by "/": {"mean", "ci95", "n"}} (the leaderboard JSON's "masks")."""
    result = {}
    for method, records in collect(rows).items():
        cells = {}
        for _, path in COLUMNS:
            values = [v for v in (value_at(r, path) for r in records) if v is not None]
            mean, half = mean_ci(values)
            cells["/".join(path)] = {"mean": mean, "ci95": half, "n": len(values)}
        result[method] = cells
    return result


def _text(cell: dict) -> str:
    if cell["mean"] is None:
        return "—"
    text = f"{cell['mean']:.3f}"
    return text if cell["ci95"] is None else f"{text} ± {cell['ci95']:.3f}"


def sections(rows) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """The section in the shape of `paired.sections` (title, explanation, headers, rows); [] without masks."""
    table = summary(rows)
    if not table:
        return []
    headers = ["method", "runs"] + [header for header, _ in COLUMNS]
    body = [
        [method, str(max(cell["n"] for cell in cells.values()))] + [_text(cells["/".join(p)]) for _, p in COLUMNS]
        for method, cells in table.items()
    ]
    return [(TITLE, EXPLANATION, headers, body)]
