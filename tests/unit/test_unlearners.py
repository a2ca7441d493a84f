"""Contract of every registered method, parametrised over the live registry.

Each method builds from its shipped config, runs two optimizer steps on a tiny model that has
memorised the tiny data set (none for a method that does not train, `Unlearner.trains`, which
changes the model in `prepare`), changes only what it may change (its trainable parameters, and
within them only unmasked coordinates) and raises the forget NLL.
"""

import copy
import dataclasses

import pytest
import torch

from simu_bench.data import pairing
from simu_bench.errors import UserError
from simu_bench.unlearning import loop, losses, registry
from simu_bench.unlearning.unlearner import Unlearner

from unlearn_helpers import single_thread, tiny_data, tiny_model, tiny_tokenizer  # noqa: F401

TWO_STEPS = ["train.max_steps=2", "train.batch_size=2", "train.grad_accum_steps=1", "train.warmup_ratio=0"]


@pytest.fixture(scope="module")
def memorised():
    """A tiny model fine-tuned on forget + retain until its answer NLL is low."""
    torch.set_num_threads(1)
    tok, data = tiny_tokenizer(), tiny_data()
    model = tiny_model(tok, seed=0)
    batch = pairing.collate(tok, data.forget + data.retain, max_length=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        optimizer.zero_grad()
        losses.answer_nll(model, batch).backward()
        optimizer.step()
    model.eval()
    assert losses.answer_nll(model, batch).item() < 0.5
    return tok, data, model


def forget_nll(model, tok, data) -> float:
    return losses.example_nll(model, pairing.collate(tok, data.forget, 64)).mean().item()


@pytest.mark.parametrize("method", registry.names())
def test_method_contract(memorised, method):
    tok, data, original = memorised
    model = copy.deepcopy(original)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    seen = {}

    class Spy:
        def on_train_start(self, state):
            seen["trained"] = {n for n, p in state.model.named_parameters() if p.requires_grad}
            seen["optimizer"] = state.optimizer

    unlearner = registry.create(method, TWO_STEPS)
    assert isinstance(unlearner, Unlearner) and type(unlearner).__mro__[1] is Unlearner  # depth one
    assert unlearner.name == method and unlearner.paper
    nll_before = forget_nll(model, tok, data)
    result = loop.run(unlearner, model, tok, data, seed=0, progress=False, callbacks=[Spy()])
    assert result.status == "ok" and result.steps == (2 if unlearner.trains else 0), result.message

    trained, optimizer = seen["trained"], seen["optimizer"]
    assert trained, "a method must train something"
    changed = set()
    for name, p in model.named_parameters():
        if name not in trained:
            assert torch.equal(p, before[name]), f"{method} changed frozen parameter {name}"
            continue
        mask = getattr(optimizer, "mask_of", lambda _: None)(p)
        if mask is not None:
            frozen = ~torch.broadcast_to(mask.bool(), p.shape)
            assert torch.equal(p[frozen], before[name][frozen]), f"{method} moved masked-out coordinates of {name}"
        if not torch.equal(p, before[name]):
            changed.add(name)
    assert changed, f"{method} changed no parameter"
    assert all(p.requires_grad for p in model.parameters()), "requires_grad must be restored"
    assert forget_nll(model, tok, data) > nll_before, f"{method} did not raise the forget NLL"
    assert result.to_dict()["method"] == method


TRAINING = [name for name in registry.names() if registry.get(name).trains]


@pytest.mark.parametrize("method", TRAINING)
def test_the_forget_term_alone_raises_the_forget_nll(memorised, method):
    """With the retain weight the method declares (`Unlearner.retain_weight`) at 0, the loss no
    longer reads the retain batch, and two steps of the forget term alone raise the forget NLL:
    a flipped forget sign fails here even where the retain term would mask it in the full loss."""
    tok, data, original = memorised
    cls = registry.get(method)
    zero = []
    if cls.retain_weight is not None:
        assert cls.retain_weight in {f.name for f in dataclasses.fields(cls.Options)}, cls.retain_weight
        zero = [f"options.{cls.retain_weight}=0"]
    else:
        assert not cls.uses_retain, f"{method} reads a retain set but declares no retain_weight"
    unlearner = registry.create(method, TWO_STEPS + zero)
    model = copy.deepcopy(original)
    unlearner.reference = copy.deepcopy(original)
    unlearner.prepare(model, tok, data)
    forget = pairing.collate(tok, data.forget[:2], 64)
    batches = [pairing.PairedBatch(forget, pairing.collate(tok, rows, 64), data.forget[:2], rows)
               for rows in (data.retain[:2], data.retain[2:])]
    if cls.retain_weight is not None:
        with torch.no_grad():
            first, second = (unlearner.loss(model, batch).item() for batch in batches)
        assert first == pytest.approx(second, rel=1e-6), f"options.{cls.retain_weight}=0 left a retain term"
    model = copy.deepcopy(original)
    nll_before = forget_nll(model, tok, data)
    # A small step, so that the first-order direction decides (large sign steps from a memorised
    # minimum raise the NLL whatever their direction).
    small = ["optimizer.lr=1e-4"]
    result = loop.run(registry.create(method, TWO_STEPS + zero + small), model, tok, data, seed=0, progress=False)
    assert result.status == "ok", result.message
    assert forget_nll(model, tok, data) > nll_before, f"{method}'s forget term did not raise the forget NLL"


def test_unknown_method_lists_the_available_ones():
    with pytest.raises(
        UserError, match=r"unknown method 'fo_gradif' \(did you mean 'fo_graddiff'\?\); .*so_graddiff"
    ):
        registry.get("fo_gradif")


def test_methods_never_subclass_each_other():
    classes = [registry.get(name) for name in registry.names()]
    for cls in classes:
        assert cls.__bases__ == (Unlearner,), f"{cls.__name__} must inherit from Unlearner only"


def test_fo_and_so_differ_only_in_optimizer():
    from simu_bench.unlearning.registry import load_config

    fo, so = load_config("fo_graddiff"), load_config("so_graddiff")
    assert (fo.optimizer.name, so.optimizer.name) == ("adamw", "sophiag")
    assert so.optimizer.variant == "soul"
