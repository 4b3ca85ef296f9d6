import math

import pytest
import torch
import torch.nn.functional as F

from cskd.method.baselines import (
    MAX_ENTROPY_BETA,
    AdaCosHead,
    ByotBranches,
    VirtualSoftmaxHead,
    byot_loss,
    confidence_penalty_ce,
    cskd_e_consistency,
    ddgsd_loss,
    kd_loss,
    kd_total,
    label_smoothing_ce,
    mixup_batch,
    mixup_ce,
    mixup_cskd_partner_batch,
)

LN2 = math.log(2.0)


def close(t, value, tol=1e-5):
    return math.isclose(float(t), value, rel_tol=tol, abs_tol=tol)


# ---------------------------------------------------------------- label smoothing / max-entropy

def test_label_smoothing_target_and_loss_by_hand():
    # logits (0, ln 2, 0) -> p = (1/4, 1/2, 1/4); y = 1, ε = 0.3, C = 3:
    # q = 0.7·onehot + 0.3/3 = (0.1, 0.8, 0.1)
    # loss = −(0.1·ln¼ + 0.8·ln½ + 0.1·ln¼) = 0.2·ln4 + 0.8·ln2 = 1.2·ln2
    logits = torch.tensor([[0.0, LN2, 0.0]])
    y = torch.tensor([1])
    assert close(label_smoothing_ce(logits, y, epsilon=0.3), 1.2 * LN2)
    assert close(label_smoothing_ce(logits, y, epsilon=0.0), LN2)  # ε = 0 is plain CE = −ln ½


def test_label_smoothing_matches_torch_reference_on_random_batch():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 5), torch.randint(0, 5, (6,))
    ref = F.cross_entropy(logits, y, label_smoothing=0.1)
    assert torch.allclose(label_smoothing_ce(logits, y), ref, atol=1e-6)


def test_entropy_term_sign_weight_and_value_by_hand():
    # p = (1/4, 1/2, 1/4), y = 1: CE = ln2, H = 2·¼·ln4 + ½·ln2 = 1.5·ln2.
    # β = 0.5: loss = ln2 − 0.5·1.5·ln2 = 0.25·ln2
    logits = torch.tensor([[0.0, LN2, 0.0]])
    y = torch.tensor([1])
    assert close(confidence_penalty_ce(logits, y, beta=0.5), 0.25 * LN2)
    assert close(confidence_penalty_ce(logits, y, beta=0.0), LN2)
    assert close(confidence_penalty_ce(logits, y), LN2 - MAX_ENTROPY_BETA * 1.5 * LN2)


def test_entropy_term_rewards_higher_entropy_at_equal_ce():
    # Both have p_y = ½ (CE = ln2) for y = 0; A spreads the rest evenly (higher entropy).
    a = torch.tensor([[1 / 2, 1 / 6, 1 / 6, 1 / 6]]).log()
    b = torch.tensor([[1 / 2, 0.48, 0.01, 0.01]]).log()
    y = torch.tensor([0])
    assert close(confidence_penalty_ce(a, y, beta=0.0), confidence_penalty_ce(b, y, beta=0.0))
    assert confidence_penalty_ce(a, y, beta=0.5) < confidence_penalty_ce(b, y, beta=0.5)
    # the gap is exactly β·(H_A − H_B)
    def h(p):
        return -(p * p.log()).sum()

    gap = confidence_penalty_ce(b, y, beta=0.5) - confidence_penalty_ce(a, y, beta=0.5)
    assert close(gap, 0.5 * float(h(a.exp()) - h(b.exp())))


# ---------------------------------------------------------------- KD and CS-KD-E

