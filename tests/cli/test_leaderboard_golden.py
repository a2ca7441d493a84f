"""The leaderboard of a fixed run store is pinned: a change of its text is a change of behaviour.

`golden_store.make_store` writes a run store by hand (raw JSON files, no project code), with three seeds of
three methods, a diverged and a crashed run. simu's utility (0.55) is below the default utility
floor (0.75 x the target's 0.9 = 0.675): its row is shown with "below floor" as its rank, its runs
are counted as below the floor, and it takes no part in the ranks or the paired comparisons. The
first-crossing table is titled for what it measures (one setting per method; the frontier command
gives each method's best setting per level).
The golden files were rendered from this store;
regenerate them only for an intended change of the leaderboard:

    python tests/cli/test_leaderboard_golden.py
"""

import json
import sys
from pathlib import Path

from golden_store import make_store

FIXTURES = Path(__file__).parent / "fixtures"
FORMATS = ("md", "json")


def render_all(out: Path) -> dict[str, str]:
    from simu_bench.leaderboard.board import build
    from simu_bench.leaderboard.render import render

    board = build(out)
    return {fmt: render(board, fmt).replace(str(out), "<runs>") for fmt in FORMATS}  # temp paths differ


def test_the_leaderboard_of_a_fixed_store_is_unchanged(tmp_path):
    rendered = render_all(make_store(tmp_path / "runs"))
    for fmt in FORMATS:
        golden = (FIXTURES / f"leaderboard_golden.{fmt}").read_text(encoding="utf-8")
        assert rendered[fmt] == golden, f"leaderboard.{fmt} changed; regenerate the golden only if intended"


def test_the_mask_section_averages_the_finished_runs_masks(tmp_path):
    masks = json.loads(render_all(make_store(tmp_path / "runs"))["json"])["masks"]
    assert list(masks) == ["simu"]
    selected, rise = masks["simu"]["counts/selected"], masks["simu"]["causal_check/forget_nll_increase"]
    assert (selected["mean"], selected["n"]) == (13, 2) and abs(selected["ci95"] - 12.706) < 1e-3
    assert abs(rise["mean"] - 0.7) < 1e-12
    assert masks["simu"]["causal_check/random_forget_nll_increase"] == {"mean": 0.2, "ci95": 0.0, "n": 2}


if __name__ == "__main__":  # regenerate the golden files (run from tests/, where golden_store is)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for fmt, text in render_all(make_store(Path(tmp) / "runs")).items():
            (FIXTURES / f"leaderboard_golden.{fmt}").write_text(text, encoding="utf-8")
    sys.exit(0)
