"""scripts/apply_tuned.py: a tuned winner becomes the shipped default, comments and search kept."""

import importlib.util
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "apply_tuned.py"
spec = importlib.util.spec_from_file_location("apply_tuned", SCRIPT)
apply_tuned = importlib.util.module_from_spec(spec)
spec.loader.exec_module(apply_tuned)

SHIPPED = """\
# A method.
method: npo
optimizer:
  name: adamw
  lr: 7.0e-4   # the centre of the range
train:
  epochs: 5
options:
  beta: 0.1
# How the settings above were tuned (`simu-bench tune` writes this block into the configs it
# tunes): not yet for this method.
tuned:
  status: untuned
# The space.
search:
  optimizer.lr: {log_uniform: [7.0e-5, 7.0e-3]}
  train.epochs: {int: [2, 8]}
reference:
  optimizer:
    lr: 1.0e-5
"""


def tuned_doc(params: dict, stop=None) -> dict:
    return {"method": "npo", "train": {"stop_at_step": stop} if stop else {},
            "tuned": {"command": "simu-bench tune --methods npo", "rule": "best mean final score", "trials": 16,
                      "trial": 3, "dev_seeds": [100, 101], "params": params,
                      "dev_scores": {"final": 0.51234, "forget": 0.2, "retain": 0.9, "per_seed": {}}}}


def test_the_winner_replaces_top_level_values_only_and_keeps_comments():
    text = apply_tuned.apply(SHIPPED, tuned_doc({"optimizer.lr": 1.0e-5, "train.epochs": 7}))
    doc = yaml.safe_load(text)
    assert doc["optimizer"]["lr"] == 1.0e-5 and isinstance(doc["optimizer"]["lr"], float)
    assert doc["train"]["epochs"] == 7 and doc["reference"]["optimizer"]["lr"] == 1.0e-5
    assert "  lr: 1.0e-05   # the centre of the range" in text and "# The space." in text
    assert doc["search"] == yaml.safe_load(SHIPPED)["search"]
    assert doc["tuned"]["status"] == "tuned" and doc["tuned"]["trial"] == 3
    assert doc["tuned"]["dev_scores"] == {"final": 0.5123, "forget": 0.2, "retain": 0.9}
    assert "not yet for this method" not in text and text.count("tuned:") == 1


def test_a_checkpoint_winner_gets_its_stop_step_and_a_missing_key_is_refused():
    doc = yaml.safe_load(apply_tuned.apply(SHIPPED, tuned_doc({"train.epochs": 3}, stop=40)))
    assert doc["train"] == {"epochs": 3, "stop_at_step": 40}
    with pytest.raises(ValueError, match="options.gamma is not set at the top level"):
        apply_tuned.apply(SHIPPED, tuned_doc({"options.gamma": 2.0}))


def test_a_yaml_without_a_tuned_block_gets_one_before_the_search_comment():
    shipped = SHIPPED.replace("# How the settings above were tuned (`simu-bench tune` writes this block into the "
                              "configs it\n# tunes): not yet for this method.\ntuned:\n  status: untuned\n", "")
    text = apply_tuned.apply(shipped, tuned_doc({"train.epochs": 4}))
    lines = text.splitlines()
    assert lines.index("tuned:") < lines.index("# The space.") < lines.index("search:")