def test_kd_term_by_hand_with_t_squared():
    # T = 2, teacher (2 ln3, 0) -> softmax(teacher/T) = softmax(ln3, 0) = (3/4, 1/4);
    # student (0, 0) -> (1/2, 1/2).
    # KL = ¾·ln(¾/½) + ¼·ln(¼/½) = ¾·ln1.5 − ¼·ln2 ≈ 0.130812; × T² = 4 -> 0.523248
    teacher = torch.tensor([[2 * math.log(3.0), 0.0]])
    student = torch.tensor([[0.0, 0.0]])
    expected = 4 * (0.75 * math.log(1.5) - 0.25 * LN2)
    assert close(kd_loss(student, teacher, temperature=2.0), expected)
    # kd_total = (1 − α)·CE + α·KD; CE(student, y=0) = ln2
    assert close(kd_total(student, teacher, torch.tensor([0]), temperature=2.0, alpha=0.9),
                 0.1 * LN2 + 0.9 * expected)
    # CS-KD-E's consistency term is the same KL with the clean prediction as the target
    assert close(cskd_e_consistency(student, teacher, temperature=2.0), expected)


def test_kd_is_zero_for_identical_logits_and_teacher_gets_no_gradient():
    torch.manual_seed(1)
    s = torch.randn(4, 6)
    assert abs(float(kd_loss(s, s.clone(), temperature=4.0))) < 1e-6
    student = torch.randn(4, 6, requires_grad=True)
    teacher = torch.randn(4, 6, requires_grad=True)
    clean = torch.randn(4, 6, requires_grad=True)
    (kd_total(student, teacher, torch.tensor([0, 1, 2, 3]))
     + cskd_e_consistency(student, clean, temperature=4.0)).backward()
    assert teacher.grad is None and clean.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


@pytest.mark.parametrize("fn", [
    lambda z, y: label_smoothing_ce(z, y), lambda z, y: confidence_penalty_ce(z, y),
    lambda z, y: kd_total(z, z.flip(0), y), lambda z, y: mixup_ce(z, y, y.flip(0), 0.3),
    lambda z, y: ddgsd_loss(z, z.flip(0), z, z.flip(0), y),
])
def test_losses_take_bf16_and_return_float32_scalars(fn):
    torch.manual_seed(2)
    logits, y = torch.randn(4, 5).bfloat16(), torch.randint(0, 5, (4,))
    out = fn(logits, y)
    assert out.dtype == torch.float32 and out.dim() == 0 and torch.isfinite(out)


# ---------------------------------------------------------------- Mixup

def test_mixup_ce_by_hand_and_lambda_one_is_plain_ce():
    # logits (0, ln3) -> p = (1/4, 3/4); y_a = 0, y_b = 1, λ = 0.25:
    # 0.25·(−ln¼) + 0.75·(−ln¾) = 0.25·ln4 + 0.75·ln(4/3)
    logits = torch.tensor([[0.0, math.log(3.0)]])
    ya, yb = torch.tensor([0]), torch.tensor([1])
    assert close(mixup_ce(logits, ya, yb, 0.25), 0.25 * math.log(4) + 0.75 * math.log(4 / 3))
    assert close(mixup_ce(logits, ya, yb, 1.0), math.log(4))
    assert close(mixup_ce(logits, ya, yb, torch.tensor(0.25)), 0.25 * math.log(4) + 0.75 * math.log(4 / 3))


def test_mixup_batch_is_exact_and_reproducible():
    x = torch.arange(24, dtype=torch.float32).view(6, 4)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    mix = mixup_batch(x, y, alpha=1.0, generator=torch.Generator().manual_seed(7))
    assert isinstance(mix.lam, float) and 0.0 < mix.lam < 1.0
    assert sorted(mix.perm.tolist()) == list(range(6))
    assert torch.allclose(mix.x, mix.lam * x + (1 - mix.lam) * x[mix.perm])
    assert torch.equal(mix.labels_a, y) and torch.equal(mix.labels_b, y[mix.perm])
    again = mixup_batch(x, y, alpha=1.0, generator=torch.Generator().manual_seed(7))
    assert again.lam == mix.lam and torch.equal(again.perm, mix.perm) and torch.equal(again.x, mix.x)
    other = mixup_batch(x, y, alpha=1.0, generator=torch.Generator().manual_seed(8))
    assert other.lam != mix.lam


