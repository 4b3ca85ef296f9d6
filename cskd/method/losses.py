"""Losses of the paper, and `CSKDLoss` for your own training loop. All are batch means and return
0-d tensors (no host synchronisation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


class CSKDLoss(nn.Module):
    """The CS-KD objective of Eq. (1) as a module, for your own training loop:

        loss = CE(logits, labels) + λ · T² · KL( softmax(partner/T) ‖ softmax(logits/T) )

    with KL summed over classes and both terms averaged over the batch; a 0-d tensor. The partner's
    distribution is a constant (`partner_logits` is detached inside), as the paper's fixed copy θ̃:
    compute the partners' logits under `torch.no_grad()` to save the memory of their graph.
    `temperature` T > 0 (paper: 4), `lambda_cls` λ >= 0 (paper: 1). cskd's trainer computes its
    CS-KD step with the same function (`cskd_loss`).

    >>> import torch
    >>> loss = CSKDLoss(temperature=4.0, lambda_cls=1.0)
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> round(float(loss(logits, logits, torch.tensor([0, 1]))), 4)  # partners that agree: CE alone
    0.2201
    """

    def __init__(self, temperature: float = 4.0, lambda_cls: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature!r}")
        if not lambda_cls >= 0:
            raise ValueError(f"lambda_cls must be >= 0; got {lambda_cls!r}")
        self.temperature, self.lambda_cls = float(temperature), float(lambda_cls)

    def forward(self, logits: torch.Tensor, partner_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The 0-d loss of anchors' `logits` (B, C) against `labels` (B,) and their partners'
        `partner_logits` (B, C), the partner's distribution a constant (detached)."""
        _check_logits(logits, partner_logits, labels)
        total, _, _ = cskd_loss(logits, partner_logits, labels, temperature=self.temperature,
                                lambda_cls=self.lambda_cls)
        return total

    def extra_repr(self) -> str:
        """"temperature=T, lambda_cls=λ" in the module's repr."""
        return f"temperature={self.temperature:g}, lambda_cls={self.lambda_cls:g}"


def _check_logits(logits: torch.Tensor, partner_logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Shape and dtype checks only (they read no values: no host synchronisation)."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError(f"logits must be a 2-D tensor (batch, classes); got {_shape(logits)}")
    if not isinstance(partner_logits, torch.Tensor) or partner_logits.shape != logits.shape:
        raise ValueError(f"partner_logits must have the shape of logits {tuple(logits.shape)}; "
                         f"got {_shape(partner_logits)}")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or len(labels) != len(logits):
        raise ValueError(f"labels must be a 1-D tensor of {len(logits)} class ids (one per row of logits); "
                         f"got {_shape(labels)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class ids; got dtype {labels.dtype}")


def _shape(x) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
