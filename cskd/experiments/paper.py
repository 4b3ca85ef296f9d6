"""The paper's numbers (Tables 1-7 of Yun et al., CVPR 2020), transcribed as data.

Every value is a PERCENT exactly as printed: top-1/top-5 error and ECE (lower is better; ECE 73.76
means an expected calibration error of 0.7376) and Recall@1 (higher is better). Tables 1-4 and 6 give
the mean ± standard deviation over three runs with different seeds; Table 5 (ImageNet) and Table 7
(hyper-parameter sweep) give one value and no standard deviation (`std is None`).

Names are cskd's own: methods (`ce`, `cskd`, `adacos`, ...), data sets (`cifar100`, `tinyimagenet`,
`cub200`, `dogs`, `mit67`, `imagenet`) and models. The paper's "ResNet-18" is our `preact_resnet18` on
the 32-px sets (CIFAR-100, TinyImageNet) and `resnet18` on the 224-px sets; likewise DenseNet-121 is
`densenet121_cifar` / `densenet121` and ResNet-10 `resnet10_cifar` / `resnet10`. Table 1's row label
"DeseNet-121" is a typo for DenseNet-121. The relative reductions printed in parentheses in Tables 1-2
are derived from the cells and not stored.

Figure 4(c) (top-1 error of fine labels on the mixed CUB-200 + Dogs + MIT67 set) is a bar chart whose
values do not appear in the text, so it has no cells here; neither have Figures 1-3 and 5-10.

    >>> c = cell(table="table1", model="preact_resnet18", method="ce", dataset="cifar100")
    >>> c.metric, c.mean, c.std
    ('top1_error', 24.71, 0.24)
    >>> len(cells(table="table7"))
    48
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from cskd.data.catalog import DATASET_SPECS

DATASETS = ("cifar100", "tinyimagenet", "cub200", "dogs", "mit67")  # column order of Tables 1-4 and 6
# Trained at 32x32 px (the others at 224x224): the paper's 32-px architectures apply to them.
SMALL_DATASETS = frozenset(d for d in DATASETS if DATASET_SPECS[d].image_size == 32)

# One line per table: what it reports and on what.
TABLES = {
    "table1": "top-1 error (%), ResNet-18 and DenseNet-121, output regularisers vs CS-KD; mean ± std of 3 seeds",
    "table2": "top-1 error (%), ResNet-18, self-distillation methods (DDGSD, BYOT) vs CS-KD; mean ± std of 3 seeds",
    "table3": "top-1 error (%), ResNet-18, Mixup and Mixup + CS-KD; mean ± std of 3 seeds",
    "table4": "top-1 error (%), ResNet-10 student, KD from a DenseNet-121 teacher trained by CS-KD, and KD + CS-KD; "
              "mean ± std of 3 seeds",
    "table5": "top-1 error (%, 1-crop), ImageNet, 90 epochs, batch 256; one value per cell",
    "table6": "top-5 error, ECE (20 bins) and Recall@1 (%), ResNet-18, incl. CS-KD-E; mean ± std of 3 seeds",
    "table7": "top-1 error (%), CIFAR-100, PreAct ResNet-18, CS-KD over temperature T x loss weight lambda; one value",
}


@dataclass(frozen=True)
class Cell:
    """One number of the paper. `mean` and `std` are percents; `T` and `lam` (the loss weight λ_cls;
    `lambda` is a Python keyword) are set only in Table 7."""

    table: str
    metric: str
    model: str
    method: str
    dataset: str
    mean: float
    std: float | None
    T: float | None = None
    lam: float | None = None


# The paper's architectures at 32 px (the authors' CIFAR networks); at 224 px cskd's name is the family's.
SMALL_MODELS = {"resnet18": "preact_resnet18", "densenet121": "densenet121_cifar", "resnet10": "resnet10_cifar"}


def model_for(family: str, dataset: str) -> str:
    """cskd's model for the paper's architecture `family` on `dataset` (32-px variants on small images)."""
    return SMALL_MODELS[family] if dataset in SMALL_DATASETS else family


def family_of(model: str) -> str:
    """The paper's architecture of cskd's `model` (the inverse of model_for)."""
    return {small: family for family, small in SMALL_MODELS.items()}.get(model, model)


# Rows: method -> (mean, std) per data set, in DATASETS order.
_CE18 = ((24.71, 0.24), (43.53, 0.19), (46.00, 1.43), (36.29, 0.32), (44.75, 0.80))
_CSKD18 = ((21.99, 0.13), (41.62, 0.38), (33.28, 0.99), (30.85, 0.28), (40.45, 0.45))

_TABLE1 = {
    "resnet18": {
        "ce": _CE18,
        "adacos": ((23.71, 0.36), (42.61, 0.20), (35.47, 0.07), (32.66, 0.34), (42.66, 0.43)),
        "virtual_softmax": ((23.01, 0.42), (42.41, 0.20), (35.03, 0.51), (31.48, 0.16), (42.86, 0.71)),
        "max_entropy": ((22.72, 0.29), (41.77, 0.13), (39.86, 1.11), (32.41, 0.20), (43.36, 1.62)),
        "label_smoothing": ((22.69, 0.28), (43.09, 0.34), (42.99, 0.99), (35.30, 0.66), (44.40, 0.71)),
        "cskd": _CSKD18,
    },
    "densenet121": {
        "ce": ((22.23, 0.04), (39.22, 0.27), (42.30, 0.44), (33.39, 0.17), (41.79, 0.19)),
        "adacos": ((22.17, 0.24), (38.76, 0.23), (30.84, 0.38), (27.87, 0.65), (40.25, 0.68)),
        "virtual_softmax": ((23.66, 0.10), (41.58, 1.58), (33.85, 0.75), (30.55, 0.72), (43.66, 0.30)),
        "max_entropy": ((22.87, 0.45), (38.39, 0.33), (37.51, 0.71), (29.52, 0.74), (43.48, 1.30)),
        "label_smoothing": ((21.88, 0.45), (38.75, 0.18), (40.63, 0.24), (31.39, 0.46), (42.24, 1.23)),
        "cskd": ((21.69, 0.49), (37.96, 0.09), (30.83, 0.39), (27.81, 0.13), (40.02, 0.91)),
    },
}

_TABLE2 = {  # ResNet-18
    "ce": _CE18,
    "ddgsd": ((23.85, 1.57), (41.48, 0.12), (41.17, 1.28), (31.53, 0.54), (41.17, 2.46)),
    "byot": ((23.81, 0.11), (44.02, 0.57), (40.76, 0.39), (34.02, 0.14), (44.88, 0.46)),
    "cskd": _CSKD18,
}

_TABLE3 = {  # ResNet-18
    "ce": _CE18,
    "cskd": _CSKD18,
    "mixup": ((21.67, 0.34), (41.57, 0.38), (37.09, 0.27), (32.54, 0.04), (41.67, 1.05)),
    "mixup_cskd": ((20.40, 0.31), (40.71, 0.32), (30.71, 0.64), (29.93, 0.14), (39.65, 0.85)),
}

_TABLE4 = {  # ResNet-10 student; the KD teacher is a DenseNet-121 trained by CS-KD
    "ce": ((26.72, 0.33), (46.61, 0.22), (48.36, 0.61), (38.96, 0.40), (44.75, 0.62)),
    "cskd": ((25.80, 0.10), (44.67, 0.12), (39.12, 0.09), (34.07, 0.46), (41.54, 0.67)),
    "kd": ((25.84, 0.07), (43.31, 0.11), (39.32, 0.65), (34.23, 0.42), (41.47, 0.79)),
    "kd_cskd": ((25.58, 0.16), (42.82, 0.33), (34.47, 0.17), (32.59, 0.50), (40.27, 0.78)),
}

_TABLE5 = {  # ImageNet top-1 error: model -> (ce, cskd)
    "resnet50": (24.0, 23.6),
    "resnet101": (22.4, 22.0),
    "resnext101_32x4d": (21.6, 21.2),
}

_TABLE6 = {  # ResNet-18
    "top5_error": {
        "ce": ((6.91, 0.09), (22.21, 0.29), (22.30, 0.68), (11.80, 0.27), (19.25, 0.53)),
        "adacos": ((9.99, 0.20), (22.24, 0.11), (15.24, 0.66), (11.02, 0.22), (19.05, 2.33)),
        "virtual_softmax": ((8.54, 0.11), (24.15, 0.17), (13.16, 0.20), (8.64, 0.21), (19.10, 0.20)),
        "max_entropy": ((7.29, 0.12), (21.53, 0.50), (19.80, 1.21), (10.90, 0.31), (20.47, 0.90)),
        "label_smoothing": ((7.18, 0.08), (20.74, 0.31), (22.40, 0.85), (13.41, 0.40), (19.53, 0.75)),
        "cskd": ((5.69, 0.03), (19.21, 0.04), (13.07, 0.26), (8.55, 0.07), (17.46, 0.38)),
        "cskd_e": ((5.93, 0.06), (19.12, 0.34), (13.74, 0.91), (8.57, 0.13), (18.21, 0.45)),
    },
    "ece": {
        "ce": ((15.45, 0.33), (14.08, 0.76), (18.39, 0.76), (15.05, 0.35), (17.99, 0.72)),
        "adacos": ((73.76, 0.35), (55.09, 0.41), (63.39, 0.06), (65.38, 0.33), (54.00, 0.52)),
        "virtual_softmax": ((8.02, 0.55), (4.60, 0.67), (11.68, 0.66), (7.91, 0.38), (11.21, 1.00)),
        "max_entropy": ((56.41, 0.36), (42.68, 0.31), (50.52, 1.20), (51.53, 0.28), (42.41, 1.74)),
        "label_smoothing": ((13.20, 0.60), (2.67, 0.48), (15.70, 0.81), (11.60, 0.40), (8.79, 2.47)),
        "cskd": ((5.17, 0.40), (7.26, 0.93), (15.44, 0.92), (10.46, 1.08), (15.56, 0.29)),
        "cskd_e": ((4.69, 0.56), (3.79, 0.35), (8.75, 0.49), (4.70, 0.18), (8.06, 1.90)),
    },
    "recall_at_1": {
        "ce": ((61.38, 0.64), (30.59, 0.42), (33.92, 1.70), (47.51, 1.02), (31.42, 1.00)),
        "adacos": ((67.95, 0.42), (44.66, 0.52), (54.86, 0.24), (58.37, 0.43), (42.39, 1.91)),
        "virtual_softmax": ((68.35, 0.48), (44.69, 0.58), (55.56, 0.74), (59.71, 0.56), (44.20, 0.90)),
        "max_entropy": ((71.51, 0.29), (39.18, 0.79), (48.66, 2.10), (60.05, 0.45), (38.06, 3.32)),
        "label_smoothing": ((71.44, 0.03), (34.79, 0.67), (41.59, 0.94), (54.48, 0.68), (35.15, 1.54)),
        "cskd": ((71.15, 0.15), (47.15, 0.40), (59.06, 0.38), (62.67, 0.07), (46.74, 1.48)),
        "cskd_e": ((70.57, 0.57), (45.52, 0.35), (58.44, 1.09), (62.03, 0.30), (44.82, 1.22)),
    },
}

# Table 7: rows T, columns λ_cls.
TABLE7_T = (0.1, 0.5, 1.0, 4.0, 10.0, 20.0)
TABLE7_LAMBDA = (0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 10.0, 20.0)
_TABLE7 = (
    (25.16, 24.03, 23.91, 24.38, 24.05, 24.21, 24.39, 27.61),
    (24.14, 24.05, 24.15, 23.49, 23.78, 23.23, 23.90, 25.96),
    (24.15, 23.32, 22.80, 22.26, 22.87, 23.18, 24.35, 25.58),
    (22.87, 22.03, 21.66, 22.45, 22.68, 22.81, 32.25, 35.45),
    (22.68, 22.36, 21.98, 22.04, 21.95, 31.76, 31.80, 37.50),
    (22.96, 22.39, 22.03, 22.37, 22.00, 22.39, 30.23, 24.05),
)


def _rows(table: str, metric: str, family: str, rows: dict) -> list[Cell]:
    return [Cell(table, metric, model_for(family, d), method, d, mean, std)
            for method, values in rows.items() for d, (mean, std) in zip(DATASETS, values, strict=True)]


def _build() -> tuple[Cell, ...]:
    out = []
    for family, rows in _TABLE1.items():
        out += _rows("table1", "top1_error", family, rows)
    out += _rows("table2", "top1_error", "resnet18", _TABLE2)
    out += _rows("table3", "top1_error", "resnet18", _TABLE3)
    out += _rows("table4", "top1_error", "resnet10", _TABLE4)
    for model, (ce, cskd) in _TABLE5.items():
        out += [Cell("table5", "top1_error", model, "ce", "imagenet", ce, None),
                Cell("table5", "top1_error", model, "cskd", "imagenet", cskd, None)]
    for metric, rows in _TABLE6.items():
        out += _rows("table6", metric, "resnet18", rows)
    for T, row in zip(TABLE7_T, _TABLE7, strict=True):
        out += [Cell("table7", "top1_error", "preact_resnet18", "cskd", "cifar100", v, None, T, lam)
                for lam, v in zip(TABLE7_LAMBDA, row, strict=True)]
    return tuple(out)


PAPER: tuple[Cell, ...] = _build()


def cells(**where) -> tuple[Cell, ...]:
    """The cells whose fields equal every given keyword (any of Cell's field names), in table order,
    e.g. `cells(table="table6", metric="ece", dataset="cifar100")`."""
    unknown = set(where) - {f.name for f in fields(Cell)}
    if unknown:
        raise TypeError(f"unknown Cell field(s): {', '.join(sorted(unknown))}")
    return tuple(c for c in PAPER if all(getattr(c, k) == v for k, v in where.items()))


def cell(**where) -> Cell:
    """The one cell matching `where` (see `cells`); KeyError when none or several match."""
    found = cells(**where)
    if len(found) != 1:
        raise KeyError(f"{len(found)} paper cells match {where}")
    return found[0]