def test_mixup_lambda_follows_beta_alpha_alpha():
    g = torch.Generator().manual_seed(0)
    x, y = torch.zeros(2, 1), torch.zeros(2, dtype=torch.long)
    lams = torch.tensor([mixup_batch(x, y, alpha=1.0, generator=g).lam for _ in range(2000)])
    # Beta(1, 1) = U(0, 1): mean 1/2, variance 1/12
    assert abs(lams.mean().item() - 0.5) < 0.03 and abs(lams.var().item() - 1 / 12) < 0.01
    lams = torch.tensor([mixup_batch(x, y, alpha=0.2, generator=g).lam for _ in range(2000)])
    # Beta(0.2, 0.2) piles up at the ends: P(0.1 < λ < 0.9) ≈ 0.29, far below the uniform 0.8
    assert ((lams > 0.1) & (lams < 0.9)).float().mean() < 0.4
    assert mixup_batch(x, y, alpha=0.0, generator=g).lam == 1.0


def test_mixup_cskd_partner_gets_same_lambda_permutation_and_mixed_label():
    y = torch.tensor([0, 1, 2, 1, 0])
    onehot = F.one_hot(y, 3).float()
    # anchors and partners are different "images" of the same classes: the class one-hot is
    # embedded in the first 3 dims, the rest differs between anchor and partner
    torch.manual_seed(3)
    anchors = torch.cat([onehot, torch.randn(5, 2)], dim=1)
    partners = torch.cat([onehot, torch.randn(5, 2)], dim=1)
    mix = mixup_batch(anchors, y, alpha=1.0, generator=torch.Generator().manual_seed(1))
    mixed_partners = mixup_cskd_partner_batch(partners, mix.lam, mix.perm)
    assert torch.allclose(mixed_partners, mix.lam * partners + (1 - mix.lam) * partners[mix.perm])
    # the label part of anchor i and partner i is the same soft label λ·e_{y_i} + (1−λ)·e_{y_π(i)}
    soft = mix.lam * onehot + (1 - mix.lam) * onehot[mix.perm]
    assert torch.allclose(mix.x[:, :3], soft) and torch.allclose(mixed_partners[:, :3], soft)
    assert not torch.allclose(mix.x[:, 3:], mixed_partners[:, 3:])


# ---------------------------------------------------------------- AdaCos

def _adacos_head_with_axes():
    head = AdaCosHead(2, 3)
    with torch.no_grad():  # class weights on the axes: w0 = (1,0), w1 = (0,1), w2 = (−1,0)
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    return head


def test_adacos_initial_scale_is_sqrt2_log_c_minus_1():
    assert close(AdaCosHead(8, 5).scale, math.sqrt(2) * math.log(4))
    assert close(AdaCosHead(8, 100).scale, math.sqrt(2) * math.log(99))
    with pytest.raises(ValueError):
        AdaCosHead(8, 2)


def test_adacos_dynamic_update_by_hand():
    head = _adacos_head_with_axes()
    s0 = math.sqrt(2) * LN2                    # C = 3
    r3 = math.sqrt(3) / 2
    x = torch.tensor([[2.0, 0.0], [0.5, r3], [0.0, 3.0]])  # norms don't matter (cosines)
    y = torch.tensor([0, 0, 2])
    # cos rows: (1, 0, −1), (½, √3/2, −½), (0, 1, 0); target angles 0, π/3, π/2 -> median π/3
    # non-target sums with the OLD s0:
    #   row 0: e^0 + e^{−s0};  row 1: e^{s0·√3/2} + e^{−s0/2};  row 2: e^0 + e^{s0}
    b_avg = ((1 + math.exp(-s0)) + (math.exp(s0 * r3) + math.exp(-s0 / 2)) + (1 + math.exp(s0))) / 3
    s1 = math.log(b_avg) / math.cos(min(math.pi / 4, math.pi / 3))  # = √2·ln B_avg
    head.train()
    out = head(x, y)
    assert close(head.scale, s1)
    cos = torch.tensor([[1.0, 0.0, -1.0], [0.5, r3, -0.5], [0.0, 1.0, 0.0]])
    assert torch.allclose(out, s1 * cos, atol=1e-5)
    # eval (and labels=None) use the stored s and leave it alone
    head.eval()
    assert torch.allclose(head(x), s1 * cos, atol=1e-5) and close(head.scale, s1)
    head.train()
    head(x)
    assert close(head.scale, s1)


