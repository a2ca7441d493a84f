"""Broken method plugins (entry points of ``simu_bench.methods``): each is refused with one line that
names its entry point, its package and what is wrong, and never breaks `ls`, `run --methods all` or
the other methods.

Each test writes an installed distribution by hand (a package and its ``.dist-info`` with an
``entry_points.txt``, what ``pip install`` leaves) into a folder on ``sys.path``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from fault_helpers import one_line

from simu_bench.cli import main
from simu_bench.target_model.cache import prepare
from simu_bench.unlearning import registry

from conftest import MICRO_DATA, MICRO_TARGET

GOOD = textwrap.dedent('''
    from simu_bench.unlearning import losses
    from simu_bench.unlearning.unlearner import Unlearner


    class Ascent(Unlearner):
        paper = "a test plugin"
        config_resource = ("shaky_plugin", "ascent.yaml")

        def loss(self, model, batch):
            return -losses.answer_nll(model, batch.forget)


    class NotAnUnlearner:
        config_resource = ("shaky_plugin", "ascent.yaml")


    class NotAnUnlearnerNoYaml:
        pass
''')
PACKAGE = "shaky-plugin"


def install(folder: Path, monkeypatch, entries: dict[str, str]) -> None:
    """Install `shaky-plugin`: module shaky_plugin.method (GOOD), shaky_plugin.boom (raises on import)
    and the entry points `entries` (name -> "module:Class")."""
    package = folder / "shaky_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "method.py").write_text(GOOD)
    (package / "boom.py").write_text("raise RuntimeError('the plugin broke on import')\n")
    (package / "ascent.yaml").write_text("# test plugin\nmethod: ascent\noptimizer: {name: adamw, lr: 1.0e-3}\n")
    info = folder / "shaky_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[simu_bench.methods]\n{lines}")
    monkeypatch.syspath_prepend(str(folder))
    registry._plugins.cache_clear()


@pytest.fixture(scope="module")
def micro(tiny_cache):
    return prepare(MICRO_DATA, MICRO_TARGET, seed=0, cache=tiny_cache, progress=False)


@pytest.fixture(autouse=True)
def fresh_registry():
    registry._plugins.cache_clear()
    yield
    registry._plugins.cache_clear()


BROKEN = {
    "ghost": ("no_such_module.method:Ghost", "importing no_such_module.method failed (ModuleNotFoundError: "),
    "boom": ("shaky_plugin.boom:Boom", "importing shaky_plugin.boom failed (RuntimeError: the plugin broke on import)"),
    "nameless": ("shaky_plugin.method:Missing", "module shaky_plugin.method has no class 'Missing'"),
    "notone": ("shaky_plugin.method:NotAnUnlearner", "shaky_plugin.method:NotAnUnlearner is not an Unlearner"),
    "notone_no_yaml": ("shaky_plugin.method:NotAnUnlearnerNoYaml",
                       "shaky_plugin.method:NotAnUnlearnerNoYaml is not an Unlearner"),
    "..": ("shaky_plugin.method:Ascent", "its name is not made of a-z, 0-9 and _ only"),
    "My-Method": ("shaky_plugin.method:Ascent", "its name is not made of a-z, 0-9 and _ only"),
}


def head(name: str) -> str:
    value = BROKEN[name][0]
    return f"method plugin {name!r} (entry point `{name} = {value}` of package {PACKAGE}, group simu_bench.methods)"


@pytest.mark.parametrize("name", list(BROKEN))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_broken_plugin_is_one_line_naming_entry_point_and_package(name, command, tmp_path, micro, monkeypatch,
                                                                     capsys):
    install(tmp_path / "site", monkeypatch, {name: BROKEN[name][0]})
    out = tmp_path / "store" / "out"
    argv = ["validate", name] if command == "validate" else [
        "run", "--methods", name, "--out", out, "--data", micro.data_dir, "--model", micro.target_dir, "--quiet"]
    err = one_line(capsys, argv, head(name), BROKEN[name][1], f"pip uninstall {PACKAGE}")
    assert "ships no config file" not in err
    assert not (tmp_path / "store").exists()  # `..` would have written STORE/seed0


def test_ls_lists_the_others_and_warns_about_each_broken_plugin(tmp_path, monkeypatch, capsys):
    install(tmp_path, monkeypatch,
            {"ascent": "shaky_plugin.method:Ascent", **{name: value for name, (value, _) in BROKEN.items()}})
    assert main(["ls"]) == 0
    out, err = capsys.readouterr()
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert {"ascent", "fo_graddiff", "simu"} <= listed and not listed & set(BROKEN), out
    warnings = err.splitlines()
    assert len(warnings) == len(BROKEN) and "Traceback" not in err, err
    for name, (_, problem) in BROKEN.items():
        assert any(line.startswith(f"warning: {head(name)}: {problem}") for line in warnings), (name, err)


@pytest.mark.slow  # runs simu-bench end to end
def test_run_all_runs_the_other_methods_past_a_broken_plugin(tmp_path, micro, monkeypatch, capsys):
    """`--methods all` with fo_graddiff and a plugin whose module is missing: the plugin is left out
    with its line on stderr; fo_graddiff runs and the leaderboard is written."""
    monkeypatch.setattr(registry, "METHODS", {"fo_graddiff": registry.METHODS["fo_graddiff"]})
    install(tmp_path / "site", monkeypatch, {"ghost": BROKEN["ghost"][0]})
    out = tmp_path / "runs"
    code = main(["run", "--methods", "all", "--out", str(out), "--data", str(micro.data_dir), "--model",
                 str(micro.target_dir), "--set", "train.max_steps=1", "--max-new-tokens", "4", "--quiet"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert f"warning: {head('ghost')}" in err and "Traceback" not in err
    assert (out / "fo_graddiff" / "seed0" / "status.json").is_file() and not (out / "ghost").exists()
    assert (out / "leaderboard.md").is_file()
