"""SophiaG against hand-worked steps, masks, validation and state_dict round trips.

Shared setting of the hand-worked cases: lr = 0.1, betas = (0.5, 0.75), weight_decay = 0.1
(so theta *= 0.99), rho * curvature_scale = 0.01 * 100 = 1, theta0 = [1, -2, 0.5, 3].
"""

import copy

import pytest
import torch

from simu_bench.unlearning.sophia import SophiaG

THETA0 = [1.0, -2.0, 0.5, 3.0]
G1 = [0.1, -0.2, 0.0, 4.0]
G2 = [0.1, 0.2, -1.0, 4.0]


def make(variant="soul", theta=THETA0, **kwargs):
    param = torch.nn.Parameter(torch.tensor(theta, dtype=torch.float64))
    settings = dict(lr=0.1, betas=(0.5, 0.75), weight_decay=0.1, rho=0.01, curvature_scale=100, variant=variant)
    settings.update(kwargs)
    return param, SophiaG([param], **settings)


def step(param, opt, grad):
    param.grad = torch.tensor(grad, dtype=torch.float64)
    opt.step()


def test_soul_two_hand_worked_steps():
    """SOUL's step, by hand.

    Step 1 (state zero): h = 0.25 g^2 = [0.0025, 0.01, 0, 4]; momentum twice:
    m = 0.5 * (0.5 g) + 0.5 g = 0.75 g = [0.075, -0.15, 0, 3]; theta * 0.99 = [0.99, -1.98,
    0.495, 2.97]; m / h = [30, -15, 0/1e-15 = 0, 0.75] clipped to [1, -1, 0, 0.75];
    theta - 0.1 * that = [0.89, -1.88, 0.495, 2.895].
    Step 2, g = [0.1, 0.2, -1, 4]: h = 0.75 h + 0.25 g^2 = [0.004375, 0.0175, 0.25, 7];
    m = 0.25 m + 0.75 g = [0.09375, 0.1125, -0.75, 3.75]; theta * 0.99 = [0.8811, -1.8612,
    0.49005, 2.86605]; m / h = [21.4, 6.43, -3, 0.5357142857] -> [1, 1, -1, 0.5357142857];
    theta = [0.7811, -1.9612, 0.59005, 2.8124785714].
    """
    param, opt = make("soul")
    step(param, opt, G1)
    state = opt.state[param]
    torch.testing.assert_close(state["hessian"], torch.tensor([0.0025, 0.01, 0.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(state["exp_avg"], torch.tensor([0.075, -0.15, 0.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(param.data, torch.tensor([0.89, -1.88, 0.495, 2.895], dtype=torch.float64))
    step(param, opt, G2)
    torch.testing.assert_close(state["hessian"], torch.tensor([0.004375, 0.0175, 0.25, 7.0], dtype=torch.float64))
    torch.testing.assert_close(state["exp_avg"], torch.tensor([0.09375, 0.1125, -0.75, 3.75], dtype=torch.float64))
    expected = torch.tensor([0.7811, -1.9612, 0.59005, 2.86605 - 0.1 * 3.75 / 7], dtype=torch.float64)
    torch.testing.assert_close(param.data, expected)
    assert float(state["step"]) == 2


def test_gnb_two_hand_worked_steps_with_curvature_refresh():
    """Textbook Sophia-G, by hand.

    Step 1 (h = 0, momentum once): m = 0.5 g = [0.05, -0.1, 0, 2]; m / 1e-15 clipped ->
    [1, -1, 0, 1]; theta = 0.99 theta0 - 0.1 * that = [0.89, -1.88, 0.495, 2.87]; h stays 0.
    update_hessian with sampled-label gradient [2, 0, 1, 4]: h = 0.25 g^2 = [1, 0, 0.25, 4].
    Step 2, g = [0.1, 0.2, -1, 4]: m = 0.5 m + 0.5 g = [0.075, 0.05, -0.5, 3]; theta * 0.99 =
    [0.8811, -1.8612, 0.49005, 2.8413]; m / h = [0.075, 0.05/1e-15, -2, 0.75] -> [0.075, 1,
    -1, 0.75]; theta = [0.8736, -1.9612, 0.59005, 2.7663]; h unchanged by the step.
    """
    param, opt = make("gnb", hessian_interval=1)
    step(param, opt, G1)
    torch.testing.assert_close(opt.state[param]["exp_avg"], torch.tensor([0.05, -0.1, 0.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(opt.state[param]["hessian"], torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(param.data, torch.tensor([0.89, -1.88, 0.495, 2.87], dtype=torch.float64))
    param.grad = torch.tensor([2.0, 0.0, 1.0, 4.0], dtype=torch.float64)
    opt.update_hessian()
    torch.testing.assert_close(opt.state[param]["hessian"], torch.tensor([1.0, 0.0, 0.25, 4.0], dtype=torch.float64))
    step(param, opt, G2)
    torch.testing.assert_close(opt.state[param]["exp_avg"], torch.tensor([0.075, 0.05, -0.5, 3.0], dtype=torch.float64))
    torch.testing.assert_close(param.data, torch.tensor([0.8736, -1.9612, 0.59005, 2.7663], dtype=torch.float64))
    torch.testing.assert_close(opt.state[param]["hessian"], torch.tensor([1.0, 0.0, 0.25, 4.0], dtype=torch.float64))


@pytest.mark.parametrize("variant", ["soul", "gnb"])
def test_mask_freezes_weights_momentum_and_curvature(variant):
    """Masked-out coordinates (1 and 3) keep theta, m and h; the others match an unmasked run."""
    free, free_opt = make(variant)
    param, opt = make(variant)
    opt.set_mask(param, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    for grad in (G1, G2):
        step(free, free_opt, grad)
        step(param, opt, grad)
        for p in (free, param):
            p.grad = torch.tensor([2.0, 1.0, 1.0, 4.0], dtype=torch.float64)
        free_opt.update_hessian()
        opt.update_hessian()
    keep, frozen = [0, 2], [1, 3]
    assert param.data[frozen].tolist() == [THETA0[1], THETA0[3]]  # weight decay did not move them
    assert opt.state[param]["exp_avg"][frozen].tolist() == [0.0, 0.0]
    assert opt.state[param]["hessian"][frozen].tolist() == [0.0, 0.0]
    torch.testing.assert_close(param.data[keep], free.data[keep])
    torch.testing.assert_close(opt.state[param]["exp_avg"][keep], free_opt.state[free]["exp_avg"][keep])
    torch.testing.assert_close(opt.state[param]["hessian"][keep], free_opt.state[free]["hessian"][keep])


def test_fractional_mask_blends_old_and_new():
    """M = 0.5: theta = 0.5 * new + 0.5 * old."""
    free, free_opt = make("soul")
    param, opt = make("soul")
    opt.set_mask(param, torch.full((4,), 0.5, dtype=torch.float64))
    step(free, free_opt, G1)
    step(param, opt, G1)
    old = torch.tensor(THETA0, dtype=torch.float64)
    torch.testing.assert_close(param.data, 0.5 * free.data + 0.5 * old)


def test_column_mask_broadcasts_over_rows():
    """A (1, d_ff) mask on a (d_model, d_ff) weight trains whole columns, as SIMU needs."""
    weight = torch.nn.Parameter(torch.ones(3, 4))
    opt = SophiaG([weight], lr=0.1)
    opt.set_mask(weight, torch.tensor([[1, 0, 0, 1]], dtype=torch.bool))
    weight.grad = torch.ones(3, 4)
    opt.step()
    assert (weight.data[:, [1, 2]] == 1).all()
    assert (weight.data[:, [0, 3]] != 1).all()


def test_mask_errors_name_the_problem():
    param, opt = make()
    with pytest.raises(ValueError, match="does not broadcast"):
        opt.set_mask(param, torch.ones(5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        opt.set_mask(param, torch.tensor([2.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="not optimized"):
        opt.set_mask(torch.nn.Parameter(torch.ones(4)), torch.ones(4))


@pytest.mark.parametrize(
    "kwargs, named",
    [
        (dict(lr=-1.0), "lr: got -1.0"),
        (dict(betas=(1.0, 0.5)), r"betas\[0\]: got 1.0, expected a number in \[0, 1\)"),
        (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
        (dict(rho=0.0), "rho: got 0.0, expected a finite number > 0"),
        (dict(weight_decay=float("nan")), "weight_decay"),
        (dict(curvature_scale=0), "curvature_scale: got 0"),
        (dict(variant="adam"), "variant: got 'adam', expected one of soul, gnb"),
        (dict(hessian_interval=0), "hessian_interval: got 0"),
    ],
)
def test_hyperparameter_validation(kwargs, named):
    with pytest.raises(ValueError, match=named):
        make(**kwargs)


def test_every_bad_hyperparameter_reported_at_once():
    with pytest.raises(ValueError) as error:
        make(lr=-1.0, rho=-1.0, variant="x")
    assert all(name in str(error.value) for name in ("lr:", "rho:", "variant:"))


@pytest.mark.parametrize("variant", ["soul", "gnb"])
def test_state_dict_round_trip_continues_identically(variant):
    param, opt = make(variant)
    opt.set_mask(param, torch.tensor([1.0, 1.0, 0.0, 1.0]))
    step(param, opt, G1)
    param.grad = torch.tensor(G2, dtype=torch.float64)
    opt.update_hessian()
    saved = copy.deepcopy(opt.state_dict())  # as if written to disk and read back
    twin, twin_opt = make(variant, theta=param.data.tolist())
    twin_opt.load_state_dict(saved)
    assert twin_opt.mask_of(twin).dtype == torch.bool
    step(param, opt, G2)
    step(twin, twin_opt, G2)
    assert torch.equal(param.data, twin.data)
    assert torch.equal(opt.state[param]["exp_avg"], twin_opt.state[twin]["exp_avg"])
    assert torch.equal(opt.state[param]["hessian"], twin_opt.state[twin]["hessian"])


def test_state_dict_refuses_the_other_variant():
    param, opt = make("soul")
    step(param, opt, G1)
    other, other_opt = make("gnb")
    with pytest.raises(ValueError, match="variant='soul'"):
        other_opt.load_state_dict(opt.state_dict())


def test_parameters_without_gradient_are_untouched():
    param, opt = make()
    untouched = torch.nn.Parameter(torch.ones(2))
    opt.add_param_group({"params": [untouched]})
    step(param, opt, G1)
    assert torch.equal(untouched.data, torch.ones(2)) and untouched not in opt.state


def soul_reference_step(p, g, m, h, lr, beta1, beta2, rho, wd, curvature_scale=5120):
    """SOUL's update written out line by line (SOUL's SophiaG, arXiv 2404.18239), one tensor, no fusing."""
    h.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    p.mul_(1 - lr * wd)
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    ratio = (m.abs() / (rho * curvature_scale * h + 1e-15)).clamp(None, 1)
    p.addcmul_(m.sign(), ratio, value=-lr)


def test_soul_matches_the_line_by_line_reference_over_many_steps():
    """The fused step (momentum updates folded into one) tracks SOUL's sequence to rounding."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(8, 16), (16,), (3, 4, 5)]
    params = [torch.nn.Parameter(torch.randn(s, generator=generator, dtype=torch.float64)) for s in shapes]
    reference = [p.detach().clone() for p in params]
    moms = [torch.zeros_like(p) for p in reference]
    hessians = [torch.zeros_like(p) for p in reference]
    settings = dict(lr=1e-2, betas=(0.9, 0.95), rho=0.04, weight_decay=0.1)
    opt = SophiaG(params, **settings)
    # per-coordinate gradient scales from 1e-4 to 1: both clipped (sign) and unclipped occur
    scales = [10 ** (-4 * torch.rand(s, generator=generator, dtype=torch.float64)) for s in shapes]
    for _ in range(20):
        grads = [torch.randn(s, generator=generator, dtype=torch.float64) * c for s, c in zip(shapes, scales)]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for p, g, m, h in zip(reference, grads, moms, hessians):
            soul_reference_step(p, g, m, h, 1e-2, 0.9, 0.95, 0.04, 0.1)
    ratios = [(m.abs() / (0.04 * 5120 * h + 1e-15)) for m, h in zip(moms, hessians)]
    clipped = sum(int((r >= 1).sum()) for r in ratios)
    assert 0 < clipped < sum(r.numel() for r in ratios)  # both regimes exercised
    for p, r, m in zip(params, reference, moms):
        torch.testing.assert_close(p.data, r, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(opt.state[p]["exp_avg"], m, rtol=1e-12, atol=1e-14)
