import json

import pytest

from cskd.cli.main import main
from cskd.config import resolve
from cskd.errors import UserError
from cskd.experiments.sweep import plan, run_sweep
from cskd.training.trainer import run_training

pytestmark = pytest.mark.slow


def test_plan_applies_the_t_lambda_grid_to_class_wise_methods_only():
    items = plan(["digits-small"], ["ce", "cskd"], [0, 1], [1.0, 4.0], [1.0, 2.0], {"epochs": 1}, "runs")
    names = sorted(out.name for out, _ in items)
    assert len(names) == 2 + 2 * 4  # ce: one per seed; cskd: 4 (T, λ) cells per seed
    assert "digits-small-ce-e1-s0" in names and "digits-small-cskd-T1-L2-e1-s1" in names
    cfg = dict(items)[next(o for o, _ in items if o.name == "digits-small-cskd-T1-L2-e1-s1")]
    assert (cfg.temperature, cfg.lambda_cls, cfg.seed, cfg.epochs) == (1.0, 2.0, 1, 1)
    with pytest.raises(UserError, match="needs --teacher"):
        plan(["digits-small"], ["kd"], [0], [4.0], [1.0], {}, "runs")


def test_sweep_skips_finished_and_resumes_interrupted_runs(tmp_path):
    runs = tmp_path / "runs"
    # Before the sweep: one run finished, one killed after its first epoch.
    finished = resolve({"method": "ce", "seed": 0, "epochs": 2, "out": str(runs / "digits-small-ce-e2-s0")},
                       "digits-small")
    run_training(finished, progress=False)
    killed = resolve({"method": "cskd", "seed": 1, "epochs": 2, "out": str(runs / "digits-small-cskd-T4-L1-e2-s1")},
                     "digits-small")
    run_training(killed, progress=False, stop_after_epoch=0)
    mtime = (runs / "digits-small-ce-e2-s0" / "last.pt").stat().st_mtime_ns

    # Where the data lives is not a setting of the runs: the sweep may point elsewhere and still resume.
    done = run_sweep(presets=["digits-small"], methods=["ce", "cskd"], seeds=[0, 1],
                     overrides={"epochs": 2, "data_root": str(tmp_path / "moved"), "download": True},
                     runs_root=str(runs), progress=False)
    assert done["skipped"] == ["digits-small-ce-e2-s0"]
    assert done["resumed"] == ["digits-small-cskd-T4-L1-e2-s1"]
    assert sorted(done["trained"]) == ["digits-small-ce-e2-s1", "digits-small-cskd-T4-L1-e2-s0"]
    assert (runs / "digits-small-ce-e2-s0" / "last.pt").stat().st_mtime_ns == mtime
    epochs = [json.loads(line)["epoch"] for line in (runs / "digits-small-cskd-T4-L1-e2-s1" / "metrics.jsonl").open()]
    assert epochs == [1, 2]
    report = runs / "report"
    table = (report / "table.md").read_text()
    assert "method=ce" in table and "method=cskd" in table and "| 2 |" in table  # 2 seeds per row
    assert set(json.loads((report / "metrics.json").read_text())) == {
        "digits-small-ce-e2-s0", "digits-small-ce-e2-s1",
        "digits-small-cskd-T4-L1-e2-s0", "digits-small-cskd-T4-L1-e2-s1"}


def test_sweep_cli_rejects_unknown_method(tmp_path, capsys):
    assert main(["sweep", "--methods", "ce", "nope", "--runs", str(tmp_path / "r")]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_sweep_finds_a_missing_data_set_before_training_anything(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["sweep", "--presets", "digits-small", "cifar100-preact18", "--methods", "ce", "--seeds", "0",
                 "--epochs", "1", "--data-root", str(tmp_path / "empty"), "--runs", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CIFAR-100 not found: expected " + str(tmp_path / "empty" / "cifar100") in err[0]
    assert not runs.exists()  # the digits run, first in the grid, was not trained
