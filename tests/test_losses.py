import math

import numpy as np
import pytest
import torch

from cskd.method.losses import class_wise_kl, cskd_loss


def test_class_wise_kl_matches_hand_computation():
    # Two samples, three classes, T = 2.
    logits = torch.tensor([[2.0, 0.0, -2.0], [0.0, 1.0, 0.0]])
    partner = torch.tensor([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0]])
    t = 2.0

    def softmax(v):
        e = [math.exp(a / t) for a in v]
        s = sum(e)
        return [a / s for a in e]

    expected = 0.0
    for a, b in zip(logits.tolist(), partner.tolist()):
        p, q = softmax(a), softmax(b)
        expected += sum(qc * (math.log(qc) - math.log(pc)) for pc, qc in zip(p, q))
    expected = expected / 2 * t * t  # batch mean, times T²
    assert math.isclose(class_wise_kl(logits, partner, temperature=t).item(), expected, rel_tol=1e-6)


def test_kl_is_zero_for_identical_predictions_and_positive_otherwise():
    a = torch.randn(5, 7)
    assert class_wise_kl(a, a.clone(), temperature=4.0).abs().item() < 1e-6
    assert class_wise_kl(a, torch.randn(5, 7), temperature=4.0).item() > 0


def test_cskd_loss_is_ce_plus_weighted_kl_and_no_gradient_reaches_partner():
    torch.manual_seed(0)
    logits = torch.randn(4, 5, requires_grad=True)
    partner = torch.randn(4, 5, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    total, ce, kl = cskd_loss(logits, partner, y, temperature=4.0, lambda_cls=3.0)
    # written out in numpy (float64): CE = mean(-log softmax(z)_y); the KL term is
    # T² · mean over rows of Σ_c q_c (log q_c - log p_c), q = softmax(partner/T), p = softmax(z/T)
    z, zp = logits.detach().double().numpy(), partner.detach().double().numpy()

    def log_softmax(v):
        v = v - v.max(axis=1, keepdims=True)
        return v - np.log(np.exp(v).sum(axis=1, keepdims=True))

    hand_ce = -log_softmax(z)[np.arange(4), y.numpy()].mean()
    log_p, log_q = log_softmax(z / 4.0), log_softmax(zp / 4.0)
    hand_kl = 16.0 * (np.exp(log_q) * (log_q - log_p)).sum(axis=1).mean()
    assert hand_kl > 0.1  # a term that matters, so the total checks it
    assert ce.item() == pytest.approx(hand_ce, rel=1e-5)
    assert kl.item() == pytest.approx(hand_kl, rel=1e-5)
    assert total.item() == pytest.approx(hand_ce + 3.0 * hand_kl, rel=1e-5)
    total.backward()
    assert partner.grad is None
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_temperature_one_kl_equals_torch_kl_div_reference():
    torch.manual_seed(1)
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    ref = torch.nn.functional.kl_div(torch.log_softmax(a, 1), torch.softmax(b, 1), reduction="batchmean")
    assert torch.allclose(class_wise_kl(a, b, temperature=1.0), ref, atol=1e-6)
