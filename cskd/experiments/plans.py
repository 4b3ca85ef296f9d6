"""Which runs each of the paper's tables needs, and how long they would take on a GPU.

A plan is a list of `Item`s, one per run: its config and the table cells its metrics fill
(row, column, metric). Runs shared by several tables (CIFAR-100 cross-entropy with ResNet-18 sits
in Tables 1, 2, 3 and 6) have the same config, hence the same folder (cskd.runfolder.run_names), and
are trained once.

What the paper leaves open, and what the plan does about it:
- CS-KD's T and λ were "chosen from T in {1, 4}, λ in {1, 2, 3, 4}" per data set on validation,
  without saying which won: the plan uses T = 4, λ = 1 everywhere (Table 7's best cell for CIFAR-100
  is T = 4, λ = 1), Table 7 its own grid.
- Table 4's teacher is "DenseNet-121 trained by CS-KD": one teacher per data set (seed 0), trained
  before the students.
- Tables 5 and 7 print one value per cell: one seed each (3 for the others), unless --seeds says.
- Figure 4(c) has no numbers in the text: `fig4` plans CE and CS-KD on the mixed set of the
  prepared CUB-200, Dogs and MIT67 folders and reports ours alone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from cskd.config import PRESETS, USES_TEMPERATURE, TrainConfig, resolve
from cskd.data.catalog import DATASET_SPECS
from cskd.errors import UserError
from cskd.experiments.paper import DATASETS, TABLE7_LAMBDA, TABLE7_T, family_of, model_for
from cskd.method.registry import METHOD_SPECS

TABLES = ("table1", "table2", "table3", "table4", "table5", "table6", "table7", "fig4")
FAMILY_LABELS = {"resnet18": "ResNet-18", "densenet121": "DenseNet-121", "resnet10": "ResNet-10",
                 "resnet50": "ResNet-50", "resnet101": "ResNet-101", "resnext101_32x4d": "ResNeXt-101-32x4d"}
METRIC_LABELS = {"top1_error": "Top-1", "top5_error": "Top-5", "ece": "ECE", "recall_at_1": "R@1",
                 "hierarchical_accuracy": "hierarchical accuracy"}
# What each table trains: (model families, methods, metrics).
CONTENTS = {
    "table1": (("resnet18", "densenet121"), ("ce", "adacos", "virtual_softmax", "max_entropy", "label_smoothing",
                                             "cskd"), ("top1_error",)),
    "table2": (("resnet18",), ("ce", "ddgsd", "byot", "cskd"), ("top1_error",)),
    "table3": (("resnet18",), ("ce", "cskd", "mixup", "mixup_cskd"), ("top1_error",)),
    "table4": (("resnet10",), ("ce", "cskd", "kd", "kd_cskd"), ("top1_error",)),
    "table5": (("resnet50", "resnet101", "resnext101_32x4d"), ("ce", "cskd"), ("top1_error",)),
    "table6": (("resnet18",), ("ce", "adacos", "virtual_softmax", "max_entropy", "label_smoothing", "cskd", "cskd_e"),
               ("top5_error", "ece", "recall_at_1")),
    "table7": (("resnet18",), ("cskd",), ("top1_error",)),
    "fig4": (("resnet18",), ("ce", "cskd"), ("top1_error", "hierarchical_accuracy")),
}
ONE_SEED = ("table5", "table7")
MIXED_PARTS = ("cub200", "dogs", "mit67")  # Figure 4's mixed set, one coarse group each


@dataclass
class Item:
    cfg: TrainConfig
    cells: list = field(default_factory=list)  # (row, column, metric) this run fills
    teacher: bool = False  # Table 4: students distil from this run, so it is trained first


def preset_for(dataset: str, model: str) -> str:
    """The preset training `model` on `dataset` (the paper's §3.1 settings)."""
    for name, fields in PRESETS.items():
        if fields.get("dataset") == dataset and fields.get("model") == model:
            return name
    raise UserError(f"no preset trains {model} on {dataset}")


def plan(table: str, *, datasets=None, seeds=None, protocol: str = "authors", scale: str = "full",
         runs_root: str, data_root: str = "data", epochs: int | None = None,
         precision: str | None = None) -> list[Item]:
    """The runs `table` needs (teachers first), deduplicated by run folder; `precision` None: the
    protocol's default (fp32 under the authors' protocol, cskd.config). `scale` "smoke" swaps
    every data set for digits, every model for the small CNN and trains 2 epochs: the same path,
    minutes on a CPU, numbers that mean nothing."""
    from pathlib import Path

    from cskd.runfolder.run_names import run_name

    if table not in TABLES:
        raise UserError(f"unknown table {table!r}; choose one of: {', '.join(TABLES)}")
    families, methods, metrics = CONTENTS[table]
    columns = ("imagenet",) if table == "table5" else ("mixed",) if table == "fig4" else \
        ("cifar100",) if table == "table7" else DATASETS
    if datasets:
        unknown = sorted(set(datasets) - set(columns))
        if unknown:
            raise UserError(f"--datasets {' '.join(unknown)}: {table} has the data sets {', '.join(columns)}")
        columns = tuple(d for d in columns if d in datasets)
    seeds = list(seeds) if seeds else [0] if table in ONE_SEED else [0, 1, 2]
    if len(set(seeds)) < len(seeds):  # a seed twice would count one run twice in mean ± std (n)
        raise UserError(f"--seeds {' '.join(map(str, seeds))}: a seed is repeated; give each seed once")
    items: dict[str, Item] = {}

    def add(dataset, family, method, seed, cell, **extra) -> Item:
        model = model_for(family, dataset) if dataset != "mixed" else family
        overrides = {"method": method, "seed": seed, "protocol": protocol, "data_root": data_root,
                     "precision": precision, **extra}
        if dataset == "mixed":
            overrides.update(dataset="mixed", mixed_roots=[str(Path(data_root) / d) for d in MIXED_PARTS])
            preset = "mixed-resnet18"
        else:
            preset = preset_for(dataset, model)
        if scale == "smoke":
            overrides.update(dataset="digits", model="small", epochs=2, mixed_roots=[], batch_size=64, threads=1)
            preset = None
        elif epochs is not None:
            overrides["epochs"] = epochs
        cfg = resolve(overrides, preset)
        cfg.out = str(Path(runs_root) / run_name(cfg))
        item = items.setdefault(cfg.out, Item(cfg))
        if cell is not None:
            item.cells.append(cell)
        return item

    for dataset in columns:
        for family in families:
            for method in methods:
                grid = [(t, lam) for t in TABLE7_T for lam in TABLE7_LAMBDA] if table == "table7" else \
                    [(4.0, 1.0)] if method in USES_TEMPERATURE else [(None, None)]
                for seed in seeds:
                    for t, lam in grid:
                        extra = {"temperature": t, "lambda_cls": lam}
                        if METHOD_SPECS[method].needs_teacher:
                            teacher = add(dataset, "densenet121", "cskd", 0, None, temperature=4.0, lambda_cls=1.0)
                            teacher.teacher = True
                            extra["teacher"] = teacher.cfg.out
                        for metric in metrics:
                            cell = (_row_label(table, family, method, t), _column_label(table, dataset, metric, lam),
                                    metric)
                            add(dataset, family, method, seed, cell, **extra)
    return sorted(items.values(), key=lambda item: not item.teacher)  # teachers first


def row_order(table: str) -> list[str]:
    """The table's row labels in the paper's order."""
    families, methods, _ = CONTENTS[table]
    if table == "table7":
        return [f"T={t:g}" for t in TABLE7_T]
    return list(dict.fromkeys(_row_label(table, f, m, None) for f in families for m in methods))


def _row_label(table: str, family: str, method: str, t) -> str:
    if table == "table7":
        return f"T={t:g}"
    if table in ("table1", "table5"):  # several architectures, each with its methods: one row per pair
        return f"{FAMILY_LABELS[family]} {METHOD_SPECS[method].label}"
    return METHOD_SPECS[method].label


def _column_label(table: str, dataset: str, metric: str, lam) -> str:
    if table == "table7":
        return f"λ={lam:g}"
    if table == "table5":
        return "top-1 error"
    if table == "fig4":
        return METRIC_LABELS[metric]
    return dataset if table != "table6" else f"{METRIC_LABELS[metric]} {dataset}"


def paper_cell_key(cell) -> tuple[str, str, str]:
    """(row, column, metric) of a cskd.experiments.paper Cell, in the labels `plan` gives our cells."""
    return (_row_label(cell.table, family_of(cell.model), cell.method, cell.T),
            _column_label(cell.table, cell.dataset, cell.metric, cell.lam), cell.metric)


@functools.cache
def flops_per_image(model: str, num_classes: int, size: int) -> float:
    """FLOPs of one training image through `model` (forward and backward), counted by PyTorch's
    FlopCounterMode on the meta device (shapes only, no computation)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cskd.models import build_model

    with torch.device("meta"):
        net = build_model(model, num_classes=num_classes)
        x = torch.empty(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        net(x).sum().backward()
    return float(counter.get_total_flops())


def run_sizes(cfg: TrainConfig) -> tuple[int, int, int]:
    """(training images per epoch, test images, classes) of a run's data set, from its spec
    (cskd.data.catalog); the held-out validation split is taken from the training images. The mixed
    set is Figure 4's: `mixed_per_class` training images of every class of MIXED_PARTS, their test sets."""
    if cfg.dataset == "mixed":
        parts = [DATASET_SPECS[d] for d in MIXED_PARTS]
        classes = sum(p.classes for p in parts)
        return classes * cfg.mixed_per_class, sum(p.test for p in parts), classes
    spec = DATASET_SPECS[cfg.dataset]
    if spec.train is None:
        raise UserError(f"data set {cfg.dataset!r} has no fixed size; no GPU-hour estimate")
    return spec.train, spec.test, spec.classes


# Assumed sustained training throughput of one data-centre GPU (A100/H100 class) in TFLOP/s, per
# --precision, for the --dry-run estimate (`--tflops` replaces it). ASSUMPTIONS, not measurements: bf16
# 50; fp32 15 (no tensor cores: under the A100's 19.5 TFLOP/s fp32 peak); tf32 35 (tensor cores at
# half the bf16 rate, as the peaks are). "auto" trains bf16 on such a GPU.
ASSUMED_TFLOPS = {"bf16": 50.0, "tf32": 35.0, "fp32": 15.0}
DEFAULT_TFLOPS = ASSUMED_TFLOPS["bf16"]


def assumed_tflops(precision: str) -> float:
    """ASSUMED_TFLOPS of a --precision ("auto" is bf16 on a GPU that supports it)."""
    return ASSUMED_TFLOPS["bf16" if precision == "auto" else precision]


def gpu_hours(items: list[Item], *, tflops: float) -> float:
    """Estimated GPU-hours of `items` at a sustained `tflops` TFLOP/s: training FLOPs from
    flops_per_image x images x epochs x the method's relative_cost, plus one forward over the validation/test split
    per epoch. An estimate from counted FLOPs and an ASSUMED throughput, not a measurement."""
    from cskd.models import input_size

    total = 0.0
    for item in items:
        cfg = item.cfg
        train, test, classes = run_sizes(cfg)
        flops = flops_per_image(cfg.model, classes, input_size(cfg.model))
        per_epoch = flops * (train * METHOD_SPECS[cfg.method].relative_cost + test / 3)
        total += per_epoch * cfg.epochs
    return total / (tflops * 1e12) / 3600
