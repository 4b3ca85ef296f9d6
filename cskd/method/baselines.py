"""Building blocks for the baselines the CS-KD paper (Yun et al., CVPR 2020) compares against.

Every loss takes logits/features of any float dtype (bf16 autocast included), computes in float32,
returns a 0-d tensor averaged over the batch, never synchronises with the host, and detaches every
target/teacher itself so no gradient can reach it whatever the caller did. The soft-target KL
term is `cskd.method.losses.class_wise_kl`: T² · KL(softmax(teacher/T) ‖ softmax(student/T)), summed
over classes, batch mean, teacher detached.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cskd.config import TrainConfig
from cskd.method.losses import class_wise_kl

# The defaults are TrainConfig's (cskd/config.py holds each value once, with where it comes from);
# the functions below document why.
_DEFAULTS = TrainConfig()
LABEL_SMOOTHING_EPSILON = _DEFAULTS.ls_epsilon
MAX_ENTROPY_BETA = _DEFAULTS.me_beta
KD_TEMPERATURE = _DEFAULTS.temperature
KD_ALPHA = _DEFAULTS.kd_alpha
MIXUP_ALPHA = _DEFAULTS.mixup_alpha
DDGSD_LAMBDA_KL = _DEFAULTS.ddgsd_lambda_kl
DDGSD_LAMBDA_MMD = _DEFAULTS.ddgsd_lambda_mmd
DDGSD_TEMPERATURE = _DEFAULTS.ddgsd_temperature
BYOT_ALPHA = _DEFAULTS.byot_alpha
BYOT_BETA = _DEFAULTS.byot_beta
BYOT_TEMPERATURE = _DEFAULTS.byot_temperature


def label_smoothing_ce(logits: torch.Tensor, labels: torch.Tensor, *,
                       epsilon: float = LABEL_SMOOTHING_EPSILON) -> torch.Tensor:
    """Label smoothing (Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016, §7).

    Target q = (1 − ε)·onehot(y) + ε/C; loss = −Σ_c q_c log p_c, p = softmax(logits), batch mean.
    Default ε = 0.1, the paper's ImageNet value (C = 1000).
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    nll = -log_p.gather(1, labels.view(-1, 1)).squeeze(1)
    # ε/C · Σ_c (−log p_c) = ε · mean_c(−log p_c)
    return ((1.0 - epsilon) * nll - epsilon * log_p.mean(dim=1)).mean()


