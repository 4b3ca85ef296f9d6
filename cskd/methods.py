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

from . import baselines as B
from .config import KD_METHODS, TrainConfig
from .errors import UserError
from .loaders import Batch
from .losses import class_wise_kl, cskd_loss


@dataclass
class Context:
    cfg: TrainConfig
    model: torch.nn.Module
    teacher: torch.nn.Module | None = None
    generator: torch.Generator | None = None  # per-epoch CPU generator (Mixup draws λ and π on the host)
    channels_last: bool = False  # convert batches to channels_last before the forward
    num_classes: int = 0


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


def _kl(ctx: Context, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """λ_cls · T² · KL(softmax(target/T) ‖ softmax(logits/T)), target fixed."""
    return ctx.cfg.lambda_cls * class_wise_kl(logits, target, temperature=ctx.cfg.temperature)


def label_smoothing_step(ctx: Context, b: Batch) -> Step:
    logits = ctx.model(b.x)
    loss = B.label_smoothing_ce(logits, b.y, epsilon=ctx.cfg.ls_epsilon)
    ce = F.cross_entropy(logits.float(), b.y).detach()
    return Step(loss, ce, loss.detach() - ce, logits, b.y)


def max_entropy_step(ctx: Context, b: Batch) -> Step:
    logits = ctx.model(b.x)
    loss = B.confidence_penalty_ce(logits, b.y, beta=ctx.cfg.me_beta)
    ce = F.cross_entropy(logits.float(), b.y).detach()
    return Step(loss, ce, loss.detach() - ce, logits, b.y)


def head_step(ctx: Context, b: Batch) -> Step:
    """AdaCos and Virtual-softmax: the head needs the labels in training (scale update, virtual class)."""
    logits = ctx.model.head(ctx.model.forward_features(b.x), b.y)
    loss = F.cross_entropy(logits.float(), b.y)
    # Virtual-softmax appends the virtual class as the last column; accuracy counts real classes only.
    return Step(loss, loss, _zero(loss), logits[:, :ctx.num_classes], b.y)


def mixup_step(ctx: Context, b: Batch) -> Step:
    mix = B.mixup_batch(b.x, b.y, alpha=ctx.cfg.mixup_alpha, generator=ctx.generator)
    logits = ctx.model(mix.x)
    loss = B.mixup_ce(logits, mix.labels_a, mix.labels_b, mix.lam)
    return Step(loss, loss, _zero(loss), logits, b.y)


def mixup_cskd_step(ctx: Context, b: Batch) -> Step:
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
def _teacher(ctx: Context, x: torch.Tensor) -> torch.Tensor:
    return ctx.teacher(x)


def kd_step(ctx: Context, b: Batch) -> Step:
    """KD (Hinton et al. 2015): (1−α)·CE + α·T²·KL(teacher/T ‖ student/T) at the run's T."""
    cfg = ctx.cfg
    logits = ctx.model(b.x)
    loss = B.kd_total(logits, _teacher(ctx, b.x), b.y, temperature=cfg.temperature, alpha=cfg.kd_alpha)
    ce = F.cross_entropy(logits.float(), b.y).detach()
    return Step(loss, ce, loss.detach() - (1 - cfg.kd_alpha) * ce, logits, b.y)


def kd_cskd_step(ctx: Context, b: Batch) -> Step:
    """KD + CS-KD (Table 4): the KD loss plus the class-wise term λ_cls·T²·KL on a same-class partner."""
    out = kd_step(ctx, b)
    reg = _kl(ctx, out.logits, fixed_prediction(ctx, b.partner))
    return Step(out.loss + reg, out.ce, out.reg + reg.detach(), out.logits, b.y)


def cskd_e_step(ctx: Context, b: Batch) -> Step:
    """CS-KD-E (§3.4): CS-KD on the augmented pair + λ_E·T²·KL(f(x clean) fixed ‖ f(x augmented))."""
    out = cskd_step(ctx, b)
    clean = fixed_prediction(ctx, b.clean)
    reg = ctx.cfg.lambda_e * B.cskd_e_consistency(out.logits, clean, temperature=ctx.cfg.temperature)
    return Step(out.loss + reg, out.ce, out.reg + reg.detach(), out.logits, b.y)


def ddgsd_step(ctx: Context, b: Batch) -> Step:
    """DDGSD (Xu & Liu 2019): two independent augmentations of each anchor in one forward."""
    cfg, n = ctx.cfg, b.x.shape[0]
    feats = ctx.model.forward_features(torch.cat([b.x, b.partner]))
    logits = ctx.model.head(feats)
    loss = B.ddgsd_loss(logits[:n], logits[n:], feats[:n], feats[n:], b.y, lambda_kl=cfg.ddgsd_lambda_kl,
                        lambda_mmd=cfg.ddgsd_lambda_mmd, temperature=cfg.ddgsd_temperature)
    ce = F.cross_entropy(logits[:n].float(), b.y).detach()
    return Step(loss, ce, loss.detach() - ce, logits[:n], b.y)


def byot_step(ctx: Context, b: Batch) -> Step:
    """BYOT (Zhang et al. 2019): shallow classifiers on the intermediate stages learn from the deepest."""
    cfg, model = ctx.cfg, ctx.model
    maps, feats = model.forward_stages(b.x)
    logits = model.head(feats)
    branch_logits, branch_feats = model.byot(maps)
    loss = B.byot_loss(branch_logits, branch_feats, logits, feats, b.y, alpha=cfg.byot_alpha, beta=cfg.byot_beta,
                       temperature=cfg.byot_temperature)
    ce = F.cross_entropy(logits.float(), b.y).detach()
    return Step(loss, ce, loss.detach() - ce, logits, b.y)


def _cskd_partner(cfg: TrainConfig) -> str:
    return "in-batch" if cfg.pairing == "in-batch" else "class"


def method_for(cfg: TrainConfig) -> Method:
    """The Method of `cfg.method` (names validated by cskd.config)."""
    if cfg.pairing == "in-batch" and cfg.method != "cskd":
        raise UserError(f"--pairing in-batch applies to --method cskd only; got --method {cfg.method}")
    table = {
        "ce": Method("none", ce_step),
        "cskd": Method(_cskd_partner(cfg), cskd_step),
        "label_smoothing": Method("none", label_smoothing_step),
        "max_entropy": Method("none", max_entropy_step),
        "adacos": Method("none", head_step),
        "virtual_softmax": Method("none", head_step),
        "mixup": Method("none", mixup_step),
        "mixup_cskd": Method("class", mixup_cskd_step),
        "kd": Method("none", kd_step),
        "kd_cskd": Method("class", kd_cskd_step),
        "cskd_e": Method("class", cskd_e_step, clean=True),
        "ddgsd": Method("view", ddgsd_step),
        "byot": Method("none", byot_step),
    }
    return table[cfg.method]


def adapt_model(cfg: TrainConfig, model: torch.nn.Module) -> torch.nn.Module:
    """Give the model what its method needs; `model(x)` still returns plain C-way logits and
    `forward_features(x)` the pooled penultimate features, so every analysis works on every method.

    adacos / virtual_softmax replace the linear head; byot attaches shallow classifiers as
    `model.byot` (trained, saved in checkpoints, unused at evaluation).
    """
    num_classes = model.head.out_features
    if cfg.method == "adacos":
        model.head = B.AdaCosHead(model.feature_dim, num_classes)
    elif cfg.method == "virtual_softmax":
        model.head = B.VirtualSoftmaxHead(model.feature_dim, num_classes)
    elif cfg.method == "byot":
        if not hasattr(model, "forward_stages"):
            raise UserError(f"--method byot needs a model with stages (small, preact_resnet18, resnet*); "
                            f"{cfg.model} has none")
        model.byot = B.ByotBranches(model.stage_channels, model.feature_dim, num_classes)
    return model


def load_run_model(run, *, checkpoint: str = "best", device: torch.device, bundle=None):
    """Rebuild a finished run's model from its config and load `<checkpoint>.pt` (eval mode).

    `bundle`: the run's data set when the caller has it already (a KD student on the same data).
    Returns (config, data bundle, model, checkpoint state).
    """
    from pathlib import Path

    from .checkpoint import load_checkpoint, load_model_state
    from .data import bundle_for
    from .models import build_model
    from .runs import read_config

    run = Path(run)
    cfg = read_config(run)
    state = load_checkpoint(run / f"{checkpoint}.pt", map_location=device)
    bundle = bundle or bundle_for(cfg)
    model = adapt_model(cfg, build_model(cfg.model, num_classes=bundle.num_classes, in_channels=bundle.in_channels,
                                         width=cfg.width))
    load_model_state(model, state["model"], run / f"{checkpoint}.pt")
    return cfg, bundle, model.to(device).eval(), state


def load_teacher(cfg: TrainConfig, *, bundle, device: torch.device) -> torch.nn.Module | None:
    """The frozen teacher of kd / kd_cskd: the teacher run's config rebuilds its model, best.pt its weights."""
    if cfg.method not in KD_METHODS:
        return None
    from .runs import read_config

    tcfg = read_config(cfg.teacher)
    if tcfg.dataset != bundle.name:
        raise UserError(f"--teacher {cfg.teacher} was trained on {tcfg.dataset}, this run is on {bundle.name}")
    from pathlib import Path

    if not (Path(cfg.teacher) / "summary.json").is_file():
        raise UserError(f"--teacher {cfg.teacher} has not finished training (no summary.json); "
                        f"finish it with `cskd train --out {cfg.teacher} --resume`")
    if (tcfg.split_seed, tcfg.val_fraction) != (cfg.split_seed, cfg.val_fraction) and cfg.select_on == "val":
        # a teacher that trained on this run's validation images would leak them into model selection
        raise UserError(f"--teacher {cfg.teacher} used another validation split (--split-seed "
                        f"{tcfg.split_seed}, --val-fraction {tcfg.val_fraction}); train it with this run's")
    _, _, teacher, _ = load_run_model(cfg.teacher, device=device, bundle=bundle)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
