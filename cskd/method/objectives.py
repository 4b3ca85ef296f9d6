"""Training objectives: what one step computes from a Batch. The trainer knows nothing else.

Every method is a `Method(partner, clean, step)`, made from its spec (cskd.method.registry):
  partner  what the data source adds to each anchor batch (cskd.method.batch.PARTNER_MODES)
  clean    whether the source also yields un-augmented anchors
  step     step(ctx, batch) -> Step(loss, ce, reg, logits, labels); all 0-d tensors stay on the
           device (no host synchronisation), `logits`/`labels` feed the running train accuracy.

Every gradient-carrying model call goes through `ctx.model(x, labels, parts=...)` (see
cskd.training.run_model.TrainingModel), never through a submodule, so that DistributedDataParallel
all-reduces every gradient; fixed (no-grad) predictions use `ctx.fixed`, the same model unwrapped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cskd.config import TrainConfig
from cskd.errors import UserError
from cskd.method import baselines as B
from cskd.method.batch import Batch
from cskd.method.losses import class_wise_kl, cskd_loss
from cskd.method.registry import METHOD_SPECS, methods_where


@dataclass
class StepContext:
    """What a method's step may use. `model` and `fixed` take (x, labels=None, parts=...)."""

    cfg: TrainConfig
    model: Callable  # the gradient path: the TrainingModel, compiled and/or wrapped by DDP
    fixed: Callable | None = None  # the same model without the DDP wrapper, for no-grad predictions
    teacher: torch.nn.Module | None = None
    generator: torch.Generator | None = None  # per-step CPU generator (Mixup draws λ and π on the host)
    num_classes: int = 0

    def __post_init__(self):
        if self.fixed is None:
            self.fixed = self.model


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
    step: Callable[[StepContext, Batch], Step]
    clean: bool = False


def _zero(like: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), device=like.device)


@torch.no_grad()
def fixed_prediction(ctx: StepContext, x: torch.Tensor) -> torch.Tensor:
    """Logits of the fixed copy θ̃: no graph; BatchNorm in train mode unless --partner-bn eval.
    Through the unwrapped model: a no-grad forward through DDP would broadcast rank 0's buffers."""
    model = ctx.fixed
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


def ce_step(ctx: StepContext, b: Batch) -> Step:
    logits = ctx.model(b.x)
    ce = F.cross_entropy(logits.float(), b.y)
    return Step(ce, ce, _zero(ce), logits, b.y)


def cskd_step(ctx: StepContext, b: Batch) -> Step:
    """Eq. (1). Paper pairing: a no-grad forward of the partner batch; in-batch pairing: the pair's
    prediction from the same forward (no extra forward; BatchNorm sees anchors and partners together)."""
    cfg = ctx.cfg
    logits = ctx.model(b.x)
    target = paired_logits(logits) if b.partner is None else fixed_prediction(ctx, b.partner)
    loss, ce, kl = cskd_loss(logits, target, b.y, temperature=cfg.temperature, lambda_cls=cfg.lambda_cls)
    return Step(loss, ce, cfg.lambda_cls * kl, logits, b.y)


