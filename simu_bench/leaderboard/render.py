"""The leaderboard (`simu_bench.leaderboard.board.Board`) as Markdown, CSV, LaTeX, HTML or JSON,
and the report of `simu-bench tune` as Markdown (`tune_markdown`).

Command: `simu-bench leaderboard RUN_DIR --format md` (`simu-bench run` writes md and json).
"""

from __future__ import annotations

import csv
import html
import io
import json

from tabulate import tabulate

from simu_bench.leaderboard import FORMATS, mask_section
from simu_bench.leaderboard.board import Board, Row, Stat, legend
from simu_bench.leaderboard.paired import matched_summary, sections
from simu_bench.leaderboard.values import COMPONENTS, Column


def render(board: Board, fmt: str, commands: list[str] | None = None) -> str:
    """The leaderboard as text in `fmt` (one of FORMATS)."""
    commands = commands or []
    if fmt == "json":
        return json.dumps({**to_dict(board), "commands": commands}, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return _csv(board)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    tables = _tables(board, fmt)
    prose = _provenance(board, commands)
    extra = sections(board.comparison, [r.method for r in board.rows]) if board.comparison else []
    extra += mask_section.sections(board.rows)
    return {"md": _markdown, "latex": _latex, "html": _html}[fmt](board, tables, prose, extra)


def _csv(board: Board) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    keys = [c.key for c in board.columns + COMPONENTS]
    # rank last: columns added later go to the end, so readers by position keep working.
    writer.writerow(["method", "runs"] + [f"{k}_{part}" for k in keys for part in ("mean", "ci95")] + ["rank"])
    for r in board.rows:
        cells = [v for k in keys for v in (r.stats[k].mean, r.stats[k].ci95)]
        rank = board.rank(r).replace("—", "")
        writer.writerow([r.label, r.runs_text()] + ["" if v is None else f"{v:.6g}" for v in cells] + [rank])
    return buffer.getvalue()


def _markdown(board: Board, tables: tuple, prose: list[str], extra: list) -> str:
    main_headers, main, comp_headers, comp = tables
    between = []
    for title, explanation, headers, table in extra:
        between += [f"## {title}", "", explanation, ""]
        between += [tabulate(table, headers, tablefmt="github", disable_numparse=True), ""] if headers else []
    parts = [
        "# simu-bench leaderboard",
        "",
        *prose,
        "",
        tabulate(main, main_headers, tablefmt="github", disable_numparse=True),
        "",
        legend(board),
        "",
        *between,
        "## The 12 components",
        "",
        tabulate(comp, comp_headers, tablefmt="github", disable_numparse=True),
        "",
    ]
    return "\n".join(parts)


def _latex(board: Board, tables: tuple, prose: list[str], extra: list) -> str:
    main_headers, main, comp_headers, comp = tables
    parts = [f"% {line}" for line in prose + [legend(board)]]
    parts += [
        tabulate(main, main_headers, tablefmt="latex_raw", disable_numparse=True),
        "",
    ]
    for title, explanation, headers, table in extra:
        parts += [f"% {title}: {explanation}"]
        parts += [tabulate(table, headers, tablefmt="latex", disable_numparse=True), ""]
    parts += [tabulate(comp, comp_headers, tablefmt="latex_raw", disable_numparse=True), ""]
    return "\n".join(parts)


def _html(board: Board, tables: tuple, prose: list[str], extra: list) -> str:
    main_headers, main, comp_headers, comp = tables
    paragraphs = "".join(f"<p>{html.escape(line)}</p>\n" for line in prose)
    main_table = tabulate(main, main_headers, tablefmt="html", disable_numparse=True)
    comp_table = tabulate(comp, comp_headers, tablefmt="html", disable_numparse=True)
    between = "".join(
        f"<h2>{html.escape(title)}</h2>\n<p>{html.escape(explanation)}</p>\n"
        + (tabulate(table, headers, tablefmt="html", disable_numparse=True) + "\n" if headers else "")
        for title, explanation, headers, table in extra
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>simu-bench leaderboard</title></head><body>\n'
        f"<h1>simu-bench leaderboard</h1>\n{paragraphs}{main_table}\n<p>{html.escape(legend(board))}</p>\n{between}"
        f"<h2>The 12 components</h2>\n{comp_table}\n</body></html>\n"
    )


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"),
                          ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text.replace("±", r"$\pm$").replace("—", "--")


def _tables(board: Board, style: str) -> tuple[list, list, list, list]:
    """Headers and cells of the two tables, with orientation arrows in the headers."""
    arrows = {"latex": (r"$\uparrow$", r"$\downarrow$")}.get(style, ("↑", "↓"))

    def header(column: Column) -> str:
        label = _latex_escape(column.label) if style == "latex" else column.label
        return f"{label} {arrows[0] if column.higher_is_better else arrows[1]}"

    def cell(row: Row, key: str) -> str:
        text = row.cell(key)
        return _latex_escape(text) if style == "latex" else text

    def name(row: Row) -> str:
        return _latex_escape(row.label) if style == "latex" else row.label

    main_headers = ["rank", "method"] + [header(c) for c in board.columns] + ["runs"]
    main = [[board.rank(r), name(r)] + [cell(r, c.key) for c in board.columns] + [r.runs_text()] for r in board.rows]
    # Components transposed (one row per component, one column per method): 12 columns would not fit.
    comp_headers = ["component"] + [name(r) for r in board.rows]
    comp = [[header(c)] + [cell(r, c.key) for r in board.rows] for c in COMPONENTS]
    return main_headers, main, comp_headers, comp


def _provenance(board: Board, commands: list[str]) -> list[str]:
    lines = []
    if commands:
        lines.append("Generated by " + " then ".join(f"`{c}`" for c in commands) + "; do not edit by hand.")
    env = board.meta.get("environment") or {}
    libs = env.get("libraries") or {}
    if env.get("libraries"):
        shown = ("simu-bench", "torch", "transformers", "lm-eval")
        versions = ", ".join(f"{k} {v}" for k, v in libs.items() if k in shown and v)
        lines.append(
            f"Environment of the reference run: {versions}; git {env.get('git') or 'unknown'}; "
            f"device {env.get('device')}; date {env.get('date')}."
        )
    if board.meta.get("train_dtypes") or board.meta.get("eval_dtype"):
        lines.append(f"Precision: unlearning in {', '.join(board.meta.get('train_dtypes') or ['—'])}; the target "
                     f"evaluated in {board.meta.get('eval_dtype') or '—'} (each run's dtypes: its config.json).")
    model, data = board.meta.get("model") or {}, board.meta.get("data") or {}
    if model or data:
        name = model.get("hub_id") or f"sha256 {model.get('sha256')}"
        lines.append(
            f"Model: {name}; data: sha256 {data.get('sha256')} (fingerprints of the files; see target/config.json)."
        )
    return lines


def to_dict(board: Board) -> dict:
    def stat(s: Stat) -> dict:
        return {"mean": s.mean, "ci95": s.ci95, "n": s.n, "values": list(s.values)}

    return {
        "legend": legend(board),
        "meta": board.meta,
        "columns": [
            {"key": c.key, "label": c.label, "higher_is_better": c.higher_is_better} for c in board.columns + COMPONENTS
        ],
        "rows": [
            {
                "method": r.method,
                "label": r.label,
                "runs": r.runs_text(),
                "status": {str(run.seed): {"status": run.status, "error": run.error} for run in r.runs},
                "metrics": {k: stat(s) for k, s in r.stats.items()},
                "utility_floor": None if r.floor is None else {
                    "passed": r.floor["passed"], "runs": {str(seed): v for seed, v in r.floor["runs"].items()}},
            }
            for r in board.rows
        ],
        "utility_floor": board.utility_floor,
        "ranks": board.comparison.ranks if board.comparison else {},
        "paired": board.comparison.paired if board.comparison else [],
        "matched": matched_summary(board.comparison) if board.comparison else {},
        "masks": mask_section.summary(board.rows),
    }


def tune_markdown(report: dict) -> str:
    """tune.md: the tuning settings, and per method its winner and every trial (`simu_bench.pipeline.tune`)."""
    lines = ["# Tuning", "", f"`{report['command']}`", "",
             f"{report['trials']} trials per method on dev seeds {', '.join(map(str, report['dev_seeds']))} "
             f"(reported seeds: {', '.join(map(str, report['report_seeds']))}); sampler "
             f"{report['sampler']['name']}(seed={report['sampler']['seed']}, "
             f"n_startup_trials={report['sampler']['n_startup_trials']}), Optuna {report['sampler']['optuna']}.",
             f"Rule: {report['rule']['text']}. Diverged or crashed runs count as final 0, forget 1, retain 0.",
             "Front: no other trial has both lower forget and higher retain.", ""]
    for method, result in report["methods"].items():
        lines += [f"## {method}", ""]
        winner = result["winner"]
        if winner is None:
            lines += ["No trial met the rule: no tuned config.", ""]
        else:
            best = next(t for t in result["trials"] if t["trial"] == winner)
            lines += [f"Winner: trial {winner} ({_params(best['params'])}): final {best['final']:.3f}, forget "
                      f"{best['forget']:.3f}, retain {best['retain']:.3f}; config `{result['tuned_config']}`.", ""]
        keys = list(result["space"])
        rows = [[t["trial"], *(t["params"][k] for k in keys), f"{t['final']:.3f}", f"{t['forget']:.3f}",
                 f"{t['retain']:.3f}", ",".join(sorted({v['status'] for v in t["per_seed"].values()})),
                 "✓" if t["trial"] in result["front"] else "", "★" if t["trial"] == winner else ""]
                for t in result["trials"]]
        headers = ["trial", *keys, "final ↑", "forget ↓", "retain ↑", "status", "front", "winner"]
        lines += [tabulate(rows, headers=headers, tablefmt="github"), ""]
    return "\n".join(lines)


def _params(params: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items())
