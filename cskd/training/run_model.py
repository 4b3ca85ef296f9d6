"""A run's model: built for its method, wrapped for training, restored from its run folder, and
the teacher policy of the KD methods.

`TrainingModel` is the one entry point of every training-time model call: the methods that need
more than logits (AdaCos, Virtual-softmax, DDGSD, BYOT) ask for other `parts` of the same forward
instead of calling submodules, so DistributedDataParallel (which all-reduces only what went through
its wrapper's forward) and torch.compile see every call.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cskd.config import KD_METHODS, TrainConfig
from cskd.errors import UserError
from cskd.method import baselines as B
from cskd.models import MODELS, build_model
from cskd.runfolder.checkpoints import BEST_FIELDS, load_model_state, read_checkpoint
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.run_config import read_config
from cskd.runfolder.training_log import read_summary

PARTS = ("logits", "head", "features", "byot")


class TrainingModel(nn.Module):
    """`forward(x, labels=None, parts=...)`:
      logits    net(x): plain C-way logits (every method at evaluation, and most in training)
      head      net.head(features, labels): AdaCos and Virtual-softmax in training (the labels move
                AdaCos's scale and build Virtual-softmax's virtual class)
      features  (pooled features, logits) of one forward (DDGSD)
      byot      (logits, pooled features, (branch logits, branch features)) (BYOT)
    The checkpointed weights are `net`'s: state dicts keep the model zoo's names."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, *, parts: str = "logits"):
        net = self.net
        if parts == "logits":
            return net(x)
        if parts == "head":
            return net.head(net.forward_features(x), labels)
        if parts == "features":
            feats = net.forward_features(x)
            return feats, net.head(feats)
        if parts == "byot":
            maps, feats = net.forward_stages(x)
            return net.head(feats), feats, net.byot(maps)
        raise ValueError(f"parts must be one of {PARTS}; got {parts!r}")


def adapt_model(cfg: TrainConfig, model: nn.Module) -> nn.Module:
    """Give the model what its method needs; `model(x)` still returns plain C-way logits and
    `forward_features(x)` the pooled penultimate features, so every analysis works on every method.

    adacos / virtual_softmax replace the linear head (AdaCos under `--protocol authors` evaluates
    to plain cosines, as the implementation the paper used); byot attaches shallow classifiers as
    `model.byot` (trained, saved in checkpoints, unused at evaluation)."""
    num_classes = model.head.out_features
    if cfg.method == "adacos":
        model.head = B.AdaCosHead(model.feature_dim, num_classes, scaled_eval=cfg.protocol != "authors")
    elif cfg.method == "virtual_softmax":
        model.head = B.VirtualSoftmaxHead(model.feature_dim, num_classes)
    elif cfg.method == "byot":
        if not hasattr(model, "forward_stages"):
            raise UserError(f"--method byot needs a model with stages (small, preact_resnet18, resnet*); "
                            f"{cfg.model} has none")
        model.byot = B.ByotBranches(model.stage_channels, model.feature_dim, num_classes)
    return model


def build_run_model(cfg: TrainConfig, bundle) -> nn.Module:
    """The (freshly initialised) model of a run on `bundle`, adapted to its method. A 224-px model
    on smaller data, or a 32-px model on 224-px data, is refused (its stem would shrink 32 px to
    1 px, or blow up the memory); the small 8-px model, used for quick checks, takes any size, and
    a 32-px model also takes the 8-px digits."""
    size = MODELS[cfg.model][1] if cfg.model in MODELS else None
    if size not in (None, 8, bundle.image_size) and 224 in (size, bundle.image_size):
        raise UserError(f"--model {cfg.model} is made for {size}-px input but --dataset {bundle.name} is "
                        f"{bundle.image_size} px; choose a {bundle.image_size}-px model (cskd models lists them)")
    return adapt_model(cfg, build_model(cfg.model, num_classes=bundle.num_classes, in_channels=bundle.in_channels,
                                        width=cfg.width))


def load_run_model(run, *, checkpoint: str = "best", device: torch.device, bundle):
    """Rebuild a run's model from its config and load `<checkpoint>.pt` (eval mode).

    `bundle`: the run's data set (cskd.data.placement.bundle_for of the run's config; a KD student
    passes its own, on the same data).
    Returns (config, data bundle, model, checkpoint state)."""
    folder = RunFolder(run)
    cfg = read_config(folder)
    state = read_checkpoint(folder, checkpoint, fields=BEST_FIELDS, map_location=device,
                            fix=f"train {folder} again (cskd train --out {folder} --overwrite)")
    model = build_run_model(cfg, bundle)
    load_model_state(model, state["model"], folder.file(f"{checkpoint}.pt"))
    return cfg, bundle, model.to(device).eval(), state


def load_teacher(cfg: TrainConfig, *, bundle, device: torch.device) -> nn.Module | None:
    """The frozen teacher of kd / kd_cskd: the teacher run's config rebuilds its model, best.pt its
    weights. The teacher must be a finished run on the same data set, and (under held-out
    validation) must not have trained on this run's validation images."""
    if cfg.method not in KD_METHODS:
        return None
    teacher = RunFolder(cfg.teacher)
    try:
        tcfg = read_config(teacher)
    except UserError as e:
        raise UserError(f"--teacher {cfg.teacher}: {e}; give the folder of a finished cskd run") from None
    if tcfg.dataset != bundle.name:
        raise UserError(f"--teacher {cfg.teacher} was trained on {tcfg.dataset}, this run is on {bundle.name}; "
                        f"give a teacher trained on {bundle.name}")
    summary = read_summary(teacher)
    if not summary or not summary.get("finished"):
        raise UserError(f"--teacher {cfg.teacher} has not finished training (no summary.json); "
                        f"finish it with `cskd train --out {cfg.teacher} --resume`, or give a finished run")
    held_out = (cfg.split_seed, cfg.val_fraction, cfg.train_per_class)
    if cfg.select_on == "val" and (tcfg.split_seed, tcfg.val_fraction, tcfg.train_per_class) != held_out:
        # a teacher that trained on this run's validation images would leak them into model selection
        raise UserError(f"--teacher {cfg.teacher} used another validation split (--split-seed {tcfg.split_seed}, "
                        f"--val-fraction {tcfg.val_fraction}, --train-per-class {tcfg.train_per_class}); "
                        f"train the teacher with this run's split options")
    try:
        _, _, model, _ = load_run_model(Path(cfg.teacher), device=device, bundle=bundle)
    except UserError as e:
        raise UserError(f"--teacher {cfg.teacher} cannot be used: {e}. Retrain the teacher or give another "
                        f"--teacher (this run's folder is not the problem)") from None
    for p in model.parameters():
        p.requires_grad_(False)
    return model
