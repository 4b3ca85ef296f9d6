"""cskd.experiments.paper against the paper itself: an independent parser reads the table lines of the paper's text
(the full text when the shared folder is there, else the verbatim excerpt in tests/data) and every
transcribed cell must equal the parsed one, with nothing missing and nothing extra."""

import re
from collections import Counter
from pathlib import Path

import pytest

from cskd.experiments.paper import PAPER, TABLES, cell, cells
from cskd.models import MODELS

PAPER_TEXT = Path(__file__).resolve().parents[1].parent / "shared" / "paper" / "000_5feee24b6abaa3e8.txt"
EXCERPT = Path(__file__).parent / "data" / "paper_tables.txt"

# The paper's labels -> cskd's names (written here independently of cskd.experiments.paper).
METHODS = {"Cross-entropy": "ce", "AdaCos": "adacos", "Virtual-softmax": "virtual_softmax",
           "Maximum-entropy": "max_entropy", "Label-smoothing": "label_smoothing", "CS-KD (ours)": "cskd",
           "DDGSD": "ddgsd", "BYOT": "byot", "Mixup": "mixup", "Mixup + CS-KD (ours)": "mixup_cskd", "KD": "kd",
           "KD + CS-KD (ours)": "kd_cskd", "CS-KD-E (ours)": "cskd_e"}
DATASETS = {"CIFAR-100": "cifar100", "TinyImageNet": "tinyimagenet", "CUB-200-2011": "cub200",
            "Stanford Dogs": "dogs", "MIT67": "mit67"}
# architecture -> (model at 32 px: CIFAR-100 and TinyImageNet, model at 224 px); "DeseNet-121" is the paper's typo
ARCHS = {"ResNet-18": ("preact_resnet18", "resnet18"), "DeseNet-121": ("densenet121_cifar", "densenet121"),
         "ResNet-10": ("resnet10_cifar", "resnet10")}
IMAGENET_ARCHS = {"ResNet-50": "resnet50", "ResNet-101": "resnet101", "ResNeXt-101-32x4d": "resnext101_32x4d"}
MEASUREMENTS = {"Top-5 ↓": "top5_error", "ECE ↓": "ece", "R@1 ↑": "recall_at_1"}
# "24.71 \pm 0.24", "21.99\pm0.13 (-11.0%)": the relative reduction in parentheses is not a cell
MEAN_STD = re.compile(r"([0-9]+\.[0-9]+) ?\\pm ?([0-9]+\.[0-9]+)( \(-[0-9.]+%\))?")
CELLS_PER_TABLE = {"table1": 2 * 6 * 5, "table2": 4 * 5, "table3": 4 * 5, "table4": 4 * 5, "table5": 3 * 2,
                   "table6": 3 * 7 * 5, "table7": 6 * 8}


def table_blocks(text):
    """{'tableN': (header, rows, caption)}: runs of tab-separated lines, named by the caption after them."""
    lines, blocks, i = text.splitlines(), {}, 0
    while i < len(lines):
        if "\t" not in lines[i]:
            i += 1
            continue
        start = i
        while i < len(lines) and "\t" in lines[i]:
            i += 1
        caption = next(line for line in lines[i:] if line.strip())
        m = re.match(r"Table (\d)\. ", caption)
        assert m, f"table lines {start + 1}-{i} are not followed by a caption: {caption[:60]!r}"
        split = [line.split("\t") for line in lines[start:i]]
        blocks[f"table{m[1]}"] = (split[0], split[1:], caption)
    return blocks


def parse(text):
    """{(table, metric, model, method, dataset, T, lam): (mean, std)} for every cell of Tables 1-7."""
    out = {}

    def put(key, value):
        assert key not in out, f"cell parsed twice: {key}"
        out[key] = value

    for table, (header, rows, caption) in table_blocks(text).items():
        if table == "table7":  # rows T, columns λ; PreAct ResNet-18, CIFAR-100, CS-KD
            assert "PreAct ResNet-18 on CIFAR-100" in caption
            lambdas = [float(v) for v in header[1:]]
            for row in rows:
                for lam, v in zip(lambdas, row[1:], strict=True):
                    key = (table, "top1_error", "preact_resnet18", "cskd", "cifar100", float(row[0]), lam)
                    put(key, (float(v), None))
            continue
        if table == "table5":  # ImageNet: model, method, one top-1 value
            assert header == ["Model", "Method", "Top-1 (1-crop)"] and "ImageNet" in caption
            group = None
            for row in rows:
                group = row[0] or group
                assert re.fullmatch(r"[0-9]+\.[0-9]", row[2])
                put((table, "top1_error", IMAGENET_ARCHS[group], METHODS[row[1]], "imagenet", None, None),
                    (float(row[2]), None))
            continue
        grouped = header[0] in ("Model", "Measurement")  # a first column naming the model or the metric
        datasets = [DATASETS[h] for h in header[2 if grouped else 1:]]
        arch = re.search(r"\bof (ResNet-\d+)", caption)  # tables without a model column name it in the caption
        group = None
        for row in rows:
            if grouped:
                group, row = row[0] or group, row[1:]
            metric = MEASUREMENTS[group] if header[0] == "Measurement" else "top1_error"
            name = group if header[0] == "Model" else arch[1]
            for dataset, text_cell in zip(datasets, row[1:], strict=True):
                m = MEAN_STD.fullmatch(text_cell.strip())
                assert m, f"{table}: cannot read {text_cell!r}"
                model = ARCHS[name][0 if dataset in ("cifar100", "tinyimagenet") else 1]
                put((table, metric, model, METHODS[row[0]], dataset, None, None), (float(m[1]), float(m[2])))
    return out


