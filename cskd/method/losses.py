"""Losses of the paper. All are batch means and return 0-d tensors (no host synchronisation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_wise_kl(logits: torch.Tensor, partner_logits: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """T² · KL( softmax(partner/T) ‖ softmax(logits/T) ), summed over classes, averaged over the batch.

    The partner's distribution is a constant: `partner_logits` is detached here, so no gradient
    reaches the partner forward whatever the caller did (the paper's fixed copy θ̃).
    """
    t = temperature
    log_p = F.log_softmax(logits.float() / t, dim=1)
    log_q = F.log_softmax(partner_logits.detach().float() / t, dim=1)
    # KL(q ‖ p) = Σ_c q_c (log q_c − log p_c); kl_div takes the target as log-probabilities here.
    kl = F.kl_div(log_p, log_q, reduction="sum", log_target=True) / logits.shape[0]
    return kl * (t * t)


def cskd_loss(logits: torch.Tensor, partner_logits: torch.Tensor, labels: torch.Tensor, *,
              temperature: float, lambda_cls: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. (1): CE(f(x), y) + λ_cls · T² · KL(P(y|x'; θ̃, T) ‖ P(y|x; θ, T)). Returns (total, ce, kl term)."""
    ce = F.cross_entropy(logits.float(), labels)
    kl = class_wise_kl(logits, partner_logits, temperature=temperature)
    return ce + lambda_cls * kl, ce, kl
