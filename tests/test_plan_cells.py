"""Every table's plan puts each group of runs (one config over its seeds) in a cell of its own, and
the written table holds every number of the paper in the cell it belongs to (Table 5 once merged
the CE and CS-KD rows: the CE values were never printed and both methods' runs were averaged)."""

import csv
import io
from dataclasses import asdict

import pytest

from cskd.experiments.paper import cells as paper_cells
from cskd.experiments.plans import TABLES, paper_cell_key, plan
from cskd.experiments.reproduce import write_tables


def _group_key(item) -> tuple:
    """A run's config without its seed and folder: the runs of one group differ only in those."""
    fields = asdict(item.cfg)
    fields.pop("seed")
    fields.pop("out")
    return tuple(sorted((k, repr(v)) for k, v in fields.items()))


@pytest.mark.parametrize("table", TABLES)
def test_every_run_group_fills_its_own_cell_and_no_two_groups_share_one(table):
    items = plan(table, runs_root="r")
    groups: dict = {}
    for item in items:
        if item.cells:  # Table 4's teachers fill no cell
            groups.setdefault(_group_key(item), []).append(item)
    owner: dict = {}
    for key, runs in groups.items():
        cells = {tuple(c) for run in runs for c in run.cells}
        assert all({tuple(c) for c in run.cells} == cells for run in runs)  # seeds fill the same cells
        metrics = [c[2] for c in cells]
        assert len(metrics) == len(set(metrics)), cells  # one cell per metric, never two
        for cell in cells:
            assert owner.setdefault(cell, key) == key, f"{table}: two run groups share the cell {cell}"


@pytest.mark.parametrize("table", TABLES)
def test_every_paper_value_is_printed_in_its_own_cell(table, tmp_path):
    items = plan(table, runs_root="r", seeds=[0])
    (path,) = [p for p in write_tables(table, items, {}, tmp_path, protocol="authors", scale="full")
               if p.suffix == ".csv"]
    printed = {}
    for row in csv.DictReader(io.StringIO(path.read_text())):
        if row["paper_mean"] not in ("", "paper_mean"):  # one section per metric, each with its header
            printed[(row["row"], row["column"])] = float(row["paper_mean"])
    expected = paper_cells(table=table)
    for c in expected:
        r, col, _ = paper_cell_key(c)
        assert printed.get((r, col)) == c.mean, f"{table}: {c} is not printed in ({r}, {col})"
    assert len(printed) == len(expected)  # each in a cell of its own: none overwrote another


def test_table5_has_separate_cross_entropy_and_cskd_rows():
    keys = {paper_cell_key(c): c.mean for c in paper_cells(table="table5")}
    assert keys[("ResNet-50 Cross-entropy", "top-1 error", "top1_error")] == 24.0
    assert keys[("ResNet-50 CS-KD", "top-1 error", "top1_error")] == 23.6
    assert keys[("ResNet-101 Cross-entropy", "top-1 error", "top1_error")] == 22.4
    assert keys[("ResNeXt-101-32x4d Cross-entropy", "top-1 error", "top1_error")] == 21.6


@pytest.mark.slow
def test_smoke_table5_writes_separate_cross_entropy_and_cskd_cells(tmp_path):
    from conftest import cli

    assert cli("reproduce", "table5", "--scale", "smoke", "--runs", tmp_path / "runs") == 0
    md = (tmp_path / "runs" / "tables" / "table5-smoke.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ResNe")}
    for arch, ce, cskd in (("ResNet-50", "24.00", "23.60"), ("ResNet-101", "22.40", "22.00"),
                           ("ResNeXt-101-32x4d", "21.60", "21.20")):
        assert f"| {ce} |" in rows[f"{arch} Cross-entropy"] and f"| {cskd} |" in rows[f"{arch} CS-KD"]
        assert "(n=1)" in rows[f"{arch} Cross-entropy"] and "(n=1)" in rows[f"{arch} CS-KD"]  # never both averaged
