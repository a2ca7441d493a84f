"""Target sizes on the run side (`simu_bench.pipeline.resolve`): checked before anything runs, and a
target that did not memorise its rows refused with the measured scores."""

import pytest

import simu_bench.pipeline.resolve
from simu_bench.cli import main
from simu_bench.errors import UserError
from simu_bench.pipeline.plan import Plan
from simu_bench.pipeline.resolve import check_size, prepare_inputs
from simu_bench.target_model.cache import Prepared
from simu_bench.target_model.sizes import SIZES


def test_an_unknown_size_and_a_size_with_a_model_are_refused():
    check_size(None, None)  # no size, or a known one, passes
    check_size("medium", None)
    with pytest.raises(UserError, match=r"'mediun' is not a target size \(did you mean 'medium'\?\)"):
        check_size("mediun", None)
    with pytest.raises(UserError, match="--size small with --model m: a given model has its own shape"):
        check_size("small", "m")


@pytest.mark.parametrize("memorised, refused", [(1.0, False), (0.5, True)])
def test_run_builds_the_size_it_is_given_and_refuses_one_that_did_not_memorise(tmp_path, monkeypatch,
                                                                               memorised, refused):
    asked = []

    def fake(data=None, target=None, seed=0, cache=None, progress=True, **kwargs):
        asked.append(target)
        info = {"memorised_rows": memorised, "final_answer_loss": 0.9, "epochs": 80}
        return Prepared(tmp_path / "data", tmp_path / "target", None, info)

    monkeypatch.setattr(simu_bench.pipeline.resolve, "prepare", fake)
    plan = Plan(methods=("simu",), seeds=(0,), out=tmp_path / "runs", size="small", quiet=True)
    if refused:
        with pytest.raises(UserError, match="'small' did not memorise its training rows: 50.0% memorised"):
            prepare_inputs(plan)
    else:
        assert prepare_inputs(plan).model == str(tmp_path / "target")
    assert asked == [SIZES["small"]]


@pytest.mark.parametrize("argv, message", [
    (["run", "--size", "smal"], "--size 'smal' is not a target size (did you mean 'small'?)"),
    (["run", "--size", "small", "--model", "m"], "--size small with --model m: a given model has its own shape"),
    (["tune", "--size", "large"], "'large' is not a target size"),
])
def test_run_and_tune_refuse_a_bad_size_in_one_line(argv, message, capsys, tmp_path):
    out = ["--out", str(tmp_path / "runs")] if argv[0] == "run" else ["--out", str(tmp_path / "tune")]
    assert main([*argv, *out]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "tune").exists()
