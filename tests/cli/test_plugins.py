"""A method from another package, registered through the ``simu_bench.methods`` entry points.

The test writes a tiny installed distribution (a package plus its ``.dist-info`` with an
``entry_points.txt``) into a folder on ``sys.path``, exactly what ``pip install`` of a package
that declares ``[project.entry-points."simu_bench.methods"]`` leaves, and runs it through
``simu-bench run`` like a built-in method.
"""

import json
import textwrap

import pytest

from simu_bench.cli import main
from simu_bench.errors import UserError
from simu_bench.unlearning import registry

METHOD = textwrap.dedent('''
    """Gradient ascent on the forget answers only (a plugin of the tests)."""
    from simu_bench.unlearning import losses
    from simu_bench.unlearning.unlearner import Unlearner


    class Ascent(Unlearner):
        paper = "a test plugin"
        config_resource = ("ascent_plugin", "ascent.yaml")

        def loss(self, model, batch):
            return -losses.answer_nll(model, batch.forget)
''')
CONFIG = "# Gradient ascent (test plugin).\nmethod: ascent\noptimizer: {name: adamw, lr: 1.0e-3}\ntrain: {epochs: 1}\n"


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    package = tmp_path / "ascent_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "method.py").write_text(METHOD)
    (package / "ascent.yaml").write_text(CONFIG)
    info = tmp_path / "ascent_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ascent-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[simu_bench.methods]\nascent = ascent_plugin.method:Ascent\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._plugins.cache_clear()
    yield
    registry._plugins.cache_clear()


def test_an_installed_plugin_is_listed_loaded_and_run(plugin, tiny_target, tmp_path):
    assert "ascent" in registry.names()
    assert registry.load_config("ascent").optimizer.lr == 1e-3
    out = tmp_path / "runs"
    args = ["run", "--methods", "ascent", "--seeds", "0", "--out", str(out), "--data", str(tiny_target.data_dir),
            "--model", str(tiny_target.target_dir), "--set", "train.max_steps=1", "--max-new-tokens", "8", "--quiet"]
    assert main(args) == 0
    assert json.loads((out / "ascent" / "seed0" / "status.json").read_text())["status"] == "ok"
    assert "ascent" in (out / "leaderboard.md").read_text()


def test_without_the_plugin_the_name_is_unknown():
    registry._plugins.cache_clear()
    with pytest.raises(UserError, match="unknown method 'ascent'"):
        registry.get("ascent")
