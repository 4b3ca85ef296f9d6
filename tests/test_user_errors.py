"""User mistakes end in one line `cskd: error: ...`, exit status 2, and nothing half-written."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cskd.cli import main


def cli(*argv):
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own exit
        return e.code


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cskd: error: "), err
    return err[0]


@pytest.mark.parametrize("args,expected", [
    (["train", "--epochs", "abc"], "argument --epochs: invalid int value: 'abc' (see `cskd train --help`)"),
    (["train", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train", "--seed", "-1"], "--seed must be in [0, 2^32 - 1]; got -1"),
    (["train", "--split-seed", str(2**32)], "--split-seed must be in [0, 2^32 - 1]"),
    (["train", "--width", "100000"], "--width must be at most 1024"),
    (["train", "--lr", "inf"], "--lr must be a finite number; got inf"),
    (["train", "--temperature", "nan"], "--temperature must be a finite number"),
    (["train", "--lr-milestones", "0.5", "0.5"], "--lr-milestones must be increasing fractions"),
    (["train", "--method", "ce", "--teacher", "somewhere"], "--teacher applies to --method kd and kd_cskd only"),
    (["train", "--mixed-roots", "a", "b"], "--mixed-roots applies to --dataset mixed only"),
    (["train", "--data-root", ""], "argument --data-root: is empty; give a folder path"),
    (["analyze", "some-run", "--out", ""], "argument --out: is empty; give a folder path"),
    (["predict", " "], "argument RUN: is empty; give a folder path"),
    (["sweep", "--runs", ""], "argument --runs: is empty; give a folder path"),
])
def test_bad_options_give_one_line(args, expected, tmp_path, capsys):
    assert cli(*args, "--out", tmp_path / "run") == 2 if args[0] == "train" else cli(*args) == 2
    assert expected in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_an_output_path_that_cannot_be_a_folder_gives_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli("train", "--preset", "digits-small", "--epochs", 1, "--out", blocker / "run") == 2
    assert f"Not a directory: {blocker / 'run'}" in one_error_line(capsys)
    # a newline in the path must not break the message over two lines
    assert cli("train", "--preset", "digits-small", "--epochs", 1, "--out", blocker / "new\nline") == 2
    assert f"Not a directory: {blocker / 'new'} line" in one_error_line(capsys)


def test_damaged_training_state_and_metrics_log(digits_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(digits_runs["cskd"], run)
    # metrics.jsonl lines that are not records are skipped, as a torn line is
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'5\n[1]\n\xff\xfe\n')
    state = torch.load(run / "last.pt", weights_only=True)
    for damage, expected in ((lambda s: s.pop("optimizer"), "missing or malformed: optimizer"),
                             (lambda s: s.update(sampler={}), "holds a damaged training state (KeyError"),
                             (lambda s: s["config"].update(epochs=-3), "holds an invalid config")):
        broken = {k: (dict(v) if isinstance(v, dict) else v) for k, v in state.items()}
        damage(broken)
        torch.save(broken, run / "last.pt")
        assert cli("train", "--out", run, "--resume") == 2
        assert expected in one_error_line(capsys)
    torch.save({**state, "epoch": 0}, run / "last.pt")  # resumable again: one epoch left
    assert cli("train", "--out", run, "--resume") == 0
    assert [r["epoch"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1, 2]


def test_predictions_copied_from_another_run_are_stale_and_damaged_ones_rejected(digits_runs, tmp_path):
    from cskd.predict import is_fresh, predict, predictions_path
    from cskd.runs import load_predictions
    from cskd.errors import UserError

    ce, cskd = tmp_path / "ce", tmp_path / "cskd"
    shutil.copytree(digits_runs["ce"], ce)
    shutil.copytree(digits_runs["cskd"], cskd)
    predict(ce)
    assert is_fresh(ce, "test")
    shutil.copy(predictions_path(ce, "test"), predictions_path(cskd, "test"))
    assert not is_fresh(cskd, "test")  # newer than best.pt and made from "best", but of another run

    data = dict(np.load(predictions_path(ce, "test"), allow_pickle=False))
    for key, value, expected in (("labels", data["labels"] + 10, "labels fall outside 0..9"),
                                 ("labels", data["labels"].astype(float), "labels are not integers"),
                                 ("logits", np.full_like(data["logits"], np.nan), "logits are not all finite")):
        np.savez(tmp_path / "bad.npz", **{**data, key: value})
        with pytest.raises(UserError, match=expected):
            load_predictions(tmp_path / "bad.npz")


def test_sweep_refuses_repeats_and_other_settings_before_training(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli("sweep", "--methods", "ce", "--seeds", 0, 0, "--runs", runs) == 2
    assert "names digits-small-ce-s0 more than once" in one_error_line(capsys)
    assert not runs.exists()
    assert cli("sweep", "--methods", "ce", "--seeds", 0, "--epochs", 1, "--runs", runs) == 0
    capsys.readouterr()
    assert cli("sweep", "--methods", "ce", "--seeds", 0, "--epochs", 2, "--runs", runs) == 2
    assert "holds a run with other settings (--epochs 1 -> 2)" in one_error_line(capsys)


def test_unreadable_image_names_the_file_and_leaves_no_run_behind(tmp_path, capsys):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(6):
                Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    (root / "train" / "a" / "bad.png").write_text("not an image")
    for cache in ("on", "off"):
        out = tmp_path / f"run-{cache}"
        assert cli("train", "--dataset", "imagefolder", "--data-root", root, "--model", "resnet10", "--epochs", 1,
                   "--batch-size", 4, "--val-fraction", 0.5, "--workers", 0, "--decode-cache", cache,
                   "--out", out, "--no-progress") == 2
        assert f"cannot read image {root / 'train' / 'a' / 'bad.png'}" in one_error_line(capsys)
        assert not out.exists()
    assert not any((root / ".cskd-cache").glob("*"))  # no empty cache folder either


def test_unfinished_teacher_is_refused(digits_runs, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    shutil.copytree(digits_runs["ce"], teacher)
    (teacher / "summary.json").unlink()
    assert cli("train", "--preset", "digits-small", "--method", "kd", "--teacher", teacher, "--epochs", 1,
               "--out", tmp_path / "student") == 2
    assert "has not finished training (no summary.json)" in one_error_line(capsys)


def test_resume_refuses_another_runs_checkpoint_and_repairs_a_lost_config(digits_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(digits_runs["cskd"], run)
    other = torch.load(digits_runs["ce"] / "last.pt", weights_only=True)
    torch.save({**other, "epoch": 0}, run / "last.pt")
    assert cli("train", "--out", run, "--resume") == 2
    line = one_error_line(capsys)
    assert "belongs to another run" in line and "--method cskd -> ce" in line
    own = torch.load(digits_runs["cskd"] / "last.pt", weights_only=True)
    torch.save({**own, "epoch": 0}, run / "last.pt")
    (run / "config.json").write_bytes(b"\xff\xfe garbage")
    assert cli("train", "--out", run, "--resume") == 0
    assert json.loads((run / "config.json").read_text())["config"]["method"] == "cskd"