def test_adacos_median_below_pi_over_4_is_not_clamped():
    head = _adacos_head_with_axes()
    s0 = math.sqrt(2) * LN2
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 0])
    # target angles 0, 0, π/4 -> median 0 -> divide by cos 0 = 1
    # rows: (1, 0, −1) -> 1 + e^{−s0}; (0, 1, 0) -> 2; (√½, √½, −√½) -> e^{s0/√2} + e^{−s0/√2} = 2 + ½
    b_avg = (1 + math.exp(-s0) + 2 + 2.5) / 3
    head.train()
    head(x, y)
    assert close(head.scale, math.log(b_avg))


def test_adacos_scale_survives_state_dict_and_gradients_reach_weight():
    torch.manual_seed(4)
    head = AdaCosHead(6, 5).train()
    feats, y = torch.randn(8, 6), torch.randint(0, 5, (8,))
    loss = F.cross_entropy(head(feats, y), y) + F.cross_entropy(head(feats), y)
    head(feats, y)  # an update of s before backward must break neither graph above
    loss.backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert "scale" in head.state_dict()
    fresh = AdaCosHead(6, 5)
    fresh.load_state_dict(head.state_dict())
    assert torch.equal(fresh.scale, head.scale)
    assert not close(fresh.scale, math.sqrt(2) * math.log(4))


# ---------------------------------------------------------------- Virtual-softmax

def test_virtual_logit_is_weight_norm_times_feature_norm():
    torch.manual_seed(5)
    head = VirtualSoftmaxHead(4, 3).train()
    x, y = torch.randn(5, 4), torch.tensor([0, 2, 1, 2, 0])
    out = head(x, y)
    assert out.shape == (5, 4)
    w = head.weight.detach()
    assert torch.allclose(out[:, :3], x @ w.T, atol=1e-6)
    assert torch.allclose(out[:, 3], w[y].norm(dim=1) * x.norm(dim=1), atol=1e-6)
    # hand case: W_0 = (3, 4) (norm 5), x = (1, 0): logits 3, virtual logit 5·1 = 5
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0, 4.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 2.0]]))
    assert torch.allclose(head(torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([0])),
                          torch.tensor([[3.0, 0.0, 0.0, 5.0]]))
    head.eval()
    assert head(x, y).shape == (5, 3)
    assert head.train()(x).shape == (5, 3)


# ---------------------------------------------------------------- DDGSD

def test_ddgsd_value_and_gradients_respect_detached_targets():
    torch.manual_seed(6)
    a = torch.randn(4, 5, requires_grad=True)
    b = torch.randn(4, 5, requires_grad=True)
    fa = torch.randn(4, 3, requires_grad=True)
    fb = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    t, lk, lm = 2.0, 0.7, 0.3
    loss = ddgsd_loss(a, b, fa, fb, y, lambda_kl=lk, lambda_mmd=lm, temperature=t)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()

    # reference with explicit stop-gradients: a learns from sg(b) and b from sg(a)
    def kl(student, target):  # T²·KL(softmax(target/T) ‖ softmax(student/T)), batch mean
        return F.kl_div(F.log_softmax(student / t, 1), F.softmax(target / t, 1), reduction="batchmean") * t * t

    a2, b2, fa2, fb2 = (v.detach().clone().requires_grad_() for v in (a, b, fa, fb))
    mmd = ((fa2.mean(0) - fb2.mean(0)) ** 2).sum()
    ref = (F.cross_entropy(a2, y) + F.cross_entropy(b2, y)
           + lk * (kl(a2, b2.detach()) + kl(b2, a2.detach())) + lm * mmd)
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-6)
    for got, want in ((a, a2), (b, b2), (fa, fa2), (fb, fb2)):
        assert torch.allclose(got.grad, want.grad, atol=1e-6)
    # without the detach the KL gradients would differ: make sure the test can tell
    a3, b3 = a.detach().clone().requires_grad_(), b.detach().clone()
    (kl(a3, b3) + kl(b3, a3)).backward()
    a4 = a.detach().clone().requires_grad_()
    kl(a4, b3).backward()
    assert not torch.allclose(a3.grad, a4.grad, atol=1e-4)


