"""Nothing is written outside `--out`: run folders that are symbolic links (or resolve outside the
store) and a `.claims` that is not a folder are refused with one line, exit status 2, before
anything is written; and the docs describe the claims where the code makes them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fault_helpers import one_line

from simu_bench.store import claims
from simu_bench.target_model.cache import prepare

from conftest import MICRO_DATA, MICRO_TARGET

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def micro(tiny_cache):
    return prepare(MICRO_DATA, MICRO_TARGET, seed=0, cache=tiny_cache, progress=False)


def listing(*folders: Path) -> dict:
    return {folder: sorted((p.relative_to(folder), p.read_bytes() if p.is_file() and not p.is_symlink() else None)
                           for p in folder.rglob("*")) for folder in folders}


def run(micro, out: Path) -> list[str]:
    return ["run", "--methods", "fo_graddiff", "--out", str(out), "--data", str(micro.data_dir),
            "--model", str(micro.target_dir), "--set", "train.max_steps=1", "--max-new-tokens", "4", "--quiet"]


@pytest.mark.parametrize("linked", ["seed_folder", "method_folder"])
def test_a_run_folder_that_links_outside_the_store_is_refused(linked, micro, tmp_path, capsys):
    """An interrupted run (no status.json) is cleared and redone: through the link, that would delete
    and rewrite the files of a folder outside --out."""
    out, outside = tmp_path / "runs", tmp_path / "elsewhere"
    victim = outside / "seed0" if linked == "method_folder" else outside
    victim.mkdir(parents=True)
    (victim / "metrics.json").write_text('{"precious": true}\n')
    (victim / "config.json").write_text('{"hash": "x"}\n')
    link = out / "fo_graddiff" / "seed0" if linked == "seed_folder" else out / "fo_graddiff"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside, target_is_directory=True)
    before = listing(out, outside)
    one_line(capsys, run(micro, out), f"{link} is a symbolic link (to {outside.resolve()})",
             f"run folders must be real folders inside the run store {out}", f"remove the link (rm {link})")
    assert listing(out, outside) == before


def test_claims_that_are_a_file_are_one_line(micro, tmp_path, capsys):
    out = tmp_path / "runs"
    out.mkdir()
    (out / claims.FOLDER).write_text("not a folder\n")
    before = listing(out)
    one_line(capsys, run(micro, out), f"cannot create {out / claims.FOLDER} (it is a file, not a folder)",
             f"remove it (rm {out / claims.FOLDER})")
    assert listing(out) == before


def test_the_docs_name_the_claim_files_the_code_makes():
    """README.md and docs/: the lock where `claims.claim_path` puts it; no other place for a claim."""
    texts = [path.read_text(encoding="utf-8") for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]]
    lock = claims.claim_path(Path("OUT"), "<method>", "<k>")
    assert any(f"`{lock}.lock`" in text for text in texts)
    assert not [text for text in texts if re.search(r"<run>/\.claim|\.claim\.lock", text)]
