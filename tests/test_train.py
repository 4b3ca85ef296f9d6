"""The training loop: the files a run writes, exact resume (at an epoch boundary and within an
epoch after SIGTERM), the lr schedule, run names, divergence, the protocol and subset options."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import cli

from cskd.config import resolve
from cskd.errors import UserError
from cskd.training.epoch import lr_at
from cskd.training.trainer import run_training

pytestmark = pytest.mark.slow


def test_ce_and_cskd_runs_write_the_run_files(digits_runs):
    for method, run in digits_runs.items():
        for name in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "summary.json", ".cskd/manifest.json"):
            assert (run / name).is_file(), name
        config = json.loads((run / "config.json").read_text())
        assert config["format"] == 2 and config["kind"] == "trained" and len(config["meta"]["run_id"]) == 32
        assert config["config"]["method"] == method and config["config"]["epochs"] == 2
        assert config["meta"]["selection"] == "best validation epoch" and config["meta"]["world_size"] == 1
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in records] == [1, 2]
        assert all(0 <= r["val_acc"] <= 1 for r in records)
        # CS-KD logs its KL regulariser; cross-entropy has none.
        assert (records[-1]["train_reg"] > 0) == (method == "cskd")
        state = torch.load(run / "last.pt", weights_only=True)
        assert {"model", "optimizer", "sampler", "rng", "config", "epoch", "step", "run_id"} <= set(state)
        assert state["run_id"] == config["meta"]["run_id"] and state["step"] == 0
        summary = json.loads((run / "summary.json").read_text())
        assert summary["selected_on"] == "val" and summary["best_epoch"] in (1, 2)
        assert summary["test_acc"] > 0.3  # far above the 0.1 of chance after 2 epochs


def test_cli_train_writes_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli("train", "--dataset", "digits", "--method", "ce", "--epochs", 1, "--seed", 0, "--out", out) == 0
    assert (out / "best.pt").is_file() and (out / "metrics.jsonl").is_file()
    assert "test acc" in capsys.readouterr().out


def _weights(run):
    return torch.load(run / "last.pt", weights_only=True)["model"]


def test_kill_and_resume_gives_identical_weights(tmp_path):
    overrides = {"method": "mixup_cskd", "epochs": 3, "seed": 1, "batch_size": 128}
    full = resolve({**overrides, "out": str(tmp_path / "full")}, "digits-small")
    run_training(full, progress=False)
    cut = resolve({**overrides, "out": str(tmp_path / "cut")}, "digits-small")
    run_training(cut, progress=False, stop_after_epoch=0)  # "killed" after the first epoch
    assert not (tmp_path / "cut" / "summary.json").exists()
    run_training(cut, resume=True, progress=False)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    keep = ("epoch", "train_loss", "train_reg", "val_acc")
    records = [[{k: r[k] for k in keep} for r in map(json.loads, (tmp_path / run / "metrics.jsonl").open())]
               for run in ("full", "cut")]
    assert [r["epoch"] for r in records[1]] == [1, 2, 3] and records[0] == records[1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_mid_epoch_saves_a_checkpoint_and_resume_is_exact(tmp_path, signum):
    """SIGTERM (how clusters stop jobs) or SIGUSR1 (SLURM's --signal warning) within an epoch: the
    step finishes, last.pt is written with the step, the command exits 128 + signal with one line
    saying how to resume; the resumed run ends with the weights and the epoch records of an
    uninterrupted one."""
    base = ["train", "--preset", "digits-small", "--method", "cskd", "--epochs", "2", "--batch-size", "32",
            "--seed", "3", "--log-interval", "1000"]
    assert cli(*base, "--out", tmp_path / "full") == 0
    env = {**os.environ, "CSKD_TEST_SIGNAL_AT_STEP": "7", "CSKD_TEST_SIGNAL": str(int(signum))}
    code = subprocess.run([sys.executable, "-c", _SELF_SIGNAL, *base, "--out", str(tmp_path / "cut")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert code.returncode == 128 + signum, code.stderr
    err = code.stderr.strip().splitlines()
    assert err[-1].startswith(f"cskd: stopped by {signal.Signals(signum).name} at epoch 1, step 7/41;")
    assert "--resume" in err[-1]
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (-1, 7)
    assert cli("train", "--out", tmp_path / "cut", "--resume") == 0
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    keep = ("epoch", "train_loss", "train_acc", "val_acc")
    records = [[{k: r[k] for k in keep} for r in map(json.loads, (tmp_path / run / "metrics.jsonl").open())]
               for run in ("full", "cut")]
    assert records[0] == records[1]


# Runs `cskd ARGV`, sending itself the signal $CSKD_TEST_SIGNAL right after training step N (a real
# signal, delivered while the step loop runs).
_SELF_SIGNAL = """
import os, signal, sys
import cskd.training.epoch as t
n, step = int(os.environ["CSKD_TEST_SIGNAL_AT_STEP"]), [0]
real = t.train_step
def counted(*a, **k):
    out = real(*a, **k)
    step[0] += 1
    if step[0] == n:
        os.kill(os.getpid(), int(os.environ["CSKD_TEST_SIGNAL"]))
    return out
t.train_step = counted
from cskd.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_lr_schedule_follows_the_paper_and_the_authors_code():
    cfg = resolve({"epochs": 200})
    assert lr_at(cfg, 0) == 0.1 and lr_at(cfg, 99) == 0.1
    assert lr_at(cfg, 100) == pytest.approx(0.01) and lr_at(cfg, 149) == pytest.approx(0.01)
    assert lr_at(cfg, 150) == pytest.approx(0.001) and lr_at(cfg, 199) == pytest.approx(0.001)
    # the authors' code adjusts the lr after each epoch: their drops come one epoch later
    authors = resolve({"epochs": 200, "protocol": "authors"})
    assert [round(lr_at(authors, e), 6) for e in (100, 101, 150, 151)] == [0.1, 0.01, 0.01, 0.001]
    # short runs: the first epoch always uses the base lr; drops at ceil(0.5 E) and ceil(0.75 E)
    assert [lr_at(resolve({"epochs": 1}), e) for e in range(1)] == [0.1]
    assert [round(lr_at(resolve({"epochs": 4}), e), 6) for e in range(4)] == [0.1, 0.1, 0.01, 0.001]
    assert [round(lr_at(resolve({"epochs": 30}), e), 6) for e in (14, 15, 22, 23)] == [0.1, 0.01, 0.01, 0.001]


def test_a_loss_that_becomes_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    """The loss turns NaN in the second epoch: one line names the epoch and step, and last.pt is
    the whole, loadable checkpoint of epoch 1."""
    import dataclasses

    import cskd.method.objectives as methods

    real, calls = methods.ce_step, [0]
    steps_per_epoch = -(-1293 // 64)

    def poisoned(ctx, b):
        calls[0] += 1
        out = real(ctx, b)
        if calls[0] == steps_per_epoch + 3:  # epoch 2, step 3
            return dataclasses.replace(out, loss=out.loss * float("nan"))
        return out

    monkeypatch.setitem(methods.STEPS, "ce_step", poisoned)  # the step method_for hands the trainer
    out = tmp_path / "nan"
    assert cli("train", "--epochs", 3, "--method", "ce", "--log-interval", 1, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss became NaN/inf at epoch 2, step 3" in err[0]
    assert f"the last good checkpoint (epoch 1) is kept in {out / 'last.pt'}" in err[0]
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_run_that_diverges_in_its_first_epoch_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "nan"
    assert cli("train", "--epochs", 2, "--lr", "1e9", "--method", "ce", "--log-interval", 1, "--out", out) == 2
    assert "loss became NaN/inf at epoch 1" in capsys.readouterr().err and not out.exists()


def test_console_script_exits_nonzero_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cskd", "train", "--model", "nope", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown model 'nope'" in r.stderr


def test_protocol_authors_holds_out_nothing_and_selects_on_test(tmp_path, capsys):
    out = tmp_path / "authors"
    assert cli("train", "--protocol", "authors", "--epochs", 1, "--method", "ce", "--out", out) == 0
    record = json.loads((out / "config.json").read_text())
    cfg, meta = record["config"], record["meta"]
    assert (cfg["protocol"], cfg["val_fraction"], cfg["select_on"], cfg["allow_self_pair"]) == \
        ("authors", 0.0, "test", True)
    assert meta["num_val"] == 0 and meta["num_train"] == 1437 and "TEST" in meta["selection"]
    assert json.loads((out / "summary.json").read_text())["selected_on"] == "test"
    assert "test_acc" in json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    capsys.readouterr()
    assert cli("train", "--protocol", "authors", "--select-on", "val", "--out", tmp_path / "x") == 2
    assert "--select-on val contradicts --protocol authors" in capsys.readouterr().err


def test_train_per_class_trains_on_n_images_per_class_and_records_it(tmp_path):
    cfg = resolve({"method": "ce", "epochs": 1, "train_per_class": 20, "out": str(tmp_path / "n20")}, "digits-small")
    run_training(cfg, progress=False)
    record = json.loads((tmp_path / "n20" / "config.json").read_text())
    assert record["config"]["train_per_class"] == 20 and record["meta"]["num_train"] == 200
    assert record["meta"]["num_val"] == 144  # the same validation split as with all images
    from cskd.runfolder.run_names import run_name

    assert "-n20-" in run_name(cfg)
    with pytest.raises(UserError, match="--train-per-class must be >= 0"):
        resolve({"train_per_class": -1})