def _kl(ctx: StepContext, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """λ_cls · T² · KL(softmax(target/T) ‖ softmax(logits/T)), target fixed."""
    return ctx.cfg.lambda_cls * class_wise_kl(logits, target, temperature=ctx.cfg.temperature)


def label_smoothing_step(ctx: StepContext, b: Batch) -> Step:
    logits = ctx.model(b.x)
    loss = B.label_smoothing_ce(logits, b.y, epsilon=ctx.cfg.ls_epsilon)
    ce = F.cross_entropy(logits.float(), b.y).detach()
    return Step(loss, ce, loss.detach() - ce, logits, b.y)


def max_entropy_step(ctx: StepContext, b: Batch) -> Step:
    logits = ctx.model(b.x)
    loss = B.confidence_penalty_ce(logits, b.y, beta=ctx.cfg.me_beta)
    ce = F.cross_entropy(logits.float(), b.y).detach()
    return Step(loss, ce, loss.detach() - ce, logits, b.y)


def head_step(ctx: StepContext, b: Batch) -> Step:
    """AdaCos and Virtual-softmax: the head needs the labels in training (scale update, virtual class)."""
    logits = ctx.model(b.x, b.y, parts="head")
    loss = F.cross_entropy(logits.float(), b.y)
    # Virtual-softmax appends the virtual class as the last column; accuracy counts real classes only.
    return Step(loss, loss, _zero(loss), logits[:, :ctx.num_classes], b.y)


def mixup_step(ctx: StepContext, b: Batch) -> Step:
    mix = B.mixup_batch(b.x, b.y, alpha=ctx.cfg.mixup_alpha, generator=ctx.generator)
    logits = ctx.model(mix.x)
    loss = B.mixup_ce(logits, mix.labels_a, mix.labels_b, mix.lam)
    return Step(loss, loss, _zero(loss), logits, b.y)


def mixup_cskd_step(ctx: StepContext, b: Batch) -> Step:
    """Mixup + CS-KD (§3.2): anchors x_i mixed as λx_i + (1−λ)x_π(i) (one λ ~ Beta(α, α) and one
    permutation π per batch); partner x'_i (same class as x_i, drawn by the pair sampler) mixed with
    the same λ and π, λx'_i + (1−λ)x'_π(i), so anchor and partner carry the same mixed label
    λy_i + (1−λ)y_π(i). Loss: Mixup CE on the mixed anchors + λ_cls·T²·KL(f(x'_mix) fixed ‖ f(x_mix))."""
    mix = B.mixup_batch(b.x, b.y, alpha=ctx.cfg.mixup_alpha, generator=ctx.generator)
    logits = ctx.model(mix.x)
    ce = B.mixup_ce(logits, mix.labels_a, mix.labels_b, mix.lam)
    target = fixed_prediction(ctx, B.mixup_cskd_partner_batch(b.partner, mix.lam, mix.perm))
    reg = _kl(ctx, logits, target)
    return Step(ce + reg, ce, reg, logits, b.y)


@torch.no_grad()
def _teacher(ctx: StepContext, x: torch.Tensor) -> torch.Tensor:
    return ctx.teacher(x)  # a frozen model of another run: outside the DDP wrapper on purpose


def kd_step(ctx: StepContext, b: Batch) -> Step:
    """KD (Hinton et al. 2015): (1−α)·CE + α·T²·KL(teacher/T ‖ student/T) at the run's T."""
    cfg = ctx.cfg
    logits = ctx.model(b.x)
    loss = B.kd_total(logits, _teacher(ctx, b.x), b.y, temperature=cfg.temperature, alpha=cfg.kd_alpha)
    ce = F.cross_entropy(logits.float(), b.y).detach()
    return Step(loss, ce, loss.detach() - (1 - cfg.kd_alpha) * ce, logits, b.y)


def kd_cskd_step(ctx: StepContext, b: Batch) -> Step:
    """KD + CS-KD (Table 4): the KD loss plus the class-wise term λ_cls·T²·KL on a same-class partner."""
    out = kd_step(ctx, b)
    reg = _kl(ctx, out.logits, fixed_prediction(ctx, b.partner))
    return Step(out.loss + reg, out.ce, out.reg + reg.detach(), out.logits, b.y)


def cskd_e_step(ctx: StepContext, b: Batch) -> Step:
    """CS-KD-E (§3.4): CS-KD on the augmented pair + λ_E·T²·KL(f(x clean) fixed ‖ f(x augmented))."""
    out = cskd_step(ctx, b)
    clean = fixed_prediction(ctx, b.clean)
    reg = ctx.cfg.lambda_e * B.cskd_e_consistency(out.logits, clean, temperature=ctx.cfg.temperature)
    return Step(out.loss + reg, out.ce, out.reg + reg.detach(), out.logits, b.y)


def ddgsd_step(ctx: StepContext, b: Batch) -> Step:
    """DDGSD (Xu & Liu 2019): two independent augmentations of each anchor in one forward."""
    cfg, n = ctx.cfg, b.x.shape[0]
    feats, logits = ctx.model(torch.cat([b.x, b.partner]), parts="features")
    loss = B.ddgsd_loss(logits[:n], logits[n:], feats[:n], feats[n:], b.y, lambda_kl=cfg.ddgsd_lambda_kl,
                        lambda_mmd=cfg.ddgsd_lambda_mmd, temperature=cfg.ddgsd_temperature)
    ce = F.cross_entropy(logits[:n].float(), b.y).detach()
    return Step(loss, ce, loss.detach() - ce, logits[:n], b.y)


def byot_step(ctx: StepContext, b: Batch) -> Step:
    """BYOT (Zhang et al. 2019): shallow classifiers on the intermediate stages learn from the deepest."""
    cfg = ctx.cfg
    logits, feats, (branch_logits, branch_feats) = ctx.model(b.x, parts="byot")
    loss = B.byot_loss(branch_logits, branch_feats, logits, feats, b.y, alpha=cfg.byot_alpha, beta=cfg.byot_beta,
                       temperature=cfg.byot_temperature)
    ce = F.cross_entropy(logits.float(), b.y).detach()
    return Step(loss, ce, loss.detach() - ce, logits, b.y)


# The step functions by name: cskd.method.registry names each method's step (it cannot import these
# torch functions, see its docstring); tests/test_specs.py checks that the names agree exactly.
STEPS: dict[str, Callable[[StepContext, Batch], Step]] = {f.__name__: f for f in (
    ce_step, cskd_step, label_smoothing_step, max_entropy_step, head_step, mixup_step, mixup_cskd_step, kd_step,
    kd_cskd_step, cskd_e_step, ddgsd_step, byot_step)}


def method_for(cfg: TrainConfig) -> Method:
    """The Method of `cfg.method` (names validated by cskd.config), from its MethodSpec."""
    spec = METHOD_SPECS[cfg.method]
    if cfg.pairing == "in-batch" and not spec.in_batch_pairing:
        raise UserError(f"--pairing in-batch applies to --method {' and '.join(methods_where('in_batch_pairing'))} "
                        f"only; got --method {cfg.method}")
    partner = "in-batch" if cfg.pairing == "in-batch" else spec.partner
    return Method(partner, STEPS[spec.step], clean=spec.clean)
