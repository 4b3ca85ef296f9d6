"""`cskd reproduce`: the plan of every table, its GPU-hour estimate, and the smoke-scale path that
trains, measures and writes our numbers beside the paper's."""

import json

import pytest
from conftest import cli

from cskd.experiments.paper import cells as paper_cells
from cskd.experiments.plans import TABLES, gpu_hours, paper_cell_key, plan


@pytest.mark.parametrize("table, runs", [("table1", 180), ("table2", 60), ("table3", 60), ("table4", 65),
                                         ("table5", 6), ("table6", 105), ("table7", 48), ("fig4", 6)])
def test_every_table_plans_its_runs_and_every_paper_cell_has_a_place(table, runs):
    items = plan(table, runs_root="r")
    assert len(items) == runs  # 5 data sets x models x methods x 3 seeds (1 seed for tables 5 and 7), deduplicated
    ours = {cell for item in items for cell in item.cells}
    for c in paper_cells(table=table):
        assert paper_cell_key(c) in ours, c
    assert all(item.cfg.protocol == "authors" and item.cfg.select_on == "test" for item in items)
    assert gpu_hours(items, tflops=50) > 0


def test_table4_trains_each_teacher_first_and_its_students_distil_from_it():
    items = plan("table4", runs_root="r", datasets=["cifar100", "cub200"])
    teachers = [i for i in items if i.teacher]
    assert [t.cfg.model for t in teachers] == ["densenet121_cifar", "densenet121"]
    assert items[: len(teachers)] == teachers and all(t.cfg.method == "cskd" for t in teachers)
    students = [i for i in items if i.cfg.method in ("kd", "kd_cskd")]
    assert {s.cfg.teacher for s in students} == {t.cfg.out for t in teachers}
    assert {s.cfg.model for s in students} == {"resnet10_cifar", "resnet10"}


def test_the_plan_refuses_what_a_table_does_not_have(tmp_path):
    from cskd.errors import UserError

    with pytest.raises(UserError, match="table5 has the data sets imagenet"):
        plan("table5", runs_root="r", datasets=["cifar100"])
    with pytest.raises(UserError, match="a seed is repeated"):  # one run would count twice in its cell's n
        plan("table2", runs_root="r", seeds=[0, 0])
    assert set(TABLES) == {f"table{i}" for i in range(1, 8)} | {"fig4"}


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path, capsys):
    assert cli("reproduce", "table1", "--dry-run", "--runs", tmp_path / "runs") == 0
    out = capsys.readouterr().out
    assert "180 runs, 0 finished, 180 to train" in out and "GPU-hours at an assumed sustained 15 TFLOP/s" in out
    assert "precision fp32;" in out  # the authors' arithmetic, and the throughput assumed for it
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_smoke_scale_writes_the_paper_beside_ours_and_continues_where_it_stopped(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ("reproduce", "table1", "--scale", "smoke", "--runs", runs, "--seeds", 0, 1)
    assert cli(*args) == 0
    md = (runs / "tables" / "table1-smoke.md").read_text()
    assert "SMOKE TEST on digits, not comparable to the paper" in md and "protocol authors" in md
    row = next(line for line in md.splitlines() if line.startswith("| ResNet-18 Cross-entropy |"))
    assert "24.71 ± 0.24" in row and "(n=2)" in row  # the paper's CIFAR-100 cross-entropy cell beside ours
    saved = json.loads((runs / "tables" / "table1-smoke.json").read_text())
    assert saved["scale"] == "smoke" and len(saved["ours"]) == 60
    assert all(p.name.startswith("digits-") for p in runs.iterdir() if p.name != "tables")  # never a real run
    capsys.readouterr()
    assert cli(*args) == 0  # everything finished: nothing is trained again
    assert "12 runs, 12 finished, 0 to train" in capsys.readouterr().out


def test_tables_of_a_subset_of_data_sets_and_a_tables_folder_with_a_users_file(tmp_path):
    from cskd.errors import UserError
    from cskd.experiments.reproduce import write_tables

    items = plan("table2", runs_root="r", datasets=["cifar100"], seeds=[0])
    ours = {("Cross-entropy", "cifar100", "top1_error"): (25.0, 0.0, 1)}
    paths = write_tables("table2", items, ours, tmp_path / "tables", protocol="authors", scale="full")
    md = paths[0].read_text()
    assert "cifar100 ours" in md and "tinyimagenet" not in md and "24.71 ± 0.24" in md and "25.00 (n=1)" in md
    assert "| DDGSD | — |" in md  # not run yet: missing, not zero
    write_tables("table2", items, ours, tmp_path / "tables", protocol="authors", scale="full")  # its own: replaced
    (tmp_path / "tables" / "table2.csv").write_text("my edits")
    with pytest.raises(UserError, match="table2.csv was not written by cskd"):
        write_tables("table2", items, ours, tmp_path / "tables", protocol="authors", scale="full")
    assert (tmp_path / "tables" / "table2.csv").read_text() == "my edits"


def test_a_tables_folder_that_cannot_take_the_tables_is_refused_before_any_training(tmp_path):
    from cskd.errors import UserError
    from cskd.experiments.reproduce import reproduce

    runs = tmp_path / "runs"
    (tmp_path / "file").write_text("mine")
    with pytest.raises(UserError, match="is not a folder"):
        reproduce("table5", scale="smoke", runs_root=str(runs), out=str(tmp_path / "file"))
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "table5-smoke.md").write_text("my notes")
    with pytest.raises(UserError, match="table5-smoke.md was not written by cskd"):
        reproduce("table5", scale="smoke", runs_root=str(runs), out=str(tmp_path / "tables"))
    assert not runs.exists()  # nothing was trained
    assert (tmp_path / "tables" / "table5-smoke.md").read_text() == "my notes"