def confidence_penalty_ce(logits: torch.Tensor, labels: torch.Tensor, *,
                          beta: float = MAX_ENTROPY_BETA) -> torch.Tensor:
    """Maximum-entropy regularisation: CE(p, y) − β·H(p), H(p) = −Σ_c p_c ln p_c, batch mean.

    Pereyra et al., "Regularizing neural networks by penalizing confident output distributions",
    ICLR-W 2017 (the "confidence penalty", weight β) and Dubey et al., "Maximum-entropy fine
    grained classification", NeurIPS 2018 (the same objective, weight γ). Neither paper gives one
    default: Pereyra et al. grid-search β per task and Dubey et al. choose γ by validation and
    report the method robust to its value. MAX_ENTROPY_BETA = 0.1 is our choice at the low end
    of those ranges, so the entropy bonus stays small next to a CE of ln C; it was not confirmed
    against either paper's text, so sweep it for a faithful reproduction.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1)
    nll = -log_p.gather(1, labels.view(-1, 1)).squeeze(1)
    return (nll - beta * entropy).mean()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
            temperature: float = KD_TEMPERATURE) -> torch.Tensor:
    """Hinton et al., "Distilling the knowledge in a neural network", 2015.

    T² · KL(softmax(teacher/T) ‖ softmax(student/T)), KL summed over classes, batch mean; the
    T² keeps the soft-target gradients at the scale of the hard-target ones (Hinton §2). The
    teacher is detached. Hinton et al. use several T (up to 20); KD_TEMPERATURE = 4 is the CS-KD
    paper's own temperature grid {1, 4} and the usual CIFAR setting.
    """
    return class_wise_kl(student_logits, teacher_logits, temperature=temperature)


def kd_total(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
             temperature: float = KD_TEMPERATURE, alpha: float = KD_ALPHA) -> torch.Tensor:
    """(1 − α)·CE(student, y) + α·kd_loss(student, teacher; T), batch mean.

    Hinton et al. found the best results with "a considerably lower weight" on the hard-target
    term, so KD_ALPHA = 0.9 (the common choice in follow-up KD work) puts 90 % on the soft one.
    """
    ce = F.cross_entropy(student_logits.float(), labels)
    return (1.0 - alpha) * ce + alpha * kd_loss(student_logits, teacher_logits, temperature=temperature)


class Mix(NamedTuple):
    """One Mixup draw: x = lam·x + (1 − lam)·x[perm], labels_b = labels[perm]; `lam` is a float."""
    x: torch.Tensor
    labels_a: torch.Tensor
    labels_b: torch.Tensor
    lam: float
    perm: torch.Tensor


def mixup_batch(x: torch.Tensor, labels: torch.Tensor, *, alpha: float = MIXUP_ALPHA,
                generator: torch.Generator) -> Mix:
    """Mixup (Zhang et al., "mixup: Beyond empirical risk minimization", ICLR 2018).

    One λ ~ Beta(α, α) per batch and one permutation π of the batch, both drawn from `generator`
    (a CPU torch.Generator): a 62-bit seed taken from it seeds numpy's Beta sampler (torch's Beta
    takes no generator), then π = randperm(N, generator). The same generator state gives the same
    Mix. Returns Mix(x_mixed = λx + (1 − λ)x[π], labels_a = labels, labels_b = labels[π], λ, π).
    `lam` is a python float: drawn on the host, so using it never syncs a device. α ≤ 0 gives
    λ = 1 (no mixing), as in the authors' code. Default α = 1 (MIXUP_ALPHA): the paper's CIFAR
    setting (λ uniform on [0, 1]); its ImageNet runs use α ∈ [0.1, 0.4].
    """
    if generator.device.type != "cpu":
        raise ValueError(f"mixup_batch needs a CPU torch.Generator, got one on {generator.device}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha)) if alpha > 0 else 1.0
    perm = torch.randperm(x.shape[0], generator=generator)
    if x.is_cuda:  # pinned + non_blocking: the copy is queued on the stream instead of waiting for it
        perm = perm.pin_memory().to(x.device, non_blocking=True)
    return Mix(lam * x + (1.0 - lam) * x[perm], labels, labels[perm], lam, perm)


def mixup_ce(logits: torch.Tensor, labels_a: torch.Tensor, labels_b: torch.Tensor,
             lam: float | torch.Tensor) -> torch.Tensor:
    """Mixup loss: λ·CE(logits, y_a) + (1 − λ)·CE(logits, y_b), each CE a batch mean."""
    logits = logits.float()
    return lam * F.cross_entropy(logits, labels_a) + (1.0 - lam) * F.cross_entropy(logits, labels_b)


def mixup_cskd_partner_batch(x_partner: torch.Tensor, lam: float | torch.Tensor,
                             perm: torch.Tensor) -> torch.Tensor:
    """Mixed partners for Mixup + CS-KD (CS-KD paper §3.2, Table 3).

    The paper applies the class-wise loss "to mixed inputs and mixed labels". Partner x'_i has the
    anchor's label y_i, so mixing the partners with the SAME λ and π as the anchors (from
    `mixup_batch`) gives x'_mixed,i = λ·x'_i + (1 − λ)·x'_π(i), whose mixed label λ·y_i +
    (1 − λ)·y_π(i) is exactly that of the mixed anchor i. The class-wise KL then pulls
    f(x_mixed,i) towards the detached f(x'_mixed,i).
    """
    if perm.shape[0] != x_partner.shape[0]:
        raise ValueError(f"perm has {perm.shape[0]} entries for {x_partner.shape[0]} partners")
    return lam * x_partner + (1.0 - lam) * x_partner[perm.to(x_partner.device)]


def _cosine(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.linear(F.normalize(features.float(), dim=1), F.normalize(weight.float(), dim=1))


class AdaCosHead(nn.Module):
    """AdaCos (Zhang et al., "AdaCos: Adaptively scaling cosine logits...", CVPR 2019).

    Logits s·cos θ with cos θ_{i,k} = normalize(x_i)·normalize(W_k), W ∈ R^{C×D}, no margin.
    s starts at the paper's fixed scale √2·ln(C − 1) (Eq. 12). In training mode with labels, each
    forward first applies the dynamic update (Eq. 15–16), using the previous s:
        B_avg = (1/N) Σ_i Σ_{k≠y_i} exp(s·cos θ_{i,k}),  θ_med = median_i θ_{i,y_i},
        s ← ln(B_avg) / cos(min(π/4, θ_med)),
    under no_grad, then returns s_new·cos θ. The median is torch.median (lower middle value for
    even N). In eval mode, or with labels=None (e.g. a CS-KD partner forward that should not move
    s), the stored s is used unchanged. s lives in the float32 buffer `scale`: in the state_dict,
    restored by load_state_dict, updated on the device. Cosines are computed in float32 with
    autocast off, since acos near ±1 is meaningless in bf16.

    `scaled_eval=False` returns the plain cosines in eval mode, as the reference implementation
    the CS-KD paper used (4uiiurz1/pytorch-adacos) does when called without labels: the paper's
    AdaCos ECE of 54-74 % (Table 6) is that of plain cosines.
    """

    def __init__(self, in_features: int, num_classes: int, *, scaled_eval: bool = True):
        super().__init__()
        self.scaled_eval = scaled_eval
        if num_classes < 3:
            raise ValueError(f"AdaCos needs >= 3 classes (√2·ln(C−1) = 0 at C=2), got {num_classes}")
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)
        self.register_buffer("scale", torch.tensor(math.sqrt(2.0) * math.log(num_classes - 1)))

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):
            cos = _cosine(features, self.weight)
            if not self.training and not self.scaled_eval:
                return cos
            if not (self.training and labels is not None):
                # a copy, so a later in-place update of the buffer cannot break this graph's backward
                return cos * self.scale.clone()
            with torch.no_grad():
                # scatter rather than F.one_hot, which checks the label range with .item() off CUDA
                target = torch.zeros_like(cos, dtype=torch.bool).scatter_(1, labels[:, None], True)
                # ln B_avg via logsumexp over the non-target entries: exp(s·cos) cannot overflow
                log_b = torch.logsumexp((self.scale * cos).masked_fill(target, float("-inf")).flatten(), 0)
                log_b = log_b - math.log(cos.shape[0])
                # gather, not cos[target]: a boolean mask makes the host wait for the device
                theta_y = torch.acos(cos.gather(1, labels[:, None])[:, 0].clamp(-1.0 + 1e-7, 1.0 - 1e-7))
                scale = log_b / torch.cos(torch.clamp(theta_y.median(), max=math.pi / 4))
                self.scale.copy_(scale)
            return cos * scale


class VirtualSoftmaxHead(nn.Module):
    """Virtual-softmax (Chen et al., "Virtual class enhanced discriminative embedding learning",
    NeurIPS 2018).

    A bias-free linear classifier (the paper writes the logits as W_kᵀx, bias omitted). In training
    with labels it appends one virtual class with weight W_virt = ‖W_{y_i}‖·x_i/‖x_i‖, so the
    output is (N, C + 1) = [Wᵀx, ‖W_{y_i}‖·‖x_i‖]; CE keeps the target y_i, and the virtual
    logit (which gets gradients, as in the paper) forces W_{y_i}ᵀx to beat it by a margin. In eval
    or without labels the output is the plain (N, C) Wᵀx. Computed in float32 with autocast off.
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's default init

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):
            x, w = features.float(), self.weight.float()
            logits = F.linear(x, w)
            if not (self.training and labels is not None):
                return logits
            virtual = w[labels].norm(dim=1) * x.norm(dim=1)
            return torch.cat([logits, virtual.unsqueeze(1)], dim=1)


