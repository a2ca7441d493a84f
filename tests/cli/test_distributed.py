"""Unlearning across processes (FSDP2 on CPU with gloo) equals one process with the same global batch.

Two processes, each with its slice of every micro-batch, must give the weights (to 1e-5
relative, fp32: sums run in another order) and the losses of one process that sees the whole
micro-batch; `simu_bench.unlearning.distributed` says why. The processes are forked, so a test
costs a second or two, not the import of torch twice.
"""

import io
import multiprocessing
import os
import traceback

import pytest
import torch

from simu_bench.data import pairing
from simu_bench.errors import UserError
from simu_bench.unlearning import distributed, loop, registry

from unlearn_helpers import tiny_data, tiny_model, tiny_tokenizer

SETTINGS = ["train.epochs=2", "train.grad_accum_steps=2", "optimizer.lr=1e-3", "train.warmup_ratio=0.0"]


def _unlearn(method: str, overrides: list[str]):
    """(weights, losses, summary) of one run of ``method`` on the tiny model, in this process's group."""
    tokenizer, data = tiny_tokenizer(), tiny_data()
    model = tiny_model(tokenizer, seed=0)
    unlearner = registry.create(method, [*SETTINGS, *overrides])
    result = loop.run(unlearner, model, tokenizer, data, seed=3, progress=False)
    assert result.status == "ok", result.message
    if distributed.world()[1] > 1:
        weights = distributed.full_state_dict(model)
    else:
        weights = {name: value.detach().clone() for name, value in model.state_dict().items()}
    return weights, result.losses, result.summary


def _rank(rank: int, world: int, init: str, method: str, overrides: list[str], results) -> None:
    try:
        torch.set_num_threads(1)
        torch.distributed.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
        try:
            weights, losses, summary = _unlearn(method, overrides)
        finally:
            torch.distributed.destroy_process_group()
        buffer = io.BytesIO()  # bytes through the queue: shared tensors would die with this process
        torch.save(weights if rank == 0 else None, buffer)
        results.put((rank, buffer.getvalue(), losses, summary, ""))
    except BaseException:  # report, so that the test fails with the traceback instead of hanging
        results.put((rank, None, None, None, traceback.format_exc()))


