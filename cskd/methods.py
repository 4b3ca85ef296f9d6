"""Training objectives: what one step computes from a Batch. The trainer knows nothing else.

Every method is a `Method(partner, clean, step)`:
  partner  what the data source adds to each anchor batch (cskd.loaders.PARTNER_MODES)
  clean    whether the source also yields un-augmented anchors
  step     step(ctx, batch) -> Step(loss, ce, reg, logits, labels); all 0-d tensors stay on the
           device (no host synchronisation), `logits`/`labels` feed the running train accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .loaders import Batch
from .losses import cskd_loss


@dataclass
class Context:
    cfg: TrainConfig
    model: torch.nn.Module
    teacher: torch.nn.Module | None = None
    generator: torch.Generator | None = None  # per-epoch device generator (Mixup draws)
    channels_last: bool = False  # convert batches to channels_last before the forward


@dataclass
class Step:
    loss: torch.Tensor
    ce: torch.Tensor
    reg: torch.Tensor  # the method's regulariser (CS-KD: λ·T²·KL), 0 for plain CE
    logits: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class Method:
    partner: str
    step: Callable[[Context, Batch], Step]
    clean: bool = False


def _zero(like: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), device=like.device)


@torch.no_grad()
def fixed_prediction(ctx: Context, x: torch.Tensor) -> torch.Tensor:
    """Logits of the fixed copy θ̃: no graph; BatchNorm in train mode unless --partner-bn eval."""
    model = ctx.model
    if ctx.cfg.partner_bn == "eval":
        model.eval()
    try:
        return model(x)
    finally:
        model.train()


def paired_logits(logits: torch.Tensor) -> torch.Tensor:
    """In-batch pairing: rows [0, B/2) are anchors and [B/2, B) their partners; each row's target is
    the other member of its pair, detached."""
    half = logits.shape[0] // 2
    return torch.cat([logits[half:], logits[:half]]).detach()


def ce_step(ctx: Context, b: Batch) -> Step:
    logits = ctx.model(b.x)
    ce = F.cross_entropy(logits.float(), b.y)
    return Step(ce, ce, _zero(ce), logits, b.y)


def cskd_step(ctx: Context, b: Batch) -> Step:
    """Eq. (1). Paper pairing: a no-grad forward of the partner batch; in-batch pairing: the pair's
    prediction from the same forward (no extra forward; BatchNorm sees anchors and partners together)."""
    cfg = ctx.cfg
    logits = ctx.model(b.x)
    target = paired_logits(logits) if b.partner is None else fixed_prediction(ctx, b.partner)
    loss, ce, kl = cskd_loss(logits, target, b.y, temperature=cfg.temperature, lambda_cls=cfg.lambda_cls)
    return Step(loss, ce, cfg.lambda_cls * kl, logits, b.y)


def _cskd_partner(cfg: TrainConfig) -> str:
    return "in-batch" if cfg.pairing == "in-batch" else "class"


def method_for(cfg: TrainConfig) -> Method:
    """The Method of `cfg.method` (names validated by cskd.config)."""
    table = {
        "ce": Method("none", ce_step),
        "cskd": Method(_cskd_partner(cfg), cskd_step),
    }
    return table[cfg.method]
