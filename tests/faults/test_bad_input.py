"""Hostile input and faults through the command line: one line on stderr, exit status 2, nothing half-written.

Each case builds one bad input (a folder where a file belongs, a named pipe, an unreadable file,
JSON or YAML nested thousands deep, a lone surrogate, an oversized row, a billion-laughs YAML, a
broken model folder, a run store edited by hand, a full disk) and runs `simu_bench.cli.main` on it
in process, on the micro target of `conftest` (a model built in about a second).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from simu_bench.cli import main
from simu_bench.files import DEFAULT_MAX_ROW_BYTES, MAX_ROW_BYTES_ENV
from simu_bench.target_model.cache import prepare

from conftest import MICRO_DATA, MICRO_TARGET, slow_fixture

QUICK = ["--set", "train.max_steps=1", "--max-new-tokens", "4", "--quiet"]


@pytest.fixture(autouse=True)
def no_leaked_log_handlers(monkeypatch):
    """absl (under rouge_score) calls logging.basicConfig on its first log line, binding a root handler
    to the stderr of that moment, here a test's capture; later tests must not write into it."""
    monkeypatch.setattr(logging.root, "handlers", list(logging.root.handlers))


@pytest.fixture(scope="module")
def micro(tiny_cache):
    return prepare(MICRO_DATA, MICRO_TARGET, seed=0, cache=tiny_cache, progress=False)


@pytest.fixture
def data(micro, tmp_path) -> Path:
    """A copy of the micro data folder that a test may break."""
    return Path(shutil.copytree(micro.data_dir, tmp_path / "data"))


@pytest.fixture
def model(micro, tmp_path) -> Path:
    """A copy of the micro target folder that a test may break."""
    return Path(shutil.copytree(micro.target_dir, tmp_path / "model"))


