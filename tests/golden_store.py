"""The golden leaderboard's run store, written by hand (raw JSON files, no project code).

`make_store` writes three seeds of three methods, a diverged and a crashed run, and mask.json for
simu's finished seeds; tests/cli/test_leaderboard_golden.py pins its rendered leaderboard and
tests/unit/test_paired.py adds trajectories to it.
"""

import json
from pathlib import Path


def _write(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _metrics(seed: int, forget: float, retain: float, utility: float) -> dict:
    def split(base: float) -> dict:
        return {t: {"regurgitation": round(base + 0.01 * i + 0.003 * seed, 4), "knowledge": round(base + 0.02 * i, 4)}
                for i, t in enumerate(("Task1", "Task2", "Task3"))}

    aggregate = round(0.5 + 0.1 * retain - 0.2 * forget + 0.01 * seed, 4)
    mia = round(0.6 + 0.05 * seed, 4)
    def overall(base: float) -> dict:  # row-weighted: Task2's many questions pull knowledge down
        return {"regurgitation": round(base + 0.01 + 0.003 * seed, 4), "knowledge": round(base + 0.005, 4)}

    return {"components": {"forget": split(forget), "retain": split(retain)}, "task_aggregate": aggregate,
            "overall": {"forget": overall(forget), "retain": overall(retain)},
            "mia": {"auc": round(0.8 - 0.02 * seed, 4), "score": mia},
            "utility": {"name": "world_facts", "value": utility}, "final": round((aggregate + mia + utility) / 3, 4)}


def make_store(out: Path) -> Path:
    _write(out / "run.json", {"command": "simu-bench run --methods all --seeds 0,1,2 --out runs", "date": "2026-01-01"})
    runs = {("target", None): ("ok", (1.0, 1.0, 0.9))}
    for seed in (0, 1, 2):
        runs[("fo_graddiff", seed)] = ("ok", (0.30 - 0.02 * seed, 0.85, 0.80))
        runs[("so_graddiff", seed)] = ("ok", (0.25, 0.90 - 0.01 * seed, 0.84))
        runs[("simu", seed)] = ("diverged" if seed == 2 else "ok", (0.10, 0.70, 0.55))
    runs[("simu", 3)] = ("crashed", None)
    for (method, seed), (status, values) in runs.items():
        folder = out / method / ("" if seed is None else f"seed{seed}")
        config = {"method": method, "seed": seed, "data": {"sha256": "d" * 16}, "model": {"sha256": "m" * 16},
                  "evaluation": {"max_new_tokens": 256, "batch_size": 64}}
        _write(folder / "config.json", {"hash": "h" * 16, "config": config})
        _write(folder / "environment.json", {"device": "cpu", "date": "2026-01-01", "git": "abc",
                                             "libraries": {"simu-bench": "0.1.0", "torch": "2.13.0"}})
        if status == "ok":
            _write(folder / "metrics.json", _metrics(seed or 0, *values))
            _write(folder / "timings.json", {"total": 10.0 + (seed or 0)})
        record = {"status": status, "method": method, "seed": seed}
        if status != "ok":
            record["error"] = "loss became nan at step 3" if status == "diverged" else "RuntimeError: out of memory"
        _write(folder / "status.json", record)
        if method == "simu" and seed in MASKS:
            _write(folder / "mask.json", MASKS[seed])
    return out


def _mask(selected: int, share: float, stability: float, forget: float, random: float, retain: float) -> dict:
    return {"counts": {"selected": selected, "forget_critical": selected, "retain_critical": 10,
                       "forget_retain_jaccard": 0.5},
            "mask_share_of_trained": share, "stability": {"jaccard": stability},
            "causal_check": {"forget_nll_increase": forget, "random_forget_nll_increase": random,
                             "retain_nll_increase": retain}}


# simu's mask.json per seed; seed 2 diverged, so its mask stays out of the means. Seeds 0 and 1:
# selected 12 and 14: mean 13, sd sqrt(2), half-width t(0.975, 1) * sqrt(2) / sqrt(2) = 12.706;
# forget NLL rise 0.8 and 0.6: mean 0.7; random units 0.2 and 0.2: mean 0.2, half-width 0.
MASKS = {0: _mask(12, 0.10, 0.6, 0.8, 0.2, 0.3), 1: _mask(14, 0.12, 0.4, 0.6, 0.2, 0.1),
         2: _mask(99, 0.9, 0.0, 9.0, 9.0, 9.0)}
