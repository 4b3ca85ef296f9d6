"""`cskd train`'s options: how each TrainConfig field is spelled on the command line, and back
(train_arguments rebuilds the options of a config, for runs launched by torchrun from a sweep)."""

from __future__ import annotations

import argparse

from cskd.config import (
    DEVICES,
    LOADERS,
    METHODS,
    PAIRINGS,
    PARTNER_BN,
    PRECISIONS,
    PRESETS,
    PROTOCOLS,
    SELECT_ON,
    TrainConfig,
)
from cskd.data.catalog import DATASET_SPECS


def nonempty_path(text: str) -> str:
    """argparse type of a path option: an empty path would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a folder path")
    return text


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Options that map onto TrainConfig fields; defaults are None so presets can fill them."""
    from cskd.models import MODELS

    d = TrainConfig()
    g = p.add_argument_group("run")
    g.add_argument("--preset", help=f"the paper's settings for a data set/model; one of: {', '.join(PRESETS)}")
    g.add_argument("--out", type=nonempty_path,
                   help="run folder (default: checkpoints/<dataset>-<model>-<method>-...-s<seed>)")
    g.add_argument("--resume", nargs="?", const=True, default=False, choices=("auto",),
                   help="continue the run in --out from its last.pt; `--resume auto`: continue when there is a "
                        "checkpoint of this run, start when there is none, do nothing when it has finished "
                        "(for torchrun's restarts and preempted jobs)")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    g.add_argument("--seed", type=int, help=f"seed of initialisation, pair sampling and augmentation ({d.seed})")
    g.add_argument("--device", choices=DEVICES, help="default auto: CUDA when available")
    g.add_argument("--sync-bn", action="store_const", const=True,
                   help="SyncBatchNorm across torchrun's processes (CUDA only; default: per-process statistics)")
    g.add_argument("--precision", choices=PRECISIONS, help="auto = bf16 autocast on CUDA, fp32 on CPU")
    g.add_argument("--compile", action="store_const", const=True,
                   help="torch.compile the model (the last, smaller batch of an epoch compiles a second graph)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on CUDA only)")
    g.add_argument("--threads", type=int, help="CPU threads for torch (0 = one per core)")
    g.add_argument("--log-interval", type=int, help=f"steps between progress updates ({d.log_interval})")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="force the per-step progress bar on/off (default: on a terminal only)")

    g = p.add_argument_group("data")
    g.add_argument("--dataset", help=f"one of: {', '.join(DATASET_SPECS)} (default {d.dataset})")
    g.add_argument("--data-root", type=nonempty_path,
                   help=f"folder holding the data sets ({d.data_root}); for imagefolder the set itself")
    g.add_argument("--download", action="store_const", const=True, help="download CIFAR-100 if missing")
    g.add_argument("--mixed-roots", nargs="+", metavar="DIR", type=nonempty_path,
                   help="dataset mixed: ImageFolder roots (each with train/ and test/), one coarse group each")
    g.add_argument("--mixed-per-class", type=int, help="dataset mixed: training images per fine class (30)")
    g.add_argument("--protocol", choices=PROTOCOLS,
                   help="clean (default): hold out a validation split and select on it; authors: the authors' "
                        "experiment (full training set, best TEST epoch, lr drops after epochs 101 and 151, "
                        "self-pairs allowed, their normalisation, AdaCos evaluated on plain cosines)")
    g.add_argument("--train-per-class", type=int,
                   help="train on N images per class (a seeded, stratified subset; 0 = all)")
    g.add_argument("--val-fraction", type=float,
                   help=f"stratified validation hold-out of the training data ({d.val_fraction})")
    g.add_argument("--split-seed", type=int, help=f"seed of the validation split ({d.split_seed})")
    g.add_argument("--select-on", choices=SELECT_ON,
                   help="pick the best epoch on val (default) or test (the authors' protocol, optimistic)")
    g.add_argument("--loader", choices=LOADERS,
                   help="auto (default): images on the training device when the data set is in memory; "
                        "host: DataLoader workers with per-sample transforms")
    g.add_argument("--decode-cache", choices=("on", "off"),
                   help="image-file sets: decode every image once into a memory-mapped uint8 cache (short side "
                        "256) so later epochs never decode JPEGs again (default on)")
    g.add_argument("--decode-cache-dir", help="where the cache lives (default DATA_ROOT/.cskd-cache)")
    g.add_argument("--workers", type=int, help=f"DataLoader workers for image-file data sets ({d.workers})")

    g = p.add_argument_group("model")
    g.add_argument("--model", help=f"one of: {', '.join(MODELS)} (default {d.model})")
    g.add_argument("--width", type=int, help="first-stage width of the 32-px and 8-px models (0 = their default)")

    g = p.add_argument_group("method")
    g.add_argument("--method", help=f"one of: {', '.join(METHODS)} (default {d.method})")
    g.add_argument("--temperature", "-T", type=float, help=f"T in Eq. (1) ({d.temperature:g})")
    g.add_argument("--lambda-cls", type=float, help=f"λ_cls in Eq. (1) ({d.lambda_cls:g})")
    g.add_argument("--partner-bn", choices=PARTNER_BN,
                   help="BatchNorm mode of the no-grad partner forward (train, as the authors do)")
    g.add_argument("--allow-self-pair", action="store_const", const=True,
                   help="let the partner be the anchor itself (the authors' sampler)")
    g.add_argument("--pairing", choices=PAIRINGS,
                   help="paper: a separate no-grad partner batch (default); in-batch: B/2 same-class pairs per "
                        "batch whose targets come from the same forward (no extra forward; beyond the paper)")

    g = p.add_argument_group("baselines (defaults: each method's paper; see cskd/baselines.py)")
    g.add_argument("--ls-epsilon", type=float, help=f"label_smoothing: ε ({d.ls_epsilon:g})")
    g.add_argument("--me-beta", type=float, help=f"max_entropy: weight β of the entropy bonus ({d.me_beta:g})")
    g.add_argument("--mixup-alpha", type=float, help=f"mixup, mixup_cskd: Beta(α, α) ({d.mixup_alpha:g})")
    g.add_argument("--teacher", type=nonempty_path,
                   help="kd, kd_cskd: run folder of the teacher (its config rebuilds the model)")
    g.add_argument("--kd-alpha", type=float, help=f"kd, kd_cskd: weight of the distillation term ({d.kd_alpha:g})")
    g.add_argument("--lambda-e", type=float, help=f"cskd_e: weight λ_E of the consistency term ({d.lambda_e:g})")
    g.add_argument("--ddgsd-lambda-kl", type=float, help=f"ddgsd: weight of the views' KL ({d.ddgsd_lambda_kl:g})")
    g.add_argument("--ddgsd-lambda-mmd", type=float, help=f"ddgsd: weight of the MMD ({d.ddgsd_lambda_mmd:g})")
    g.add_argument("--ddgsd-temperature", type=float, help=f"ddgsd: temperature ({d.ddgsd_temperature:g})")
    g.add_argument("--byot-alpha", type=float, help=f"byot: weight of the soft targets ({d.byot_alpha:g})")
    g.add_argument("--byot-beta", type=float, help=f"byot: weight of the feature hint ({d.byot_beta:g})")
    g.add_argument("--byot-temperature", type=float, help=f"byot: temperature ({d.byot_temperature:g})")

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help=f"({d.epochs}); lr /10 at each of --lr-milestones")
    g.add_argument("--lr-milestones", type=float, nargs="+", metavar="F",
                   help="fractions of --epochs after which the lr is divided by 10 (0.5 0.75: the paper's epochs "
                        "100 and 150 of 200; the imagenet presets use 1/3 and 2/3)")
    g.add_argument("--batch-size", type=int, help=f"anchors per step ({d.batch_size}); CS-KD adds as many partners")
    g.add_argument("--lr", type=float, help=f"initial learning rate ({d.lr:g})")
    g.add_argument("--momentum", type=float, help=f"SGD momentum ({d.momentum:g})")
    g.add_argument("--weight-decay", type=float, help=f"({d.weight_decay:g})")


TRAIN_ONLY = ("preset", "resume", "overwrite", "progress", "command", "func")
# TrainConfig fields given as a bare flag when True (argparse store_const)
FLAG_FIELDS = ("download", "allow_self_pair", "compile", "sync_bn")


def train_arguments(cfg: TrainConfig) -> list[str]:
    """`cskd train` options that resolve to exactly `cfg` (every field explicit), e.g. for a run
    launched by torchrun from `cskd sweep --nproc-per-node`."""
    args = []
    for key, value in cfg.to_dict().items():
        flag = "--" + key.replace("_", "-")
        if key in FLAG_FIELDS:
            args += [flag] if value else []
        elif key == "channels_last":
            args += [] if value is None else ["--channels-last" if value else "--no-channels-last"]
        elif isinstance(value, list):
            args += [flag, *map(str, value)] if value else []
        elif value == "" and key in ("teacher", "decode_cache_dir", "out", "preset"):
            continue
        else:
            args += [flag, str(value)]
    return args


def config_from_args(args: argparse.Namespace):
    from cskd.config import resolve

    overrides = {k: v for k, v in vars(args).items() if k not in TRAIN_ONLY}
    return resolve(overrides, args.preset)
