"""The documentation stays true: its links resolve, its commands parse, and it cites nothing the
repository does not contain."""

import functools
import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Folders that hold no project text: build outputs, environments, caches, run stores.
SKIPPED_DIRS = {".git", ".venv", "build", "dist", "__pycache__", ".benchmarks", ".pytest_cache", "runs"}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".sh", ".cfg", ".json", ".jsonl"}
TEXT_FILES = {Path(".ci/run"), Path(".gitignore")}
# A citation of notes the repository does not ship (spelt in parts here, so that this file does not
# cite them itself), or of a tracker entry a reader cannot see.
UNSHIPPED_NOTES = ("DE" + "SIGN", "ST" + "YLE")
STALE = re.compile(r"\b(" + "|".join(UNSHIPPED_NOTES) + r")\b|(?i:\bissues?\s*(#|no\.?\s*)?\d+)")


def project_text() -> list[Path]:
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_DIRS and not name.endswith(".egg-info")]
        for name in files:
            path = Path(folder, name)
            if path.suffix in TEXT_SUFFIXES or path.relative_to(ROOT) in TEXT_FILES:
                found.append(path)
    return sorted(path for path in found if path != Path(__file__).resolve())  # this file spells the patterns out


def stale_citations(text: str) -> list[str]:
    return [f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}" for m in STALE.finditer(text)]


def test_stale_citations_are_caught():
    """The pattern itself: these are citations, the ordinary words around them are not."""
    design, style = UNSHIPPED_NOTES
    assert stale_citations(f"see {design}.md section 6") and stale_citations(f"({design} §2)")
    assert stale_citations(f"as {style}.md says") and stale_citations("issue 13 bounds") and stale_citations("Issue #7")
    assert not stale_citations("the design of the loop; a style of code; the issue is the mask")


def test_no_citation_of_files_or_issues_the_repository_lacks():
    found = {}
    for path in project_text():
        citations = stale_citations(path.read_text(encoding="utf-8", errors="replace"))
        if citations:
            found[str(path.relative_to(ROOT))] = citations
    assert not found, f"cite papers or the authors' code instead: {found}"


# Pages a reader follows from the README: their relative links must resolve, their commands parse.
PAGES = sorted([ROOT / "README.md", ROOT / "tasks" / "README.md", ROOT / "results" / "README.md",
                *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: {file} does not exist")
        elif fragment and file.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", FENCE.sub("", file.read_text(encoding="utf-8")), re.MULTILINE)
            if fragment not in {anchor(heading) for heading in headings}:
                broken.append(f"{target}: no heading of {file.name} has the anchor #{fragment}")
    return broken


def test_the_readme_is_short():
    """A newcomer reads it in five minutes; what does not fit goes into docs/."""
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150


def test_the_readme_indexes_every_page_of_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert not [page.name for page in (ROOT / "docs").glob("*.md") if f"(docs/{page.name})" not in readme]


def test_link_check_catches_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# A page\n[ok](#a-page) [gone](b.md) [bad](#nowhere) [web](https://x.org)\n")
    assert [line.split(":")[0] for line in broken_links(tmp_path / "a.md")] == ["b.md", "#nowhere"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert not broken_links(page)


def commands(page: Path) -> list[str]:
    """Each `simu-bench ...` command of the page's code blocks (continuations joined, comments kept)."""
    found = []
    for block in FENCE.findall(page.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;|\|", line):
                part = " ".join(part.split())
                if part.startswith("simu-bench "):
                    found.append(part)
                elif " -m simu_bench " in part:  # torchrun ... -m simu_bench run ...
                    found.append("simu-bench " + part.split(" -m simu_bench ", 1)[1])
    return found


README_COMMANDS = [(page, command) for page in PAGES for command in commands(page)]


def test_the_readme_shows_the_two_commands():
    shown = commands(ROOT / "README.md")
    assert any(c.startswith("simu-bench run --methods") for c in shown)
    assert any(c.startswith("simu-bench leaderboard") for c in shown)


@functools.cache
def parser():
    from simu_bench.cli import build_parser

    return build_parser()


@pytest.mark.parametrize("page, command", README_COMMANDS,
                         ids=[f"{p.relative_to(ROOT)}: {c[:60]}" for p, c in README_COMMANDS])
def test_every_command_parses(page, command):
    """A parse of the arguments, as `--help` would check them; nothing runs."""
    words = shlex.split(command, comments=True)[1:]
    shell = [i for i, word in enumerate(words) if word == "&" or word.startswith((">", "2>", "<"))]
    words = words[:shell[0]] if shell else words  # redirections and `&` belong to the shell
    try:
        parser().parse_args(words)
    except SystemExit as stop:
        pytest.fail(f"{page.relative_to(ROOT)}: `{command}` does not parse (exit {stop.code})")


def test_the_readme_results_excerpt_is_the_committed_leaderboard():
    """Every row of the README's excerpt carries results/leaderboard.json's numbers and rank."""
    import json

    board = json.loads((ROOT / "results" / "leaderboard.json").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    columns = ("final", "task_aggregate", "mia_score", "utility")
    for row in board["rows"]:
        cells = []
        for column in columns:
            value = row["metrics"][column]
            ci = value.get("ci95")
            cells.append(f"{value['mean']:.3f}" + (f" ± {ci:.3f}" if ci is not None else ""))
        below = (row.get("utility_floor") or {}).get("passed") is False
        rank = board["ranks"].get(row["method"], "below floor" if below else "—")
        line = f"| {rank} | {row['label']} | " + " | ".join(cells) + " |"
        assert line in readme, f"README.md's results excerpt is out of date: it should hold {line}"