def ddgsd_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, feats_a: torch.Tensor,
               feats_b: torch.Tensor, labels: torch.Tensor, *, lambda_kl: float = DDGSD_LAMBDA_KL,
               lambda_mmd: float = DDGSD_LAMBDA_MMD,
               temperature: float = DDGSD_TEMPERATURE) -> torch.Tensor:
    """DDGSD (Xu & Liu, "Data-distortion guided self-distillation for deep neural networks",
    AAAI 2019): two differently distorted views a, b of one batch through the same network.

        CE(a, y) + CE(b, y)
        + λ_kl·[T²·KL(p_b ‖ p_a) + T²·KL(p_a ‖ p_b)]      p = softmax(logits/T)
        + λ_mmd·‖mean_i f_a,i − mean_i f_b,i‖²₂

    Each KL direction treats the other view as a constant target (detached), so each view is
    pulled only towards the other. The MMD term is the squared MMD with a linear kernel, i.e.
    the distance between the two views' mean pooled features; it is symmetric, so neither side
    is detached. All terms are batch means. Defaults λ_kl = 1, λ_mmd = 5e-4 and T = 1 are our
    choice: the paper's full text was not available to confirm them, and the one public
    re-implementation checked (Self-KD-Lib) uses T = 4 and another weighting (docs/reproducing.md).
    """
    ce = F.cross_entropy(logits_a.float(), labels) + F.cross_entropy(logits_b.float(), labels)
    kl = (class_wise_kl(logits_a, logits_b, temperature=temperature)
          + class_wise_kl(logits_b, logits_a, temperature=temperature))
    mmd = (feats_a.float().mean(dim=0) - feats_b.float().mean(dim=0)).pow(2).sum()
    return ce + lambda_kl * kl + lambda_mmd * mmd