def across(method: str, overrides: list[str], world: int = 2):
    """Run ``method`` in ``world`` forked processes; rank 0's (weights, losses, summary)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    init = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"simu-bench-gloo-{os.getpid()}-{method}")
    if os.path.exists(init):
        os.remove(init)
    processes = [context.Process(target=_rank, args=(rank, world, init, method, overrides, results))
                 for rank in range(world)]
    for process in processes:
        process.start()
    out = sorted((results.get(timeout=300) for _ in processes), key=lambda row: row[0])
    for process in processes:
        process.join(timeout=60)
    if os.path.exists(init):
        os.remove(init)
    errors = [row[4] for row in out if row[4]]
    assert not errors, errors[0]
    assert out[0][2] == pytest.approx(out[1][2], rel=1e-12)  # every rank logs the same global loss
    return torch.load(io.BytesIO(out[0][1])), out[0][2], out[0][3]


def assert_same_weights(got: dict, expected: dict) -> None:
    """Every tensor within 1e-5 relative (Frobenius norm of the difference over the tensor's)."""
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        error = float((got[name] - value).norm() / value.norm().clamp(min=1e-12))
        assert error < 1e-5, f"{name}: relative difference {error:.2e}"


@pytest.mark.parametrize("method", ["fo_graddiff", "so_graddiff", "simu"])
def test_two_processes_equal_one_process_with_the_same_global_batch(method):
    overrides = ["train.batch_size=2"]
    if method == "simu":
        overrides += ["options.t=0.3"]
    expected_weights, expected_losses, expected_summary = _unlearn(method, overrides)
    weights, losses, summary = across(method, overrides)
    assert losses == pytest.approx(expected_losses, rel=1e-5)
    assert_same_weights(weights, expected_weights)
    before = tiny_model(tiny_tokenizer(), seed=0).state_dict()
    assert any(not torch.equal(before[name], value) for name, value in weights.items())  # it trained
    if method == "simu":  # the same critical neurons, and frozen weights untouched on every shard
        assert summary["mask"]["selected"] == expected_summary["mask"]["selected"]
        for name, value in weights.items():
            if "mlp" in name or "norm" in name or "embed" in name or "lm_head" in name:
                if "down_proj" not in name:
                    assert torch.equal(value, before[name]), name


def test_a_rank_without_rows_adds_nothing():
    """3 pairs per micro-batch over 2 processes: slices of 2 and 1; the last micro-batch of an
    epoch (1 pair) leaves the second process a masked row."""
    overrides = ["train.batch_size=3"]
    expected_weights, expected_losses, _ = _unlearn("fo_graddiff", overrides)
    weights, losses, _ = across("fo_graddiff", overrides)
    assert losses == pytest.approx(expected_losses, rel=1e-5)
    assert_same_weights(weights, expected_weights)


def test_slices_are_disjoint_cover_the_batch_and_count_the_whole_batch(monkeypatch):
    tokenizer, data = tiny_tokenizer(), tiny_data()
    batch = next(pairing.batches(tokenizer, data.forget, data.retain, batch_size=3, max_length=64,
                                 generator=torch.Generator().manual_seed(0)))
    whole = int((batch.forget.labels[:, 1:] != -100).sum())
    seen = []
    for rank in range(2):
        monkeypatch.setattr(distributed, "world", lambda rank=rank: (rank, 2))
        part = distributed.shard_batch(batch, tokenizer, 64)
        seen += [e.id for e in part.forget_examples]
        assert part.forget.answer_tokens == whole
        assert len(part.forget_examples) == (2 if rank == 0 else 1)
    assert seen == [e.id for e in batch.forget_examples]
    monkeypatch.setattr(distributed, "world", lambda: (3, 4))  # 3 rows over 4 processes: rank 3 has none
    empty = distributed.shard_batch(batch, tokenizer, 64)
    assert empty.forget_examples == () and bool((empty.forget.labels == -100).all())


def test_methods_that_cannot_run_across_processes_are_refused():
    gnb = registry.create("so_graddiff", ["optimizer.variant=gnb"])
    with pytest.raises(UserError, match="variant gnb .* cannot run across processes"):
        distributed.check_supported(gnb)
    distributed.check_supported(registry.create("simu"))

    class Plain(type(registry.create("fo_graddiff"))):
        supports_distributed = False

    with pytest.raises(UserError, match="cannot run across processes: its loss is not normalised"):
        distributed.check_supported(Plain(registry.load_config("fo_graddiff")))


def test_a_column_mask_stays_exact_under_a_dim0_shard_and_a_row_mask_is_sliced():
    """nn.Linear stores (out, in): FSDP2 shards dim 0 (d_model rows of down_proj), so a (1, d_ff)
    column mask covers every shard unchanged; a (rows, 1) mask is chunked like the weight."""

    class FakeMesh:
        def get_coordinate(self):
            return [1]

        def size(self, dim):
            return 2

    from torch.distributed.tensor import Shard

    class FakeDTensor:  # what local_mask reads of a DTensor: placements, mesh, ndim, to_local
        def __init__(self, local_shape):
            self.placements, self.device_mesh, self.ndim = (Shard(0),), FakeMesh(), 2
            self._local = torch.zeros(local_shape)

        def to_local(self):
            return self._local

    FakeDTensor.__name__ = "DTensor"
    columns = torch.tensor([[True, False, True, False]])  # (1, d_ff)
    assert torch.equal(distributed.local_mask(FakeDTensor((3, 4)), columns), columns)
    rows = torch.arange(5.0)[:, None]  # (5, 1) over a (5, 4) weight: rank 1 holds rows 3, 4
    assert distributed.local_mask(FakeDTensor((2, 4)), rows).flatten().tolist() == [3.0, 4.0]


def test_gradient_checkpointing_gives_the_same_run():
    tokenizer, data = tiny_tokenizer(), tiny_data()
    results = []
    for checkpointing in (False, True):
        model = tiny_model(tokenizer, seed=0)
        if checkpointing:
            distributed.enable_gradient_checkpointing(model)
        unlearner = registry.create("so_graddiff", [*SETTINGS, "train.batch_size=2"])
        result = loop.run(unlearner, model, tokenizer, data, seed=3, progress=False)
        results.append((result.losses, model.state_dict()))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-6)
    assert_same_weights(results[1][1], results[0][1])

    class NoCheckpointing(torch.nn.Module):
        supports_gradient_checkpointing = False

    with pytest.raises(UserError, match="NoCheckpointing does not support gradient checkpointing"):
        distributed.enable_gradient_checkpointing(NoCheckpointing())


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_torchrun_rank(rank: int, port: int, argv: list[str]) -> None:
    """What `torchrun --nproc_per_node=2 -m simu_bench run ...` starts, in a forked process."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from simu_bench.cli import main

    code = 3
    try:
        torch.set_num_threads(1)
        code = main(argv)
    finally:
        if distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os._exit(code)


def test_run_under_torchrun_stores_what_one_process_stores(tiny_target, tmp_path):
    import json

    from simu_bench.cli import main

    args = ["run", "--methods", "simu", "--seeds", "0", "--data", str(tiny_target.data_dir),
            "--model", str(tiny_target.target_dir), "--set", "train.max_steps=2", "--set", "train.batch_size=2",
            "--max-new-tokens", "8", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    context, port = multiprocessing.get_context("fork"), _free_port()
    ranks = [context.Process(target=_as_torchrun_rank, args=(rank, port, [*args, "--out", str(tmp_path / "two")]))
             for rank in range(2)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=600)
    assert [process.exitcode for process in ranks] == [0, 0]
    one, two = tmp_path / "one" / "simu" / "seed0", tmp_path / "two" / "simu" / "seed0"
    assert json.loads((two / "metrics.json").read_text()) == json.loads((one / "metrics.json").read_text())
    unlearn_one, unlearn_two = (json.loads((d / "unlearn.json").read_text()) for d in (one, two))
    assert (unlearn_one["world_size"], unlearn_two["world_size"]) == (1, 2)
    assert unlearn_two["losses"] == pytest.approx(unlearn_one["losses"], rel=1e-5)
    assert (two / "mask.safetensors").exists() and (tmp_path / "two" / "leaderboard.md").exists()
    # the same run, whatever the number of processes: one identity in the run store
    hashes = [json.loads((d / "config.json").read_text())["hash"] for d in (one, two)]
    assert hashes[0] == hashes[1]


def test_what_cannot_run_under_torchrun_is_one_line_before_anything_loads(tmp_path):
    from simu_bench.pipeline import multiprocess
    from simu_bench.pipeline.plan import Plan
    from simu_bench.pipeline.resolve import load_method_configs

    configs = load_method_configs(("simu",), ())
    with pytest.raises(UserError, match="--eval-every cannot run under torchrun"):
        multiprocess.check(Plan(methods=("simu",), seeds=(0,), out=tmp_path, eval_every=2), configs)
    gnb = load_method_configs(("so_graddiff",), ("optimizer.variant=gnb",))
    with pytest.raises(UserError, match="variant gnb"):
        multiprocess.check(Plan(methods=("so_graddiff",), seeds=(0,), out=tmp_path), gnb)
    assert not any(tmp_path.iterdir())
