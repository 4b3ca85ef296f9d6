"""`cskd reproduce`: the plan of every table, its GPU-hour estimate, and the smoke-scale path that
trains, measures and writes our numbers beside the paper's."""

import json
import re

import pytest
from conftest import cli

from cskd.experiments import plans
from cskd.experiments.paper import cells as paper_cells
from cskd.experiments.plans import TABLES, gpu_hours, paper_cell_key, plan

FAKE_FLOPS = 3e9  # per training image: counting the real ones takes seconds per model (one slow test does)
HOURS = re.compile(r"estimated GPU time of the runs to train: (?P<hours>[0-9.]+) GPU-hours at an assumed "
                   r"sustained (?P<tflops>[0-9.]+) TFLOP/s")


REAL_FLOPS = plans.flops_per_image


@pytest.fixture(autouse=True)
def fake_flops(monkeypatch):
    monkeypatch.setattr(plans, "flops_per_image", lambda model, num_classes, size: FAKE_FLOPS)


@pytest.mark.parametrize("table, runs", [("table1", 180), ("table2", 60), ("table3", 60), ("table4", 65),
                                         ("table5", 6), ("table6", 105), ("table7", 48), ("fig4", 6)])
def test_every_table_plans_its_runs_and_every_paper_cell_has_a_place(table, runs):
    items = plan(table, runs_root="r")
    assert len(items) == runs  # 5 data sets x models x methods x 3 seeds (1 seed for tables 5 and 7), deduplicated
    ours = {cell for item in items for cell in item.cells}
    for c in paper_cells(table=table):
        assert paper_cell_key(c) in ours, c
    assert all(item.cfg.protocol == "authors" and item.cfg.select_on == "test" for item in items)


def test_gpu_hours_are_counted_flops_over_the_assumed_throughput():
    """One CIFAR-100 CS-KD run: FLOPs per image x (50,000 training images x 4/3 for the partner's
    forward + 10,000 test images x 1/3 for a forward) x epochs, at 50 TFLOP/s."""
    (item,) = [i for i in plan("table2", runs_root="r", datasets=["cifar100"], seeds=[0]) if i.cfg.method == "cskd"]
    expected = FAKE_FLOPS * (50_000 * 4 / 3 + 10_000 / 3) * item.cfg.epochs / 50e12 / 3600
    assert gpu_hours([item], tflops=50) == pytest.approx(expected, rel=1e-12)
    assert gpu_hours([item, item], tflops=25) == pytest.approx(4 * expected, rel=1e-12)


def test_flops_per_image_counts_the_small_cnn_by_hand():
    """small at 32x32 px, 3 channels, 10 classes: convolutions 3->32 and 32->64 at 32x32, max-pool,
    64->128 at 16x16, linear 128->10; 2 FLOPs a multiply-add. The backward pass costs twice the
    forward (input and weight gradients) except the first convolution's input gradient."""
    convs = [2 * 3 * 32 * 9 * 32 * 32, 2 * 32 * 64 * 9 * 32 * 32, 2 * 64 * 128 * 9 * 16 * 16]
    linear = 2 * 128 * 10
    forward = sum(convs) + linear
    backward = 2 * forward - convs[0]
    assert REAL_FLOPS("small", 10, 32) == forward + backward == 230_039_040


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


def test_tflops_scales_the_dry_run_estimate_as_its_inverse(tmp_path, capsys):
    at_one = gpu_hours(plan("table2", runs_root=str(tmp_path / "runs")), tflops=1)  # GPU-hours at 1 TFLOP/s
    assert at_one > 100
    for tflops in (50, 12.5, 400):
        assert cli("reproduce", "table2", "--dry-run", "--runs", tmp_path / "runs", "--tflops", tflops) == 0
        m = HOURS.search(capsys.readouterr().out)
        assert m and float(m["tflops"]) == tflops
        assert float(m["hours"]) == pytest.approx(at_one / tflops, abs=0.05)  # printed with one decimal
    for bad in (0, -5, "nan"):
        assert cli("reproduce", "table2", "--dry-run", "--runs", tmp_path / "runs", "--tflops", bad) == 2
        assert "--tflops must be a positive number" in capsys.readouterr().err


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
