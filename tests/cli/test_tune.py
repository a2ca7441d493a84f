"""`simu-bench tune`: search blocks, the seeded sampler, the selection rules, and a tiny tune end to end.

The end-to-end tests run on the tiny target with one optimizer step per run and at most 8 new
tokens per row: what is tested is the orchestration (trials in the run store, resume, the tuned
configs), not the quality of the winners.
"""

import json

import pytest
import yaml

from simu_bench.cli import main
from simu_bench.errors import UserError
from simu_bench.pipeline import tune
from simu_bench.unlearning import registry

QUICK = ["--set", "train.max_steps=1", "--max-new-tokens", "8", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread (see tests/cli/test_run_cli.py: two threads on a shared 2-core machine crawl)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the search block --------------------------------------------------------------------------


@pytest.mark.parametrize("method", registry.names())
def test_every_shipped_config_declares_a_valid_search_space_that_is_not_part_of_its_identity(method):
    """The same shape for every method that trains: lr (log-uniform), epochs, and the retain
    weight where the loss has one (``gamma``, or ``alpha`` as NPO-style papers call it)."""
    config = registry.load_config(method)
    if registry.get(method).trains:
        assert {"optimizer.lr", "train.epochs"} <= set(config.search)
        assert next(iter(config.search["optimizer.lr"])) == "log_uniform"
    else:
        assert config.search  # e.g. Selective Pruning's pruned share
    weights = [f"options.{name}" for name in ("gamma", "alpha") if hasattr(config.options, name)]
    assert all(key in config.search for key in weights), weights
    assert "search" not in config.to_dict() and "tuned" not in config.to_dict()


def test_search_problems_are_all_reported_at_once():
    raw = {"method": "fo_graddiff", "search": {
        "optimizer.lr": {"log_uniform": [1.0e-2, 1.0e-5]},  # low > high
        "options.t": {"uniform": [0.1, 0.5]},  # GradDiff has no t
        "train.epochs": {"int": [0, 3]},  # 0 epochs is not a valid value
        "train.batch_size": {"grid": [1, 2]},  # unknown kind
        "optimizer.name": {"choice": ["adamw", "sgd"]},  # sgd is no optimizer
        "gamma": {"uniform": [1.0, 2.0]},  # not a dotted key of a section
    }}
    with pytest.raises(UserError) as error:
        registry.load_config(raw)
    text = str(error.value)
    assert text.startswith("6 problems in config")
    for expected in ("search.optimizer.lr: log_uniform: low 0.01 > high 1e-05", "search.options.t: 0.1 is not a valid "
                     "value: options.t: unknown key", "search.train.epochs: 0 is not a valid value",
                     "search.train.batch_size: expected one of {log_uniform: [...]}", "'sgd' is not a valid value",
                     "search.gamma: expected a dotted key"):
        assert expected in text, text


@pytest.mark.parametrize("search", [{}, [], {"optimizer.lr": {"log_uniform": [0.0, 1.0]}},
                                    {"optimizer.lr": {"uniform": ["a", 1.0]}}, {"options.gamma": {"choice": []}}])
def test_an_empty_or_malformed_search_block_is_refused(search):
    with pytest.raises(UserError, match="search"):
        registry.load_config({"method": "fo_graddiff", "search": search})


def test_a_tuned_block_is_accepted_and_kept_out_of_the_run_identity():
    plain = registry.load_config("fo_graddiff")
    values = {"optimizer": {"lr": plain.optimizer.lr}, "train": {"epochs": plain.train.epochs},
              "options": {"gamma": plain.options.gamma}}
    tuned = registry.load_config({"method": "fo_graddiff", **values, "tuned": {"trial": 3}})
    assert tuned.tuned == {"trial": 3} and tuned.to_dict()["optimizer"]["lr"] == plain.to_dict()["optimizer"]["lr"]


# -- the sampler and the rules -----------------------------------------------------------------


def proposals(folder, seed: int, space: dict, values: list[float]) -> list[dict]:
    """The parameters a fresh journal study in `folder` proposes when told `values` in turn."""
    from simu_bench.pipeline import study

    shared, asked = study.open_study(folder, "simu", seed, tune.STARTUP_TRIALS), []
    for value in values:
        taken = study.next_trial(shared, folder, "simu", len(values), tune.distributions(space), tune.rounded)
        with taken.claim:
            asked.append(taken.params)
            shared.tell(taken.number, value)
    return asked


def test_the_same_sampler_seed_and_results_give_the_same_trials(tmp_path):
    space = registry.load_config("simu").search
    values = [0.1 * k for k in range(8)]  # past the 5 random start-up trials: TPE's own proposals too
    first = proposals(tmp_path / "a", 0, space, values)
    assert first == proposals(tmp_path / "b", 0, space, values)
    assert first != proposals(tmp_path / "c", 1, space, values)
    assert all(7.0e-5 <= p["optimizer.lr"] <= 1.0e-2 and p["options.t"] <= 0.5 and 2 <= p["train.epochs"] <= 8
               for p in first)


def test_the_rules_score_trials_as_documented():
    """final: the mean final score. retain_at_forget at L = 0.2: retain when forget <= L, else
    -forget, so (forget 0.1, retain 0.5) -> 0.5 beats (forget 0.3, retain 0.9) -> -0.3."""
    ok = {"per_seed": {"100": {"status": "ok"}}}
    assert tune.score({"final": 0.6, "forget": 0.5, "retain": 0.9, **ok}, "final", 0.2) == (0.6, True)
    assert tune.score({"final": 0.0, "forget": 0.1, "retain": 0.5, **ok}, "retain_at_forget", 0.2) == (0.5, True)
    assert tune.score({"final": 0.9, "forget": 0.3, "retain": 0.9, **ok}, "retain_at_forget", 0.2) == (-0.3, False)


def test_a_trial_below_the_utility_floor_cannot_win():
    """The sampler still hears its score (so it learns where the floor is); the trial is not feasible."""
    ok = {"per_seed": {"100": {"status": "ok"}}}
    assert tune.score({"final": 0.9, "forget": 0.1, "retain": 0.9, **ok}, "final", 0.2, passes=False) == (0.9, False)
    assert tune.score({"final": 0.9, "forget": 0.1, "retain": 0.9, **ok}, "retain_at_forget", 0.2, passes=False) == (
        -0.1, False)


def test_the_front_keeps_the_trials_no_other_trial_beats_on_both_axes():
    trials = [{"trial": 0, "forget": 0.1, "retain": 0.5}, {"trial": 1, "forget": 0.3, "retain": 0.9},
              {"trial": 2, "forget": 0.3, "retain": 0.4}, {"trial": 3, "forget": 0.1, "retain": 0.5}]
    assert tune.front(trials) == [0, 1, 3]  # 2 is beaten by 0 (and 1); ties stay


# -- the command -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tiny_target):
    return ["--data", str(tiny_target.data_dir), "--model", str(tiny_target.target_dir)]


@pytest.mark.parametrize("args, message", [
    (["--trials", "0"], "--trials 0: expected a budget of at least 1"),
    (["--dev-seeds", "2,100"], "--dev-seeds overlaps --report-seeds at 2"),
    (["--methods", "fo_gradiff"], "unknown method 'fo_gradiff' (did you mean 'fo_graddiff'?)"),
    (["--set", "search={}"], "search: expected a mapping of dotted keys"),
    (["--set", "search={optimizer.lr: {log_uniform: [1.0e-2, 1.0e-5]}}"], "low 0.01 > high 1e-05"),
    (["--set", "optimizer.lr=1.0e-4"], "optimizer.lr is in fo_graddiff's search space"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, inputs, capsys, args, message):
    out = tmp_path / "tune"
    assert main(["tune", "--methods", "fo_graddiff", "--out", str(out), *inputs, *QUICK, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def run_tune(out, inputs, trials: int) -> dict:
    code = main(["tune", "--methods", "fo_graddiff,simu", "--trials", str(trials), "--dev-seeds", "100",
                 "--out", str(out), *inputs, *QUICK])
    assert code == 0
    return json.loads((out / "tune.json").read_text())


@pytest.fixture(scope="module")
def tuned(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    return out, run_tune(out, inputs, 2)


def test_tune_writes_trials_reports_and_tuned_configs_with_the_winners_values(tuned):
    out, report = tuned
    assert {p.name for p in out.iterdir()} == {"trials", "tuned", "tune.json", "tune.md", "fronts.png", "study",
                                               "tune-plan.json"}
    md = (out / "tune.md").read_text()
    for method in ("fo_graddiff", "simu"):
        result = report["methods"][method]
        assert [t["trial"] for t in result["trials"]] == [0, 1]
        assert (out / "trials" / method / "trial1" / "seed100" / "status.json").exists()
        # trials are judged by scores only: decoded with early stopping, and recorded so
        stored = json.loads((out / "trials" / method / "trial1" / "seed100" / "config.json").read_text())
        assert stored["config"]["evaluation"]["fast_decode"] is True
        winner = result["trials"][result["winner"]]
        assert winner["final"] == max(t["final"] for t in result["trials"] if t["feasible"])
        path = out / "tuned" / f"{method}.yaml"
        config = registry.load_config(path)
        assert config.method == method and config.train.max_steps == 1  # the --set the trials ran with
        for key, value in winner["params"].items():
            section, name = key.split(".")
            assert getattr(getattr(config, section), name) == value, key
        block = yaml.safe_load(path.read_text())["tuned"]
        assert block["dev_seeds"] == [100] and block["trials"] == 2 and block["params"] == winner["params"]
        assert block["dev_scores"]["final"] == winner["final"] and "optimizer.lr" in block["space"]
        assert f"## {method}" in md
    assert main(["validate", str(out / "tuned" / "simu.yaml")]) == 0


def test_an_interrupted_tune_resumes_to_the_same_trials_and_winners(tuned, inputs, tmp_path, capsys):
    out, fresh = tuned
    partial = run_tune(tmp_path / "tune", inputs, 1)
    resumed = run_tune(tmp_path / "tune", inputs, 2)
    log = capsys.readouterr().out
    assert "fo_graddiff trial 1 (of 2) seed 100" in log and "trial 0 (of" not in log.split("winners:")[1]
    for method in ("fo_graddiff", "simu"):
        assert partial["methods"][method]["trials"][0]["params"] == fresh["methods"][method]["trials"][0]["params"]
        for key in ("winner", "front"):
            assert resumed["methods"][method][key] == fresh["methods"][method][key]
        strip = [{k: v for k, v in t.items() if k != "dir"} for t in resumed["methods"][method]["trials"]]
        assert strip == [{k: v for k, v in t.items() if k != "dir"} for t in fresh["methods"][method]["trials"]]


def test_a_tune_folder_refuses_a_command_with_another_rule_in_one_line(tuned, inputs, capsys):
    """The studies in DIR were judged by the final score: a retain_at_forget command on DIR is
    refused before it runs or writes anything, and the folder is left as it was."""
    out, _ = tuned
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    code = main(["tune", "--methods", "fo_graddiff,simu", "--trials", "2", "--dev-seeds", "100", "--out", str(out),
                 "--rule", "retain_at_forget", "--forget-level", "0.3", *inputs, *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "holds studies made with rule 'final' (this command: 'retain_at_forget')" in err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before


def test_run_takes_the_tuned_configs_from_config_dir(tuned, inputs, tmp_path, capsys):
    out, report = tuned
    runs = tmp_path / "runs"
    assert main(["run", "--methods", "fo_graddiff", "--config-dir", str(out / "tuned"), "--out", str(runs),
                 *inputs, "--max-new-tokens", "8", "--quiet"]) == 0
    stored = json.loads((runs / "fo_graddiff" / "seed0" / "config.json").read_text())["config"]["unlearn"]
    result = report["methods"]["fo_graddiff"]
    lr = result["trials"][result["winner"]]["params"]["optimizer.lr"]
    assert stored["optimizer"]["lr"] == lr and stored["train"]["max_steps"] == 1
    (out / "tuned" / "so_graddiff.yaml").unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["run", "--methods", "so_graddiff", "--config-dir", str(out / "tuned"), "--out", str(tmp_path / "x"),
                 *inputs]) == 2
    err = capsys.readouterr().err
    assert "no so_graddiff.yaml for method 'so_graddiff' (found: fo_graddiff, simu)" in err and err.count("\n") == 1
