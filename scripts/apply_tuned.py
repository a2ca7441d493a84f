"""Make a `simu-bench tune` folder's winners the shipped defaults, keeping each YAML's comments.

    python scripts/apply_tuned.py tune/                 # every method in tune/tuned/
    python scripts/apply_tuned.py tune/ --methods simu  # only these

For each tune/tuned/<method>.yaml: the winner's values (`tuned.params`, and `train.stop_at_step`
when the winner is a checkpoint) replace the top-level values in the registered YAML of that
method, and its `tuned:` block (command, rule, budget, winner, dev scores) replaces the shipped
one, or is added before `search:`. Comments, `search:` and `reference:` are left as they are.
A key the shipped YAML does not set at the top level is refused (one line, exit 2), never added
silently. `simu-bench tune` itself never edits the shipped YAMLs: it writes tune/tuned/.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

KEPT = ("command", "date", "rule", "trials", "trial", "dev_seeds", "sampler", "params")


def value_text(value) -> str:
    """A scalar as YAML writes it (floats round-trip: 1e-05 would load as a string, 1.0e-05 does not)."""
    return yaml.safe_dump(value, default_flow_style=True).split("\n")[0]


def set_value(lines: list[str], key: str, value) -> list[str]:
    """`section.name: value` set on the line `  name: ...` of the top-level `section:` block."""
    section, name = key.split(".")
    inside = False
    for i, line in enumerate(lines):
        if re.match(r"^\S", line) and not line.startswith("#"):
            inside = line.rstrip() == f"{section}:"
            continue
        found = re.match(rf"^  {re.escape(name)}:(\s*)([^#\n]*?)(\s*#.*)?$", line) if inside else None
        if found:
            lines[i] = f"  {name}: {value_text(value)}{found.group(3) or ''}"
            return lines
    if key == "train.stop_at_step":  # a checkpoint winner: stop there
        return set_new(lines, section, name, value)
    raise ValueError(f"{key} is not set at the top level of the shipped YAML; set it there first")


def set_new(lines: list[str], section: str, name: str, value) -> list[str]:
    start = lines.index(f"{section}:")
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    return lines[:end] + [f"  {name}: {value_text(value)}"] + lines[end:]


def tuned_block(doc: dict) -> list[str]:
    """The `tuned:` block: how the values were chosen, and the winner's dev-seed means."""
    tuned = doc["tuned"]
    kept = {"status": "tuned", **{key: tuned[key] for key in KEPT if key in tuned},
            "dev_scores": {key: round(tuned["dev_scores"][key], 4) for key in ("final", "forget", "retain")}}
    text = yaml.safe_dump({"tuned": kept}, sort_keys=False, allow_unicode=True, width=100)
    head = ["# How the settings above were tuned (`simu-bench tune`; scripts/apply_tuned.py copied the",
            "# winner's values here). Rerun the command to reproduce the trials."]
    return head + text.rstrip("\n").split("\n")


def replace_tuned(lines: list[str], block: list[str]) -> list[str]:
    """Replace the shipped `tuned:` block (and the comment right above it that introduces it), or
    add it before the comment that introduces `search:`."""
    if "tuned:" in lines:
        start = end = lines.index("tuned:")
        end += 1
        while end < len(lines) and lines[end].startswith("  "):
            end += 1
        j = start
        while j > 0 and lines[j - 1].startswith("#"):
            j -= 1
            if lines[j].startswith("# How the settings above were tuned"):
                start = j
                break
        return lines[:start] + block + lines[end:]
    at = lines.index("search:")
    while at > 0 and lines[at - 1].startswith("#"):
        at -= 1
    return lines[:at] + block + lines[at:]


def apply(text: str, doc: dict) -> str:
    """The shipped YAML `text` with the tuned `doc`'s winner applied."""
    lines = text.rstrip("\n").split("\n")
    params = dict(doc["tuned"]["params"])
    if (doc.get("train") or {}).get("stop_at_step") is not None:
        params["train.stop_at_step"] = doc["train"]["stop_at_step"]
    for key, value in params.items():
        lines = set_value(lines, key, value)
    return "\n".join(replace_tuned(lines, tuned_block(doc))) + "\n"


def main(argv: list[str] | None = None) -> int:
    from simu_bench.unlearning.registry import config_path, load_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tune_dir", type=Path)
    parser.add_argument("--methods", default="", help="comma-separated (default: every tuned/<method>.yaml)")
    args = parser.parse_args(argv)
    wanted = [m for m in args.methods.split(",") if m]
    paths = sorted((args.tune_dir / "tuned").glob("*.yaml"))
    if not paths:
        print(f"apply_tuned: no tuned configs in {args.tune_dir / 'tuned'}; run simu-bench tune first", file=sys.stderr)
        return 2
    for path in paths:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if wanted and doc["method"] not in wanted:
            continue
        shipped = config_path(doc["method"])
        try:
            new = apply(shipped.read_text(encoding="utf-8"), doc)
        except ValueError as error:
            print(f"apply_tuned: {shipped}: {error}", file=sys.stderr)
            return 2
        load_config(yaml.safe_load(new))  # the result must still be a valid config
        shipped.write_text(new, encoding="utf-8")
        print(f"{shipped}: {', '.join(f'{k}={v}' for k, v in doc['tuned']['params'].items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
