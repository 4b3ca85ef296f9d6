"""One training step of CS-KD and CS-KD-E (cskd.method.objectives) on tiny networks: the partner
forward with --partner-bn eval leaves BatchNorm's running statistics alone, and CS-KD-E's extra
term is λ_E · T² · KL(clean ‖ augmented), checked against numpy."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from cskd.config import resolve
from cskd.data.loaders import Batch
from cskd.method.objectives import StepContext, cskd_e_step, cskd_step


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4)).train()


def batch(n=8, seed=1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x, partner, clean = (torch.randn(n, 6, generator=g) for _ in range(3))
    # partners from another distribution: their batch statistics differ clearly from the anchors'
    return Batch(x, torch.arange(n) % 4, partner=3.0 * partner + 2.0, clean=4.0 * clean - 1.0)


def log_softmax(v: np.ndarray) -> np.ndarray:
    v = v - v.max(axis=1, keepdims=True)
    return v - np.log(np.exp(v).sum(axis=1, keepdims=True))


def kl_term(logits: torch.Tensor, target: torch.Tensor, t: float) -> float:
    """T² · mean over rows of Σ_c q_c (log q_c − log p_c), q = softmax(target/T), p = softmax(logits/T)."""
    log_p = log_softmax(logits.detach().double().numpy() / t)
    log_q = log_softmax(target.detach().double().numpy() / t)
    return float(t * t * (np.exp(log_q) * (log_q - log_p)).sum(axis=1).mean())


def running_stats(net: nn.Module) -> tuple:
    bn = net[1]
    return bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)


@pytest.mark.parametrize("partner_bn", ["train", "eval"])
def test_partner_bn_eval_keeps_the_running_statistics_of_the_anchor_pass_alone(partner_bn):
    b = batch()
    net, anchors_only = bn_net(), bn_net()
    cfg = resolve({"method": "cskd", "partner_bn": partner_bn, "temperature": 4.0, "lambda_cls": 1.0})
    out = cskd_step(StepContext(cfg, net), b)
    anchors_only(b.x)  # the anchors' forward alone, in train mode
    assert net.training and net[1].training  # the partner pass leaves the model in train mode
    moved = [not torch.allclose(a, c) for a, c in zip(running_stats(net)[:2], running_stats(anchors_only)[:2])]
    if partner_bn == "eval":
        # the partner pass used (and did not update) the running statistics
        for mine, ref in zip(running_stats(net), running_stats(anchors_only)):
            assert torch.equal(torch.as_tensor(mine), torch.as_tensor(ref))
        target = copy.deepcopy(anchors_only).eval()(b.partner)
    else:
        # BatchNorm in train mode: the partner batch updates them a second time
        assert running_stats(net)[2] == 2 and all(moved)
        target = copy.deepcopy(bn_net())(b.partner)  # normalised with the partner batch's own statistics
    assert out.reg.item() == pytest.approx(kl_term(out.logits, target, 4.0), rel=1e-5)


def test_partner_bn_is_checked():
    from cskd.errors import UserError

    with pytest.raises(UserError, match="partner-bn"):
        resolve({"method": "cskd", "partner_bn": "frozen"})


def cskd_e(lambda_e: float, net: nn.Module, b: Batch):
    cfg = resolve({"method": "cskd_e", "lambda_e": lambda_e, "temperature": 3.0, "lambda_cls": 2.0})
    return cskd_e_step(StepContext(cfg, net), b)


def test_cskd_e_adds_lambda_e_times_t2_kl_of_clean_to_augmented_predictions():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))  # no BatchNorm: every call gives the same
    b = batch()
    plain = cskd_step(StepContext(resolve({"method": "cskd", "temperature": 3.0, "lambda_cls": 2.0}), net), b)
    with torch.no_grad():
        aug, partner, clean = net(b.x), net(b.partner), net(b.clean)
    hand_cskd = kl_term(aug, partner, 3.0)
    hand_e = kl_term(aug, clean, 3.0)
    assert hand_e > 0.05  # clean and augmented predictions differ: the term is not trivially 0

    off = cskd_e(0.0, net, b)
    assert off.loss.item() == pytest.approx(plain.loss.item(), rel=1e-6)
    assert off.reg.item() == pytest.approx(2.0 * hand_cskd, rel=1e-5)  # λ_cls · T² · KL(partner ‖ anchor) only

    on = cskd_e(0.5, net, b)
    assert on.ce.item() == pytest.approx(plain.ce.item(), rel=1e-6)
    assert on.reg.item() == pytest.approx(2.0 * hand_cskd + 0.5 * hand_e, rel=1e-5)
    assert on.loss.item() - off.loss.item() == pytest.approx(0.5 * hand_e, rel=1e-4)
    twice = cskd_e(1.0, net, b)
    assert twice.loss.item() - off.loss.item() == pytest.approx(hand_e, rel=1e-4)

    net.zero_grad()
    on.loss.backward()  # the clean prediction is fixed: the gradient comes through the augmented forward
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