def _bottleneck_down(cin: int, cout: int) -> nn.Sequential:
    mid = max(cout // 4, 1)
    return nn.Sequential(
        nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Conv2d(mid, mid, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class ByotBranches(nn.Module):
    """Shallow classifiers of BYOT (Zhang et al., "Be your own teacher", ICCV 2019, §3.1).

    One branch per intermediate stage map (the deepest stage keeps the network's own head).
    Branch i of n downsamples with n − i bottleneck blocks (1x1 → 3x3 stride 2 → 1x1, BN-ReLU), one
    per later stage, so that — for a network that halves the resolution per stage — it reaches the
    deepest stage's resolution; channels double per block and the last block outputs
    `feature_dim` (the deepest features' width) so the feature hint ‖F_i − F_C‖² is defined. Then
    global average pooling and a linear head. forward(stage_maps) returns (list of branch logits
    (N, C), list of pooled branch features (N, feature_dim)), shallowest first.
    """

    def __init__(self, stage_channels: list[int], feature_dim: int, num_classes: int):
        super().__init__()
        n = len(stage_channels)
        self.branches = nn.ModuleList()
        for i, cin in enumerate(stage_channels):
            blocks, c = [], cin
            for j in range(n - i):
                cout = feature_dim if j == n - i - 1 else min(2 * c, feature_dim)
                blocks.append(_bottleneck_down(c, cout))
                c = cout
            self.branches.append(nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.heads = nn.ModuleList(nn.Linear(feature_dim, num_classes) for _ in stage_channels)

    def forward(self, stage_maps: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if len(stage_maps) != len(self.branches):
            raise ValueError(f"expected {len(self.branches)} stage maps, got {len(stage_maps)}")
        feats = [branch(m) for branch, m in zip(self.branches, stage_maps)]
        return [head(f) for head, f in zip(self.heads, feats)], feats


def byot_loss(branch_logits: list[torch.Tensor], branch_feats: list[torch.Tensor],
              final_logits: torch.Tensor, final_feats: torch.Tensor, labels: torch.Tensor, *,
              alpha: float = BYOT_ALPHA, beta: float = BYOT_BETA,
              temperature: float = BYOT_TEMPERATURE) -> torch.Tensor:
    """BYOT loss (Zhang et al., ICCV 2019, Eq. in §3.2), the deepest classifier as teacher:

        CE(final, y) + Σ_i [(1 − α)·CE(branch_i, y) + α·T²·KL(softmax(final/T) ‖ softmax(b_i/T))]
                     + β·Σ_i mean_n ‖f_i,n − f_final,n‖²₂

    The final logits/features are detached inside the KL and hint terms (they are targets there),
    so the final classifier is trained by its own CE only. Defaults α = 0.3, β = 0.03, T = 3 are
    those of a public re-implementation's training script (loss_coefficient, feature_loss_coefficient,
    temperature), not traced to the BYOT authors nor checked against their paper: our choice (docs/
    reproducing.md). Two deliberate differences from that script, which follow the paper's formula
    and Hinton's T² convention instead: its soft term is a soft-target CE without T² (equal to the
    KL up to a teacher-entropy constant, but 1/T² the size), and its hint is an unsquared L2 norm
    over the whole batch, through an extra linear adapter, skipped for the shallowest branch.
    """
    if len(branch_logits) != len(branch_feats):
        raise ValueError(f"{len(branch_logits)} branch logits but {len(branch_feats)} branch features")
    loss = F.cross_entropy(final_logits.float(), labels)
    teacher_feats = final_feats.detach().float()
    for logits, feats in zip(branch_logits, branch_feats):
        loss = loss + (1.0 - alpha) * F.cross_entropy(logits.float(), labels)
        loss = loss + alpha * class_wise_kl(logits, final_logits, temperature=temperature)
        loss = loss + beta * (feats.float() - teacher_feats).pow(2).sum(dim=1).mean()
    return loss


def cskd_e_consistency(logits_aug: torch.Tensor, logits_clean: torch.Tensor, *,
                       temperature: float) -> torch.Tensor:
    """CS-KD-E consistency term (CS-KD paper §3.4): T²·KL(P(y|x; θ̃, T) ‖ P(y|x_aug; θ, T)).

    The clean-input prediction is the fixed copy θ̃ (detached); KL summed over classes, batch
    mean. The caller weights it by λ_E and adds it to the CS-KD loss on the augmented pair; the
    paper gives no separate T, so pass the CS-KD run's temperature.
    """
    return class_wise_kl(logits_aug, logits_clean, temperature=temperature)
