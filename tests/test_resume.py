"""Starting, replacing and continuing runs: --overwrite, --resume, --resume auto, and the damaged
or foreign files a resume may meet."""

import json
import shutil

import pytest
import torch
from conftest import cli, copy_run, one_error_line

from cskd.config import resolve
from cskd.runfolder import save_checkpoint
from cskd.training.trainer import run_training

pytestmark = pytest.mark.slow


def test_out_holding_a_run_is_refused_unless_resume_or_overwrite(digits_runs, tmp_path, capsys):
    run = copy_run(digits_runs["ce"], tmp_path / "copy")
    assert cli("train", "--epochs", 1, "--out", run) == 2
    assert "already holds a run; pass --resume" in one_error_line(capsys)
    assert cli("train", "--epochs", 1, "--method", "ce", "--out", run, "--overwrite") == 0
    assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 1


def test_overwrite_deletes_only_the_files_cskd_wrote(digits_runs, tmp_path):
    out = copy_run(digits_runs["ce"], tmp_path / "mine")
    (out / "notes.txt").write_text("keep me")
    (out / "predictions-mine.npz").write_bytes(b"the user's own file")
    (out / "sub").mkdir()
    assert cli("train", "--epochs", 1, "--method", "ce", "--out", out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "keep me" and (out / "sub").is_dir()
    assert (out / "predictions-mine.npz").read_bytes() == b"the user's own file"
    assert json.loads((out / "config.json").read_text())["config"]["epochs"] == 1


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated", None])  # None: half
def test_resume_from_a_damaged_checkpoint_is_a_clear_error(digits_runs, tmp_path, capsys, content):
    run = copy_run(digits_runs["ce"], tmp_path / "copy")
    full = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(full[: len(full) // 2] if content is None else content)
    assert cli("train", "--out", run, "--resume") == 2
    line = one_error_line(capsys)
    # the file changed behind cskd's back: it is no longer cskd's, and is never replaced
    assert "last.pt, which cskd did not write (or which changed since)" in line


def test_a_flipped_byte_in_a_checkpoint_is_found(digits_runs, tmp_path, capsys):
    run = copy_run(digits_runs["ce"], tmp_path / "copy")
    stat = (run / "best.pt").stat()
    data = bytearray((run / "best.pt").read_bytes())
    data[len(data) // 2] ^= 0x40
    (run / "best.pt").write_bytes(bytes(data))
    import os

    os.utime(run / "best.pt", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and time: only the content
    assert cli("predict", run) == 2
    line = one_error_line(capsys)
    assert "best.pt" in line and ("checksum" in line or "not a readable" in line)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_that_needs_code_to_load_is_refused(tmp_path, capsys):
    import pickle

    run = tmp_path / "evil"
    run.mkdir()

    class Boom:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"format": 2, "model": Boom()}, run / "last.pt", pickle_protocol=pickle.DEFAULT_PROTOCOL)
    from cskd.errors import UserError
    from cskd.runfolder.checkpoints import LAST_FIELDS, read_checkpoint_file

    with pytest.raises(UserError, match="not a readable cskd checkpoint"):
        read_checkpoint_file(run / "last.pt", fields=LAST_FIELDS, fix="x")
    assert "code ran" not in capsys.readouterr().out


def test_resume_without_out_finds_the_generated_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = resolve({"method": "ce", "epochs": 2})
    run_training(cfg, progress=False, stop_after_epoch=0)
    assert cli("train", "--method", "ce", "--epochs", 2, "--resume") == 0
    assert json.loads((tmp_path / "checkpoints" / "digits-small-ce-e2-s0" / "summary.json").read_text())["finished"]


def test_resume_refuses_options_that_change_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    run_training(resolve({"method": "ce", "epochs": 2, "out": str(out)}), progress=False, stop_after_epoch=0)
    assert cli("train", "--out", out, "--resume", "--lr", "0.5", "--workers", "0") == 2
    err = one_error_line(capsys)
    assert "these options differ from it: --lr" in err and "--workers" not in err
    assert cli("train", "--out", out, "--resume", "--workers", "0") == 0  # execution-only options are fine


def test_resume_compares_the_given_options_with_the_saved_config_not_with_a_new_one(tmp_path, capsys):
    # select-on test with no validation split: --val-fraction 0 alone would be refused for a new run,
    # but it is the saved value (an execution option beside it is applied)
    out = tmp_path / "run"
    run_training(resolve({"method": "ce", "epochs": 2, "select_on": "test", "val_fraction": 0.0, "out": str(out),
                          "log_interval": 20}), progress=False, stop_after_epoch=0)
    assert cli("train", "--out", out, "--resume", "--val-fraction", 0, "--log-interval", 7) == 0
    assert json.loads((out / "summary.json").read_text())["finished"]


def test_run_killed_before_its_first_checkpoint_points_to_overwrite(digits_runs, tmp_path, capsys):
    out = copy_run(digits_runs["ce"], tmp_path / "early")
    for name in ("last.pt", "best.pt", "summary.json"):
        (out / name).unlink()
    assert cli("train", "--out", out, "--resume") == 2
    assert "stopped before its first epoch ended; start it again with --overwrite" in one_error_line(capsys)


def test_damaged_training_state_is_refused_and_a_sound_one_resumes(digits_runs, tmp_path, capsys):
    from cskd.runfolder import RunFolder

    run = copy_run(digits_runs["cskd"], tmp_path / "run")
    folder = RunFolder(run)
    state = torch.load(run / "last.pt", weights_only=True)
    for damage, expected in ((lambda s: s.pop("optimizer"), "missing or malformed: optimizer"),
                             (lambda s: s.update(sampler={}), "holds a damaged training state (KeyError"),
                             (lambda s: s["config"].update(epochs=-3), "holds an invalid config")):
        broken = {k: (dict(v) if isinstance(v, dict) else v) for k, v in state.items()}
        damage(broken)
        broken.pop("format")
        with folder.writing():  # written by cskd's own writer: damaged, but cskd's
            save_checkpoint(folder, "last", broken)
        assert cli("train", "--out", run, "--resume") == 2
        assert expected in one_error_line(capsys)
    with folder.writing():
        save_checkpoint(folder, "last", {k: v for k, v in {**state, "epoch": 0}.items() if k != "format"})
    assert cli("train", "--out", run, "--resume") == 0  # resumable again: one epoch left
    assert [r["epoch"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1, 2]


def test_resume_refuses_another_runs_checkpoint_and_repairs_a_lost_config(digits_runs, tmp_path, capsys):
    from cskd.runfolder import RunFolder

    run = copy_run(digits_runs["cskd"], tmp_path / "run")
    folder = RunFolder(run)
    other = torch.load(digits_runs["ce"] / "last.pt", weights_only=True)
    with folder.writing():
        save_checkpoint(folder, "last", {k: v for k, v in {**other, "epoch": 0}.items() if k not in ("format",)})
    assert cli("train", "--out", run, "--resume") == 2
    assert "belongs to another run" in one_error_line(capsys)
    own = torch.load(digits_runs["cskd"] / "last.pt", weights_only=True)
    with folder.writing():
        save_checkpoint(folder, "last", {k: v for k, v in {**own, "epoch": 0}.items() if k != "format"})
        folder.remove("config.json")
    (run / "config.json").write_bytes(b"\xff\xfe garbage")
    assert cli("train", "--out", run, "--resume") == 2  # a config.json cskd did not write is never replaced
    assert "config.json, which cskd did not write" in one_error_line(capsys)
    (run / "config.json").unlink()
    assert cli("train", "--out", run, "--resume") == 0  # a lost config.json is written again from last.pt
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["method"] == "cskd" and record["meta"]["run_id"] == own["run_id"]


def test_resume_auto_starts_continues_or_does_nothing(tmp_path, capsys):
    out = tmp_path / "auto"
    args = ("train", "--preset", "digits-small", "--method", "ce", "--epochs", 2, "--out", out, "--resume", "auto")
    run_training(resolve({"method": "ce", "epochs": 2, "out": str(out)}, "digits-small"), progress=False,
                 stop_after_epoch=0)
    assert cli(*args) == 0  # unfinished: continued
    assert "epochs 2-2" in capsys.readouterr().out
    mtime = (out / "last.pt").stat().st_mtime_ns
    assert cli(*args) == 0  # finished: nothing to do
    assert "finished earlier" in capsys.readouterr().out and (out / "last.pt").stat().st_mtime_ns == mtime
    empty = tmp_path / "empty"
    assert cli(*args[:-4], "--out", empty, "--resume", "auto") == 0  # no run: started
    assert json.loads((empty / "summary.json").read_text())["finished"]
    assert cli(*args[:4], "cskd", "--epochs", 2, "--out", out, "--resume", "auto") == 2
    assert "holds another run (--method ce -> cskd)" in one_error_line(capsys)


def test_two_trainings_into_one_folder_cannot_run_at_once(tmp_path, capsys):
    from cskd.runfolder import RunFolder

    out = tmp_path / "dup"
    with RunFolder(out).writing(command="cskd train --out dup --seed 1"):
        import subprocess
        import sys

        r = subprocess.run([sys.executable, "-m", "cskd", "train", "--epochs", "1", "--out", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"{out} is being written by PID" in r.stderr and "cskd train --out dup --seed 1" in r.stderr
    assert not (out / "config.json").exists()
    shutil.rmtree(out)


def test_damaged_fields_inside_last_pt_and_a_damaged_manifest_are_one_line(digits_runs, tmp_path, capsys):
    run = copy_run(digits_runs["ce"], tmp_path / "run")
    from cskd.runfolder import RunFolder
    from cskd.runfolder.store import Manifest

    folder = RunFolder(run)
    own = torch.load(run / "last.pt", weights_only=True)
    base = {k: v for k, v in own.items() if k != "format"}
    for damage, expected in (({"best": {}}, "malformed: best"),
                             ({"step": 3, "partial": torch.zeros(2)}, "malformed: partial")):
        with folder.writing():
            save_checkpoint(folder, "last", {**base, **damage})
        assert cli("train", "--out", run, "--resume") == 2
        assert expected in one_error_line(capsys)
    with folder.writing():
        save_checkpoint(folder, "last", {**base, "epoch": 0})
    manifest = run / ".cskd" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["files"]["last.pt"]["current"] = {"size": 5}
    manifest.write_text(json.dumps(data))  # a damaged manifest counts as absent: nothing here is cskd's
    before = (run / "last.pt").read_bytes()
    assert not Manifest(run).readable and cli("train", "--out", run, "--resume") == 2
    assert "holds best.pt, config.json, last.pt, metrics.jsonl, summary.json, which cskd did not write" in \
        one_error_line(capsys)
    assert (run / "last.pt").read_bytes() == before


def test_a_config_json_with_a_flipped_byte_is_rewritten_from_last_pt(tmp_path, capsys):
    import os

    out = tmp_path / "cut"
    run_training(resolve({"method": "ce", "epochs": 2, "out": str(out)}, "digits-small"), progress=False,
                 stop_after_epoch=0)
    path = out / "config.json"
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[0] = ord("[")  # no longer a JSON object; same size, same time
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cli("train", "--out", out, "--resume") == 0
    assert json.loads(path.read_text())["config"]["method"] == "ce"