def transcribed():
    return {(c.table, c.metric, c.model, c.method, c.dataset, c.T, c.lam): (c.mean, c.std) for c in PAPER}


SOURCES = [pytest.param(EXCERPT, id="excerpt"),
           pytest.param(PAPER_TEXT, id="paper",
                        marks=pytest.mark.skipif(not PAPER_TEXT.exists(), reason="../shared/paper is absent"))]


@pytest.mark.parametrize("source", SOURCES)
def test_every_transcribed_cell_equals_the_paper(source):
    parsed = parse(source.read_text(encoding="utf-8"))
    assert Counter(k[0] for k in parsed) == CELLS_PER_TABLE
    mine = transcribed()
    assert len(mine) == len(PAPER)  # no two cells share a key
    assert sorted(set(mine) - set(parsed), key=str) == []  # nothing extra
    assert sorted(set(parsed) - set(mine), key=str) == []  # nothing missing
    wrong = {k: (mine[k], parsed[k]) for k in parsed if mine[k] != parsed[k]}
    assert wrong == {}


@pytest.mark.skipif(not PAPER_TEXT.exists(), reason="../shared/paper is absent")
def test_the_excerpt_is_verbatim_lines_of_the_paper_in_order():
    paper = iter(PAPER_TEXT.read_text(encoding="utf-8").splitlines())
    for line in EXCERPT.read_text(encoding="utf-8").splitlines():
        assert any(line == p for p in paper), f"not in the paper (in this order): {line[:60]!r}"


def test_cell_counts_and_names():
    assert Counter(c.table for c in PAPER) == CELLS_PER_TABLE
    assert set(TABLES) == set(CELLS_PER_TABLE)
    assert {c.model for c in PAPER} <= set(MODELS)  # every paper model can be built
    assert {c.metric for c in PAPER} == {"top1_error", "top5_error", "ece", "recall_at_1"}
    assert {c.dataset for c in PAPER} == {*DATASETS.values(), "imagenet"}
    assert {c.method for c in PAPER} == set(METHODS.values())
    assert all((c.std is None) == (c.table in ("table5", "table7")) for c in PAPER)
    assert all((c.T is None) == (c.lam is None) == (c.table != "table7") for c in PAPER)


def test_spot_checks_written_by_hand():
    c = cell(table="table1", model="preact_resnet18", method="ce", dataset="cifar100")
    assert (c.metric, c.mean, c.std) == ("top1_error", 24.71, 0.24)
    assert cell(table="table1", model="densenet121", method="cskd", dataset="cub200").mean == 30.83
    ece = cell(table="table6", metric="ece", method="adacos", dataset="cifar100")
    assert (ece.model, ece.mean, ece.std) == ("preact_resnet18", 73.76, 0.35)
    assert cell(table="table7", T=4.0, lam=1.0).mean == 21.66
    assert cell(table="table7", T=20.0, lam=20.0).mean == 24.05
    assert cell(table="table5", model="resnext101_32x4d", method="cskd").mean == 21.2
    assert cell(table="table4", model="resnet10", method="kd_cskd", dataset="cub200").mean == 34.47
    assert cell(table="table4", model="resnet10_cifar", method="ce", dataset="cifar100").mean == 26.72
    assert cell(table="table6", metric="recall_at_1", method="cskd", dataset="tinyimagenet").mean == 47.15


def test_queries():
    assert len(cells(table="table6", metric="ece")) == 35
    assert len(cells(method="cskd", dataset="cifar100", model="preact_resnet18")) == 3 + 3 + 48  # T1-3, T6, T7
    assert cells(table="table9") == ()
    with pytest.raises(TypeError, match="unknown Cell field"):
        cells(lambda_=1.0)
    with pytest.raises(KeyError, match="0 paper cells"):
        cell(table="table9")
    with pytest.raises(KeyError, match="3 paper cells"):  # 224-px sets only
        cell(table="table1", model="densenet121", method="ce")
