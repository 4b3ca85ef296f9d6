"""The run configuration: one dataclass, the paper's presets, validation, and reading a saved
config back.

A run's config is resolved as: dataclass defaults <- `--preset` <- explicit command-line options.
It is saved in the run folder's `config.json` and inside every checkpoint (see cskd.runfolder).

Every field has a kind (the `kind` metadata below):
  experiment  changes what the run computes (the default)
  execution   where and how fast it runs, or where its files are: may change when a run resumes,
              and runs differing only there are repeats of one experiment
  naming      how the run was asked for (--preset, --out): never part of the experiment
  seed        the training seed: runs differing only by seed are grouped as mean ± std

and its command-line option (`_option` below): the help text, the help group and how the option
is spelt. cskd.cli.train_options builds `cskd train`'s and `cskd sweep`'s options from them, with
the field's default in the help, so each default is written once: here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from cskd.errors import UserError, choose
from cskd.method.registry import METHOD_SPECS, methods_where

METHODS = tuple(METHOD_SPECS)  # --method names (each method's facts: cskd.method.registry)
SELECT_ON = ("val", "test")
PRECISIONS = ("auto", "fp32", "tf32", "bf16")  # what each means: cskd.training.device
PARTNER_BN = ("train", "eval")
KD_METHODS = methods_where("needs_teacher")  # the methods that distil from a --teacher run
CLASS_WISE = methods_where("class_wise")  # the methods with the class-wise term (T and λ_cls)
USES_TEMPERATURE = methods_where("uses_temperature")  # the methods whose loss reads --temperature
PAIRINGS = ("paper", "in-batch")
LOADERS = ("auto", "device", "host")
DEVICES = ("auto", "cpu", "cuda")
PROTOCOLS = ("clean", "authors")


def _option(default, help: str, *, group: str, kind: str = "experiment", **option):
    """A field with its command-line option: `help` (cskd.cli.train_options appends the default),
    the help `group`, the field's `kind`, and optional keys: choices, alias, metavar, path (a folder
    or file: never empty), shown (what a sentinel default means; {runs} and {run_name} stand for
    the default runs folder and the run name pattern), sweep (True: `cskd sweep` may override it;
    a string: with that help)."""
    return field(default=default, metadata={"kind": kind, "help": help, "group": group, **option})


@dataclass
class TrainConfig:
    """Everything that defines a training run (units in the help texts)."""

    dataset: str = _option("digits", "the data set", group="data")
    # folder holding the data sets (see README, "Data")
    data_root: str = _option("data", "folder holding the data sets; for imagefolder the set itself", group="data",
                             kind="execution", path=True, sweep=True)
    # only cifar100 downloads, and only when asked
    download: bool = _option(False, "download CIFAR-100 if missing", group="data", kind="execution", sweep=True)
    mixed_roots: tuple[str, ...] = _option((), "dataset mixed: ImageFolder roots (each with train/ and test/), one "
                                               "coarse group each", group="data", metavar="DIR", path=True)
    mixed_per_class: int = _option(30, "dataset mixed: training images per fine class (the paper's value)",
                                   group="data")
    decode_cache: str = _option("on", "image-file sets: decode every image once into a memory-mapped uint8 cache "
                                      "(short side 256) so later epochs never decode JPEGs again", group="data",
                                choices=("on", "off"))
    decode_cache_dir: str = _option("", "where the decode cache lives", group="data", kind="execution",
                                    shown="DATA_ROOT/.cskd-cache")
    model: str = _option("small", "the network", group="model")
    width: int = _option(0, "channel width of the first stage of the 32-px and 8-px models (0 = the model's own)",
                         group="model")
    method: str = _option("cskd", "the training objective", group="method")
    temperature: float = _option(4.0, "T in Eq. (1)", group="method", alias="-T")
    lambda_cls: float = _option(1.0, "λ_cls in Eq. (1)", group="method")
    # train: the partner forward in BatchNorm train mode, as the authors' code does
    partner_bn: str = _option("train", "BatchNorm mode of the no-grad partner forward (the authors': train)",
                              group="method", choices=PARTNER_BN)
    allow_self_pair: bool = _option(False, "let the partner be the anchor itself (the authors' sampler)",
                                    group="method")
    pairing: str = _option("paper", "paper: a separate no-grad partner batch; in-batch: B/2 same-class pairs per "
                                    "batch whose targets come from the same forward (no extra forward; beyond the "
                                    "paper)", group="method", choices=PAIRINGS,
                           sweep="pairing of the cskd runs (the other methods keep the paper's)")
    # Baselines' hyper-parameters: the one place their defaults live (cskd/method/baselines.py cites
    # each method's paper; README, "Reproducing the paper", says where each value comes from).
    ls_epsilon: float = _option(0.1, "label_smoothing: ε (Szegedy et al. 2016)", group="baselines")
    me_beta: float = _option(0.1, "max_entropy: weight β of the entropy bonus (Pereyra et al. 2017)",
                             group="baselines")
    mixup_alpha: float = _option(1.0, "mixup, mixup_cskd: Beta(α, α) (Zhang et al. 2018, CIFAR)", group="baselines")
    teacher: str = _option("", f"{', '.join(KD_METHODS)}: run folder of the teacher (its config rebuilds the model)",
                           group="baselines", path=True, shown="none", sweep=True)
    kd_alpha: float = _option(0.9, f"{', '.join(KD_METHODS)}: weight of the distillation term; 1 - α on "
                                   f"cross-entropy (Hinton et al. 2015)", group="baselines")
    lambda_e: float = _option(1.0, "cskd_e: weight λ_E of the clean-vs-augmented consistency term (§3.4)",
                              group="baselines")
    ddgsd_lambda_kl: float = _option(1.0, "ddgsd: weight of the two views' mutual KL (Xu & Liu 2019)",
                                     group="baselines")
    ddgsd_lambda_mmd: float = _option(5e-4, "ddgsd: weight of the MMD between the two views' features",
                                      group="baselines")
    ddgsd_temperature: float = _option(1.0, "ddgsd: temperature", group="baselines")
    byot_alpha: float = _option(0.3, "byot: weight of the deepest classifier's soft targets (Zhang et al. 2019)",
                                group="baselines")
    byot_beta: float = _option(0.03, "byot: weight of the feature hint", group="baselines")
    byot_temperature: float = _option(3.0, "byot: temperature", group="baselines")
    epochs: int = _option(30, "epochs; lr /10 at each of --lr-milestones", group="optimisation",
                          sweep="epochs of every run (a shorter trial)")
    batch_size: int = _option(64, "anchors per step; CS-KD adds as many partners", group="optimisation")
    lr: float = _option(0.1, "initial learning rate", group="optimisation")
    momentum: float = _option(0.9, "SGD momentum", group="optimisation")
    weight_decay: float = _option(1e-4, "SGD weight decay", group="optimisation")
    lr_milestones: tuple[float, ...] = _option((0.5, 0.75), "fractions of --epochs after which the lr is divided by "
                                               "10 (0.5 0.75 are the paper's epochs 100 and 150 of 200; the imagenet "
                                               "presets use 1/3 and 2/3)", group="optimisation", metavar="F")
    val_fraction: float = _option(0.1, "stratified validation hold-out of the training data, to pick the best epoch",
                                  group="data", sweep=True)
    # fixes the train/val split: every run on a data set sees the same samples
    split_seed: int = _option(0, "seed of the validation split", group="data", sweep=True)
    select_on: str = _option("val", "pick the best epoch on val or test (the authors' protocol, optimistic)",
                             group="data", choices=SELECT_ON, sweep=True)
    # "authors": the authors' protocol at once (see PROTOCOL_AUTHORS); "clean": held-out validation
    protocol: str = _option("clean", "clean: hold out a validation split and select on it; authors: the authors' "
                                     "experiment (full training set, best TEST epoch, lr drops after epochs 101 and "
                                     "151, self-pairs allowed, their normalisation, AdaCos evaluated on plain "
                                     "cosines)", group="data", choices=PROTOCOLS, sweep=True)
    train_per_class: int = _option(0, "train on N images per class (a seeded, stratified subset; 0 = all)",
                                   group="data", sweep=True)
    sync_bn: bool = _option(False, "SyncBatchNorm across torchrun's processes (CUDA only; off: per-process "
                                   "statistics)", group="run")
    seed: int = _option(0, "seed of initialisation, pair sampling and augmentation", group="run", kind="seed")
    # changes results: bf16 and TF32 round differently from fp32 (see cskd.training.device)
    precision: str = _option("auto", "fp32: float32 throughout, TF32 off (the authors' arithmetic); tf32: TF32 "
                                     "matmuls and convolutions (CUDA, Ampere or newer); bf16: bf16 autocast (CUDA, or "
                                     "a CPU with AMX/AVX512-BF16); auto: bf16 on a CUDA GPU that supports it, fp32 "
                                     "elsewhere; under --protocol authors fp32 unless given", group="run",
                             choices=PRECISIONS, sweep=True)
    device: str = _option("auto", "auto: CUDA when available", group="run", kind="execution", choices=DEVICES,
                          sweep=True)
    workers: int = _option(2, "DataLoader workers for image-file data sets", group="data", kind="execution")
    loader: str = _option("auto", "auto: images on the training device when the data set is in memory; host: "
                                  "DataLoader workers with per-sample transforms", group="data", kind="execution",
                          choices=LOADERS)
    compile: bool = _option(False, "torch.compile the model (the last, smaller batch of an epoch compiles a second "
                                   "graph)", group="run", kind="execution")
    channels_last: bool | None = _option(None, "channels_last memory format", group="run", kind="execution",
                                         shown="on CUDA only")
    # changes results on the CPU (reductions split over threads round differently: cskd.training.machine)
    threads: int = _option(0, "CPU threads for torch ops (0 = torch's own choice: one per core; the count used is "
                              "recorded); on the CPU the count changes the results, so give it for numbers that "
                              "reproduce", group="run", sweep=True)
    log_interval: int = _option(20, "steps between progress updates (one host sync each)", group="run",
                                kind="execution")
    preset: str = _option("", "the paper's settings for a data set/model (every field can be overridden by its "
                              "option)", group="run", kind="naming", shown="none")
    out: str = _option("", "run folder", group="run", kind="naming", path=True,
                       shown="{runs}/{run_name}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        d["mixed_roots"] = list(self.mixed_roots)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """A config from a dict of (some of) its fields; absent fields take today's defaults. For
        options of a new run only: a SAVED config goes through `from_record`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"config has unknown fields {unknown}; it was written by another version of cskd")
        d = dict(d)
        for key in ("lr_milestones", "mixed_roots"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    @classmethod
    def from_record(cls, d: dict) -> TrainConfig:
        """The config a saved record describes (its file's reader checked the format version): it must
        name every field; anything else is a UserError for the caller to prefix with the file's name."""
        if not isinstance(d, dict):
            raise UserError("its config is not a JSON object")
        missing = sorted({f.name for f in dataclasses.fields(cls)} - set(d))
        if missing:
            raise UserError(f"it lacks the fields {', '.join(missing)} that a saved config always holds; "
                            f"it was damaged or written by another program")
        return cls.from_dict(d)


def fields_of_kind(*kinds: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("kind", "experiment") in kinds)


# Options a resumed run (or a re-run sweep) may change: where and how fast it runs, not what it computes.
RESUME_MAY_CHANGE = fields_of_kind("execution", "naming")
# Config keys that do not distinguish experiments: runs differing only there are repeats (seed groups).
NOT_EXPERIMENT = fields_of_kind("execution", "naming", "seed")


# The paper's settings (§3.1): SGD 0.9 / 1e-4 / lr 0.1, /10 at 50 % and 75 % of 200 epochs,
# batch 128 for CIFAR-100 and TinyImageNet, 32 for the fine-grained sets; ImageNet 90 epochs, 256.
IMAGENET_SCHEDULE = dict(lr_milestones=(1 / 3, 2 / 3))
PRESETS: dict[str, dict] = {
    # One CPU thread: the model is too small to gain from two, and one never stalls on a busy machine.
    "digits-small": dict(dataset="digits", model="small", epochs=30, batch_size=64, threads=1),
    "cifar100-preact18": dict(dataset="cifar100", model="preact_resnet18", epochs=200, batch_size=128),
    "cifar100-densenet121": dict(dataset="cifar100", model="densenet121_cifar", epochs=200, batch_size=128),
    "tinyimagenet-preact18": dict(dataset="tinyimagenet", model="preact_resnet18", epochs=200, batch_size=128),
    "tinyimagenet-densenet121": dict(dataset="tinyimagenet", model="densenet121_cifar", epochs=200, batch_size=128),
    "cub200-resnet18": dict(dataset="cub200", model="resnet18", epochs=200, batch_size=32),
    "dogs-resnet18": dict(dataset="dogs", model="resnet18", epochs=200, batch_size=32),
    "mit67-resnet18": dict(dataset="mit67", model="resnet18", epochs=200, batch_size=32),
    "cub200-densenet121": dict(dataset="cub200", model="densenet121", epochs=200, batch_size=32),
    "dogs-densenet121": dict(dataset="dogs", model="densenet121", epochs=200, batch_size=32),
    "mit67-densenet121": dict(dataset="mit67", model="densenet121", epochs=200, batch_size=32),
    # Table 4's KD pairing: a ResNet-10 student (kd / kd_cskd with --teacher a densenet121 run); the
    # 32-px sets use the authors' 32-px ResNet-10.
    "cifar100-resnet10": dict(dataset="cifar100", model="resnet10_cifar", epochs=200, batch_size=128),
    "tinyimagenet-resnet10": dict(dataset="tinyimagenet", model="resnet10_cifar", epochs=200, batch_size=128),
    "cub200-resnet10": dict(dataset="cub200", model="resnet10", epochs=200, batch_size=32),
    "dogs-resnet10": dict(dataset="dogs", model="resnet10", epochs=200, batch_size=32),
    "mit67-resnet10": dict(dataset="mit67", model="resnet10", epochs=200, batch_size=32),
    # Figure 4: the mixed CUB-200 + Dogs + MIT67 set (give --mixed-roots), 30 images per fine label.
    "mixed-resnet18": dict(dataset="mixed", model="resnet18", epochs=200, batch_size=32),
    # ImageNet: the paper gives 90 epochs and batch 256 but no schedule; lr /10 after epochs 30 and 60
    # is the standard ResNet recipe (torchvision's references use it too).
    "imagenet-resnet50": dict(dataset="imagenet", model="resnet50", epochs=90, batch_size=256, **IMAGENET_SCHEDULE),
    "imagenet-resnet101": dict(dataset="imagenet", model="resnet101", epochs=90, batch_size=256, **IMAGENET_SCHEDULE),
    "imagenet-resnext101": dict(dataset="imagenet", model="resnext101_32x4d", epochs=90, batch_size=256,
                                **IMAGENET_SCHEDULE),
}


# --protocol authors fixes these fields (the rest of that protocol follows from the field itself:
# the authors' normalisation in cskd.data.sets, their lr drop epochs in cskd.training.epoch.lr_at, AdaCos
# evaluated on plain cosines in cskd.training.run_model).
PROTOCOL_AUTHORS = {"val_fraction": 0.0, "select_on": "test", "allow_self_pair": True}
# ... and gives these fields another default (an explicit option still sets them): fp32 is the
# authors' arithmetic (their train.py has no autocast).
PROTOCOL_AUTHORS_DEFAULTS = {"precision": "fp32"}


def resolve(overrides: dict, preset: str | None = None) -> TrainConfig:
    """Defaults <- preset <- overrides (keys with value None are ignored), then the protocol's
    fixed fields, then validated. An explicit option that contradicts --protocol is refused."""
    values: dict = {}
    if preset:
        values.update(choose("preset", preset, PRESETS))
        values["preset"] = preset
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    if values.get("protocol") == "authors":
        for key, fixed in PROTOCOL_AUTHORS.items():
            if key in given and given[key] != fixed:
                flag = "--" + key.replace("_", "-")
                raise UserError(f"{flag} {given[key]} contradicts --protocol authors, which means {flag} {fixed}; "
                                f"drop one of them")
            values[key] = fixed
        for key, default in PROTOCOL_AUTHORS_DEFAULTS.items():
            values.setdefault(key, default)
    cfg = TrainConfig.from_dict(values)
    validate(cfg)
    # Options given for nothing: refused for a new run, but not in validate(), because run folders
    # written before this check (sweeps passed --teacher to every method) must stay readable.
    if cfg.teacher and cfg.method not in KD_METHODS:
        raise UserError(f"--teacher applies to --method {' and '.join(KD_METHODS)} only; got --method {cfg.method}")
    if cfg.mixed_roots and cfg.dataset != "mixed":
        raise UserError(f"--mixed-roots applies to --dataset mixed only; got --dataset {cfg.dataset}")
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Raise UserError naming the first bad field (data set/model names are checked where built)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"--{f.name.replace('_', '-')} must be a finite number; got {value}")
    for name in ("seed", "split_seed"):
        if not 0 <= getattr(cfg, name) < 2**32:  # what numpy's and scikit-learn's seeds accept
            raise UserError(f"--{name.replace('_', '-')} must be in [0, 2^32 - 1]; got {getattr(cfg, name)}")
    for name, most in (("width", 1024), ("threads", 1024), ("workers", 256)):
        if getattr(cfg, name) > most:
            raise UserError(f"--{name} must be at most {most}; got {getattr(cfg, name)}")
    choose("method", cfg.method, {m: None for m in METHODS})
    choose("--select-on value", cfg.select_on, {s: None for s in SELECT_ON})
    choose("--precision value", cfg.precision, {p: None for p in PRECISIONS})
    choose("--partner-bn value", cfg.partner_bn, {p: None for p in PARTNER_BN})
    choose("--device value", cfg.device, {d: None for d in DEVICES})
    choose("--pairing value", cfg.pairing, {p: None for p in PAIRINGS})
    choose("--loader value", cfg.loader, {p: None for p in LOADERS})
    choose("--decode-cache value", cfg.decode_cache, {"on": None, "off": None})
    choose("--protocol value", cfg.protocol, {p: None for p in PROTOCOLS})
    if cfg.train_per_class < 0:
        raise UserError(f"--train-per-class must be >= 0 (0 = all training images); got {cfg.train_per_class}")
    if not (math.isfinite(cfg.temperature) and cfg.temperature > 0):
        raise UserError(f"--temperature must be > 0; got {cfg.temperature}")
    if not (math.isfinite(cfg.lambda_cls) and cfg.lambda_cls >= 0):
        raise UserError(f"--lambda-cls must be >= 0; got {cfg.lambda_cls}")
    for name in ("epochs", "batch_size", "log_interval"):
        value = getattr(cfg, name)
        if value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer; got {value}")
    if not (cfg.lr > 0):
        raise UserError(f"--lr must be > 0; got {cfg.lr}")
    if not (0 <= cfg.momentum < 1):
        raise UserError(f"--momentum must be in [0, 1); got {cfg.momentum}")
    m = cfg.lr_milestones
    if not m or not all(0 < f <= 1 for f in m) or any(a >= b for a, b in zip(m, m[1:])):
        raise UserError(f"--lr-milestones must be increasing fractions of --epochs in (0, 1], e.g. 0.5 0.75; "
                        f"got {' '.join(map(str, m)) or 'nothing'}")
    if not (cfg.weight_decay >= 0):
        raise UserError(f"--weight-decay must be >= 0; got {cfg.weight_decay}")
    if not (0 < cfg.val_fraction < 1) and not (cfg.val_fraction == 0 and cfg.select_on == "test"):
        raise UserError(
            f"--val-fraction must be in (0, 1); got {cfg.val_fraction} (0 is allowed only with --select-on test)"
        )
    for name in ("ls_epsilon", "kd_alpha"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise UserError(f"--{name.replace('_', '-')} must be in [0, 1]; got {getattr(cfg, name)}")
    for name in ("me_beta", "mixup_alpha", "lambda_e", "ddgsd_lambda_kl", "ddgsd_lambda_mmd", "byot_alpha",
                 "byot_beta"):
        if not getattr(cfg, name) >= 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0; got {getattr(cfg, name)}")
    for name in ("ddgsd_temperature", "byot_temperature"):
        if not getattr(cfg, name) > 0:
            raise UserError(f"--{name.replace('_', '-')} must be > 0; got {getattr(cfg, name)}")
    if cfg.method in KD_METHODS and not cfg.teacher:
        raise UserError(f"--method {cfg.method} needs --teacher RUN (a finished run of the teacher model)")
    if cfg.mixed_per_class <= 0:
        raise UserError(f"--mixed-per-class must be a positive integer; got {cfg.mixed_per_class}")
    if cfg.width < 0 or cfg.workers < 0 or cfg.threads < 0:
        raise UserError("--width, --workers and --threads must be >= 0")