def one_line(capsys, argv: list, *needles: str) -> str:
    """Run the CLI; assert exit status 2 and one line on stderr holding every needle; return it."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert len(err) < 2000, err[:300]  # a line a person can read, however large the input
    for needle in needles:
        assert needle in err, err
    return err


def run_args(data: Path, model: Path, out: Path, *extra) -> list:
    return ["run", "--methods", "fo_graddiff", "--data", data, "--model", model, "--out", out, *QUICK, *extra]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_rows(path: Path, items: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in items), encoding="utf-8")


# -- data files: each is refused before anything is written into --out --------------------------


def forget_is_a_directory(data: Path) -> None:
    (data / "forget.jsonl").unlink()
    (data / "forget.jsonl").mkdir()


def forget_is_nested_5000_deep(data: Path) -> None:
    with (data / "forget.jsonl").open("a", encoding="utf-8") as handle:
        handle.write("[" * 5000 + "\n")


def input_has_a_lone_surrogate(data: Path) -> None:
    items = rows(data / "forget.jsonl")
    items[0]["input"] = "Once upon a time \ud800"
    # json.dumps writes the surrogate as the escape "\ud800", exactly as a hostile file would
    write_rows(data / "forget.jsonl", items)


def row_of_70_kb(data: Path) -> None:
    items = rows(data / "retain.jsonl")
    items[0]["input"] = "word " * 14_000
    write_rows(data / "retain.jsonl", items)


def member_without_nonmember(data: Path) -> None:
    (data / "nonmember.jsonl").unlink()


def forget_not_utf8(data: Path) -> None:
    with (data / "forget.jsonl").open("ab") as handle:
        handle.write(b'{"id": "x1sc0", "input": "caf\xe9", "output": "o", "task": "Task1"}\n')


@pytest.mark.parametrize("breaks, needles", [
    (forget_is_a_directory, ["forget.jsonl is a directory", "expected a UTF-8 JSON-lines file", "give the file"]),
    (forget_is_nested_5000_deep, ["forget.jsonl:", "nested too deeply", "expected a flat record"]),
    (input_has_a_lone_surrogate, ["forget.jsonl:1:", "field 'input' holds a lone surrogate", "expected valid Unicode"]),
    (row_of_70_kb, ["retain.jsonl:1:", "the row is 70,", f"over the limit of {DEFAULT_MAX_ROW_BYTES:,}",
                    MAX_ROW_BYTES_ENV]),
    (member_without_nonmember, ["member documents but no nonmember ones", "add nonmember.jsonl"]),
    (forget_not_utf8, ["not UTF-8 text", "save it as UTF-8"]),
], ids=lambda value: getattr(value, "__name__", ""))
def test_bad_data_file_is_one_line_and_writes_nothing(breaks, needles, data, micro, tmp_path, capsys):
    breaks(data)
    one_line(capsys, run_args(data, micro.target_dir, tmp_path / "out"), *needles)
    assert not (tmp_path / "out").exists()


def test_unreadable_data_file_and_yaml(data, micro, tmp_path, capsys, monkeypatch):
    """A file the user may not read (as a non-root user would meet it): os.open raises PermissionError."""
    real_open = os.open
    config = tmp_path / "mine.yaml"
    config.write_text("method: fo_graddiff\n")

    def denied(path, flags, *args, **kwargs):
        if str(path).endswith(("forget.jsonl", "mine.yaml")):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    one_line(capsys, run_args(data, micro.target_dir, tmp_path / "out"),
             f"{data / 'forget.jsonl'}: permission denied", "fix its permissions")
    assert not (tmp_path / "out").exists()
    one_line(capsys, ["validate", config], f"{config}: permission denied", "expected a UTF-8 YAML config")


def test_named_pipe_is_refused_not_read(data, micro, tmp_path, capsys):
    """Reading a FIFO would wait forever for a writer. If the reader ever blocks, a watchdog
    opens the pipe for writing after 60 s and closes it, so the test fails instead of hanging."""
    fifo = data / "forget.jsonl"
    fifo.unlink()
    os.mkfifo(fifo)
    done = threading.Event()

    def watchdog():
        if not done.wait(60):
            with open(fifo, "w"):
                pass

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        one_line(capsys, run_args(data, micro.target_dir, tmp_path / "out"),
                 "forget.jsonl is not a regular file (a named pipe", "copy its content into a file")
    finally:
        done.set()
    assert not (tmp_path / "out").exists()


def test_row_limit_is_configurable(data, monkeypatch):
    from simu_bench.data.lume import load_lume
    from simu_bench.errors import UserError

    row_of_70_kb(data)
    monkeypatch.setenv(MAX_ROW_BYTES_ENV, "200000")
    assert len(load_lume(data).retain[0].input) == 70_000
    monkeypatch.setenv(MAX_ROW_BYTES_ENV, "lots")
    with pytest.raises(UserError, match="expected a positive number of bytes"):
        load_lume(data)


# -- configs (YAML) and generations files ------------------------------------------------------


BILLION_LAUGHS = "tuned:\n" + "".join(
    f"  {name}: &{name} [{', '.join([f'*{previous}'] * 9) if previous else ', '.join(['lol'] * 9)}]\n"
    for previous, name in zip([None, *"abcdefgh"], "abcdefghi")
) + "method: fo_graddiff\noptimizer:\n  lr: *i\n"  # 9**9 leaves under a known key


@pytest.mark.parametrize("text, needles", [
    ("method: fo_graddiff\noptions: " + "[" * 20_000 + "\n", ["YAML nested too deeply", "fix the file"]),
    (b"method: fo_graddiff\n# caf\xe9\n", [":2: not UTF-8 text", "save it as UTF-8"]),
    (BILLION_LAUGHS, ["optimizer.lr: got [[[...]", "expected a number"]),
], ids=["nested_20000_deep", "not_utf8", "billion_laughs"])
def test_bad_yaml_is_one_line(text, needles, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    one_line(capsys, ["validate", config], str(config), *needles)


GOOD_ROW = {"id": "x1qa0", "task": "Task1", "split": "forget", "input": "q", "output": "a", "generation": "a"}


@pytest.mark.parametrize("line, needles", [
    (b"[" * 5000, [":2: JSON nested too deeply"]),
    (json.dumps(GOOD_ROW | {"id": "x2qa0", "generation": "caf\u00e9"}).encode().replace(b"\\u00e9", b"\xe9"),
     [":2: not UTF-8 text", "save it as UTF-8"]),
], ids=["nested_5000_deep", "not_utf8"])
def test_bad_generations_file_is_one_line(line, needles, tmp_path, capsys):
    path = tmp_path / "generations.jsonl"
    path.write_bytes(json.dumps(GOOD_ROW).encode() + b"\n" + line + b"\n")
    one_line(capsys, ["score", path], str(path), *needles)


def test_score_refuses_generations_that_lack_components(micro, tmp_path, capsys):
    """Only the retain rows: 6 of the 12 components. Refused; with --allow-partial, scored, warned
    about on stderr and marked in the JSON."""
    path = tmp_path / "generations.jsonl"
    retain = rows(micro.data_dir / "retain.jsonl")
    write_rows(path, [{**row, "split": "retain", "generation": row["output"]} for row in retain])
    one_line(capsys, ["score", path], "no rows for 6 of the 12 components", "forget/Task1/regurgitation",
             "--allow-partial")
    assert main(["score", str(path), "--allow-partial"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["task_aggregate"] == 1.0  # every retain answer exact: the 6 it has are perfect
    assert result["partial"] == {"scored_components": 6,
                                 "missing_components": [f"forget/Task{t}/{k}" for t in (1, 2, 3)
                                                        for k in ("regurgitation", "knowledge")]}
    assert err.startswith("warning:") and err.count("\n") == 1 and "covers 6 of the 12" in err


# -- the target model: refused before anything is written --------------------------------------


def unknown_model_type(model: Path) -> None:
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "nosuch"}))


def garbage_config(model: Path) -> None:
    (model / "config.json").write_text("garbage{")


def truncated_weights(model: Path) -> None:
    weights = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(weights[: len(weights) // 2])


def garbage_weights(model: Path) -> None:
    (model / "model.safetensors").write_bytes(b"garbage" * 10)


def no_tokenizer(model: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model / name).unlink()


def needs_remote_code(model: Path) -> None:
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="mymodel", auto_map={"AutoConfig": "my.MyConfig", "AutoModelForCausalLM": "my.MyModel"})
    (model / "config.json").write_text(json.dumps(config))
    (model / "my.py").write_text("raise SystemExit('this code ran')\n")


@pytest.mark.parametrize("breaks, needles", [
    (unknown_model_type, ["model_type 'nosuch' is not a model type this transformers knows", "upgrade transformers"]),
    (garbage_config, ["config.json:1: malformed JSON", "restore or re-save the model"]),
    (truncated_weights, ["model.safetensors: not a complete safetensors file", "copy or download the file again"]),
    (garbage_weights, ["model.safetensors: not a complete safetensors file", "copy or download the file again"]),
    (no_tokenizer, ["no tokenizer files", "tokenizer.save_pretrained"]),
    (needs_remote_code, ["needs the folder's own Python code", "trust_remote_code=True"]),
], ids=lambda value: getattr(value, "__name__", ""))
@pytest.mark.parametrize("command", ["run", "eval"])
def test_broken_model_folder_is_refused_before_anything_is_written(breaks, needles, command, model, micro,
                                                                   tmp_path, capsys):
    breaks(model)
    out = tmp_path / "out"
    if command == "run":
        argv = run_args(micro.data_dir, model, out)
    else:
        argv = ["eval", "--model", model, "--data", micro.data_dir, "--max-new-tokens", "4", "--out", out]
    one_line(capsys, argv, *needles)
    assert not out.exists()  # no run.json, no target/


def test_unknown_device_is_refused_before_anything_is_written(micro, tmp_path, capsys):
    one_line(capsys, run_args(micro.data_dir, micro.target_dir, tmp_path / "out", "--device", "foo"),
             "--device foo: not a torch device", "expected cpu, cuda, cuda:N or mps")
    assert not (tmp_path / "out").exists()


# -- command-line values -------------------------------------------------------------------------


@pytest.mark.parametrize("argv, needles", [
    (["run", "--seeds", "4294967296"], ["--seeds 4294967296: out of range", "0 to 4,294,967,295"]),
    (["prepare", "--seed", str(2**70)], [f"--seed {2**70}: out of range"]),
    (["validate", "simu", "--set", "optimizer.name=adamw"], ["optimizer.name: got 'adamw', expected 'sophiag'"]),
    (["run", "--methods", "simu", "--set", "optimizer.name=adamw"], ["expected 'sophiag'"]),
    (["validate", "simu", "--set", "options.mask_path=/nonexistent.safetensors"],
     ["options.mask_path: mask file /nonexistent.safetensors does not exist", "options.mask_path=null"]),
    (["run", "--methods", "simu", "--set", "options.mask_path=/nonexistent.safetensors"], ["options.mask_path"]),
    (["run", "--methods", "fo_graddiff", "--set", "method=so_graddiff"],
     ["method is 'so_graddiff', but this is the config of 'fo_graddiff'", "--methods so_graddiff"]),
], ids=["seed_2_32", "prepare_seed_2_70", "validate_simu_adamw", "run_simu_adamw", "validate_mask_path",
        "run_mask_path", "run_set_method"])
def test_bad_value_is_one_line_and_writes_nothing(argv, needles, micro, tmp_path, capsys):
    if argv[0] == "run":
        argv = [*argv, "--data", micro.data_dir, "--model", micro.target_dir, "--out", tmp_path / "out", *QUICK]
    one_line(capsys, argv, *needles)
    assert not (tmp_path / "out").exists()


def test_unknown_utility_task_among_thousands_is_a_short_line(micro, tmp_path, capsys, monkeypatch):
    """lm-eval registers ~15,000 task names; the line names the closest few, before anything is written."""
    from simu_bench.evaluation import harness

    class Registry:
        all_tasks = [f"task_{i:05d}" for i in range(15_000)] + ["mmlu"]

    monkeypatch.setattr(harness, "task_manager", lambda names, data_dir: Registry())
    err = one_line(capsys, run_args(micro.data_dir, micro.target_dir, tmp_path / "out", "--utility-tasks", "mmlx"),
                   "--utility-tasks: unknown lm-eval task 'mmlx'", "did you mean 'mmlu'?")
    assert len(err) < 400
    assert not (tmp_path / "out").exists()


def test_a_native_crash_during_evaluation_reaches_stderr():
    """Evaluation points stderr at /dev/null to quiet lm-eval; a fatal error of native code must
    still say what happened instead of dying silently."""
    code = ("import faulthandler\nfrom simu_bench.evaluation.harness import quiet\n"
            "with quiet(True):\n    faulthandler._sigsegv()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Fatal Python error: Segmentation fault" in result.stderr, result.stderr


# -- a run store edited by hand, kills and a full disk ---------------------------------------------


@pytest.fixture(scope="module")
@slow_fixture
def finished(micro, tmp_path_factory) -> Path:
    """A finished store: the reference row and one fo_graddiff run (one step, 4 new tokens)."""
    out = tmp_path_factory.mktemp("store") / "runs"
    assert main([str(a) for a in run_args(micro.data_dir, micro.target_dir, out)]) == 0
    return out


@pytest.fixture
def store(finished, tmp_path) -> Path:
    """A copy of the finished store that a test may break (its command line keeps pointing at `finished`)."""
    return Path(shutil.copytree(finished, tmp_path / "runs"))


def status_is_a_list(store: Path) -> None:
    (store / "fo_graddiff" / "seed0" / "status.json").write_text("[]")


def metrics_deleted(store: Path) -> None:
    (store / "fo_graddiff" / "seed0" / "metrics.json").unlink()


def metrics_empty(store: Path) -> None:
    (store / "fo_graddiff" / "seed0" / "metrics.json").write_text("{}")


@pytest.mark.parametrize("breaks, needles", [
    (status_is_a_list, ["status.json: expected a JSON object, found array"]),
    (metrics_deleted, ["status ok but metrics.json is missing"]),
    (metrics_empty, ["metrics.json: expected the metrics of a finished run", "found an empty object"]),
], ids=lambda value: getattr(value, "__name__", ""))
@pytest.mark.parametrize("command", ["run", "leaderboard"])
def test_store_file_of_the_wrong_shape_says_to_redo_the_run(breaks, needles, command, store, micro, capsys):
    breaks(store)
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    argv = run_args(micro.data_dir, micro.target_dir, store) if command == "run" else ["leaderboard", store]
    one_line(capsys, argv, *needles, f"delete {store / 'fo_graddiff' / 'seed0'} to redo the run")
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_leaderboard_output_that_is_a_directory(store, tmp_path, capsys):
    (tmp_path / "existing").mkdir()
    one_line(capsys, ["leaderboard", store, "--output", tmp_path / "existing"],
             "--output", "is a directory", "expected a file")


def test_leaderboard_where_every_run_crashed_writes_both_plots(store, tmp_path, capsys):
    for status in store.glob("**/status.json"):
        record = json.loads(status.read_text())
        status.write_text(json.dumps({**record, "status": "crashed", "error": "RuntimeError: simulated"}))
    plots = tmp_path / "plots"
    assert main(["leaderboard", str(store), "--plots", str(plots)]) == 0
    out, err = capsys.readouterr()
    assert "crashed" in out and "Traceback" not in err
    assert (plots / "tradeoff.png").stat().st_size > 0 and (plots / "per_task.png").stat().st_size > 0


def test_temp_files_of_killed_writes_are_cleaned_at_the_next_start(store, micro, capsys):
    """Where a kill during a write leaves a temporary file: the top of the store (leaderboard, run.json),
    a claim's owner record, and a run folder. The next `run` removes them all."""
    leftovers = [store / ".leaderboard.json.k1ll3d.tmp", store / ".run.json.k1ll3d.tmp",
                 store / ".claims" / ".fo_graddiff.seed0.json.k1ll3d.tmp",
                 store / "fo_graddiff" / "seed0" / ".generations.jsonl.k1ll3d.tmp"]
    (store / "fo_graddiff" / "seed0" / "status.json").unlink()  # killed while writing its generations
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"half": ')
        os.utime(path, (1, 1))  # long ago
    assert main([str(a) for a in run_args(micro.data_dir, micro.target_dir, store)]) == 0
    capsys.readouterr()
    assert [path for path in leftovers if path.exists()] == []
    assert list(store.rglob("*.tmp")) == []