def test_ddgsd_mmd_by_hand():
    # identical logits -> KL = 0; feature means (1, 2) vs (0, 0) -> ‖·‖² = 5
    logits = torch.zeros(2, 3)
    y = torch.tensor([0, 1])
    fa = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    fb = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    got = ddgsd_loss(logits, logits, fa, fb, y, lambda_kl=1.0, lambda_mmd=0.1, temperature=1.0)
    assert close(got, 2 * math.log(3) + 0.1 * 5)  # two CEs of uniform 3-way predictions


# ---------------------------------------------------------------- BYOT

def _byot_setup(n=2, classes=5, dim=16):
    torch.manual_seed(7)
    branches = ByotBranches([4, 8], feature_dim=dim, num_classes=classes)
    maps = [torch.randn(n, 4, 16, 16), torch.randn(n, 8, 8, 8)]  # stages 1, 2; the deepest is 4x4
    return branches, maps


def test_byot_branch_shapes():
    branches, maps = _byot_setup()
    logits, feats = branches(maps)
    assert [tuple(v.shape) for v in logits] == [(2, 5), (2, 5)]
    assert [tuple(v.shape) for v in feats] == [(2, 16), (2, 16)]
    # branch i downsamples once per later stage: 2 blocks for the first, 1 for the second
    assert [len(b) - 2 for b in branches.branches] == [2, 1]
    with pytest.raises(ValueError):
        branches(maps[:1])


def test_byot_loss_gradients_reach_branches_but_not_the_teacher_targets():
    branches, maps = _byot_setup()
    logits, feats = branches(maps)
    final_logits = torch.randn(2, 5, requires_grad=True)
    final_feats = torch.randn(2, 16, requires_grad=True)
    y = torch.tensor([1, 3])
    loss = byot_loss(logits, feats, final_logits, final_feats, y)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in branches.heads.parameters())
    assert all(p.grad is not None for p in branches.branches.parameters())
    assert final_feats.grad is None  # the final features appear only as the hint target
    # the final logits get exactly their own CE gradient, nothing from the KL terms
    probe = final_logits.detach().clone().requires_grad_()
    F.cross_entropy(probe, y).backward()
    assert torch.allclose(final_logits.grad, probe.grad, atol=1e-7)


def test_byot_loss_terms_by_hand():
    y = torch.tensor([0, 1])
    final = torch.zeros(2, 4)                     # uniform: CE = ln 4
    f = torch.zeros(2, 3)
    # α = 0, β = 0: CE(final) + Σ_i CE(branch_i) = 3·ln4 with two uniform branches
    assert close(byot_loss([final, final], [f, f], final, f, y, alpha=0.0, beta=0.0), 3 * math.log(4))
    # α = 1, branch == final: KL = 0 and the branch CE weight 1 − α = 0 -> CE(final) only
    assert close(byot_loss([final], [f], final, f, y, alpha=1.0, beta=0.0), math.log(4))
    # feature hint: branch = final + 1 in each of 3 dims -> ‖·‖² = 3 per sample; β = 0.5 -> 1.5
    assert close(byot_loss([final], [f + 1], final, f, y, alpha=1.0, beta=0.5), math.log(4) + 1.5)
