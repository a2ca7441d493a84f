"""The documentation stays true: no citation of a file the repository does not contain."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Folders that hold no project text: build outputs, environments, caches, run stores.
SKIPPED_DIRS = {".git", ".venv", "build", "dist", "__pycache__", ".benchmarks", ".pytest_cache", "runs"}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".sh", ".cfg", ".json", ".jsonl"}
TEXT_FILES = {Path(".ci/run"), Path(".gitignore")}
# A citation of notes the repository does not ship, or of a tracker entry a reader cannot see.
STALE = re.compile(r"\b(DESIGN|STYLE)\b|(?i:\bissues?\s*(#|no\.?\s*)?\d+)")


def project_text() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in relative.parts[:-1]):
            continue
        if path == Path(__file__).resolve():
            continue  # it spells the patterns out
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or relative in TEXT_FILES):
            found.append(path)
    return sorted(found)


def stale_citations(text: str) -> list[str]:
    return [f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}" for m in STALE.finditer(text)]


def test_stale_citations_are_caught():
    """The pattern itself: these are citations, the ordinary words around them are not."""
    assert stale_citations("see DESIGN.md section 6") and stale_citations("(DESIGN §2)")
    assert stale_citations("as STYLE.md says") and stale_citations("issue 13 bounds") and stale_citations("Issue #7")
    assert not stale_citations("the design of the loop; a style of code; the issue is the mask")


def test_no_citation_of_files_or_issues_the_repository_lacks():
    found = {}
    for path in project_text():
        citations = stale_citations(path.read_text(encoding="utf-8", errors="replace"))
        if citations:
            found[str(path.relative_to(ROOT))] = citations
    assert not found, f"cite papers or the authors' code instead: {found}"