def test_full_disk_stops_with_one_line_and_keeps_what_finished(store, micro, capsys, monkeypatch):
    """No space left while writing a run's generations: one line, exit 2, no temporary file, the
    run left unfinished (redone next time), the finished reference row kept."""
    (store / "fo_graddiff" / "seed0" / "status.json").unlink()
    real_fsync = os.fsync

    def full(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".generations.jsonl."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    argv = [str(a) for a in run_args(micro.data_dir, micro.target_dir, store)]
    one_line(capsys, argv, f"cannot write {store / 'fo_graddiff' / 'seed0' / 'generations.jsonl'}",
             "No space left on device", "finished results are kept")
    assert list(store.rglob("*.tmp")) == []
    assert not (store / "fo_graddiff" / "seed0" / "status.json").exists()
    assert json.loads((store / "target" / "status.json").read_text())["status"] == "ok"
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(argv) == 0  # space again: the same command finishes the run
    capsys.readouterr()
    assert json.loads((store / "fo_graddiff" / "seed0" / "status.json").read_text())["status"] == "ok"


# -- a non-root user -----------------------------------------------------------------------------


def test_unreadable_files_as_a_non_root_user(tmp_path):
    """The whole CLI, as a user without read permission on a config and a generations file. As root,
    the command runs as `nobody` (uid 65534) where this machine's interpreter allows it."""
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"simu-bench-nonroot-{os.getpid()}"
    folder.mkdir(mode=0o755, exist_ok=True)
    try:
        config, generations = folder / "config.yaml", folder / "generations.jsonl"
        config.write_text("method: fo_graddiff\n")
        generations.write_text(json.dumps(GOOD_ROW) + "\n")
        for path in (config, generations):
            path.chmod(0)
        options = {}
        if os.geteuid() == 0:
            options = {"user": 65534, "group": 65534, "extra_groups": [], "env": {**os.environ, "HOME": str(folder)}}
            try:
                subprocess.run([sys.executable, "-c", "import simu_bench.cli"], cwd=folder, check=True,
                               capture_output=True, timeout=120, **options)
            except (OSError, subprocess.CalledProcessError) as error:
                pytest.skip(f"cannot run this interpreter as an unprivileged user here ({error})")
        for argv, path in ((["validate", str(config)], config), (["score", str(generations)], generations)):
            result = subprocess.run([sys.executable, "-m", "simu_bench.cli", *argv], cwd=folder, capture_output=True,
                                    text=True, timeout=300, **options)
            assert result.returncode == 2, result.stderr
            assert result.stderr.count("\n") == 1 and f"{path}: permission denied" in result.stderr, result.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)
