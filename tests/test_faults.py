"""Fault injection: a full disk during training, a kill in the middle of a write, and data that is
empty or damaged. Each fault ends in a one-line error or a correct result, with nothing lost.

The other fault classes are tested where their code lives: two writers at once (test_resume,
test_runfolder), a user's files under cskd's names (test_runfolder, test_resume), SIGTERM/SIGUSR1
mid-epoch with exact resume (test_train), copied and damaged predictions and the report folder
replaced as a whole (test_predict_analyze), damaged checkpoints (test_resume), the dashboard with
damaged files and hostile names (test_app*)."""

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from conftest import cli, one_error_line, write_image_folder

pytestmark = pytest.mark.slow


@contextmanager
def small_disk(path, size_kib):
    """A tmpfs of `size_kib` at `path` (root only); skips when it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (the injected ENOSPC test in test_runfolder covers the logic)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_disk_that_fills_up_during_training_stops_in_one_line_and_resume_is_exact(tmp_path, capsys):
    args = ["train", "--preset", "digits-small", "--method", "cskd", "--epochs", 3, "--seed", 2]
    assert cli(*args, "--out", tmp_path / "full") == 0
    # 1,700 KiB: room for best.pt (386 KiB) and last.pt (772 KiB) and one new best.pt, not for a new last.pt
    with small_disk(tmp_path / "disk", 1700) as disk:
        out = disk / "run"
        capsys.readouterr()
        assert cli(*args, "--out", out) == 2
        line = one_error_line(capsys)
        assert "no space left to write" in line and "MiB free" in line and "previous version" in line
        state = torch.load(out / "last.pt", weights_only=True)  # the previous checkpoint is whole
        assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        assert cli("train", "--out", out, "--resume") == 0
        a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
        b = torch.load(out / "last.pt", weights_only=True)["model"]
        assert state["epoch"] < 2 and all(torch.equal(a[k], b[k]) for k in a)


_WRITER = """
import os, sys, time
from cskd.runfolder import RunFolder
folder = RunFolder(sys.argv[1])
with folder.writing():
    def slow(f):
        f.write(b"x" * 100000)
        f.flush()
        print("half", flush=True)
        time.sleep(60)
    folder.write("last.pt", slow)
"""


def test_a_kill_during_a_write_loses_nothing_and_leaves_no_temporary_file(digits_runs, tmp_path):
    from conftest import copy_run

    run = copy_run(digits_runs["ce"], tmp_path / "run")
    before = (run / "last.pt").read_bytes()
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(run)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "half"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    assert (run / "last.pt").read_bytes() == before  # the previous version is whole
    assert [p for p in os.listdir(run) if p.startswith(".last.pt.")]  # the killed writer's temporary file...
    assert cli("train", "--out", run, "--resume") == 0  # ... is removed when the folder is next opened
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]


def test_sigterm_outside_training_removes_the_temporary_file(digits_runs, tmp_path):
    from conftest import copy_run

    run = copy_run(digits_runs["ce"], tmp_path / "run")
    script = _WRITER.replace("from cskd.runfolder import RunFolder",
                             "from cskd.runfolder import RunFolder\nimport signal\n"
                             "from cskd.cli.main import _terminate\n"
                             "signal.signal(signal.SIGTERM, _terminate)")
    writer = subprocess.Popen([sys.executable, "-c", script, str(run)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "half"
    writer.send_signal(signal.SIGTERM)
    assert writer.wait(timeout=10) == 128 + signal.SIGTERM
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]


@pytest.mark.parametrize("cache", ["on", "off"])
def test_an_empty_test_split_is_found_before_training(tmp_path, capsys, cache):
    root = write_image_folder(tmp_path / "data", train=4, test=0)
    out = tmp_path / "run"
    assert cli("train", "--dataset", "imagefolder", "--data-root", root, "--model", "small", "--epochs", 1,
               "--decode-cache", cache, "--workers", 0, "--val-fraction", 0.5, "--out", out) == 2
    assert "the test split has no images" in one_error_line(capsys) and not out.exists()


def test_an_empty_training_class_and_a_non_utf8_class_name_are_one_line(tmp_path, capsys):
    root = write_image_folder(tmp_path / "data", train=4, test=2)
    (root / "train" / "c").mkdir()
    assert cli("train", "--dataset", "imagefolder", "--data-root", root, "--model", "small", "--epochs", 1,
               "--out", tmp_path / "run") == 2
    assert f"class folder {root / 'train' / 'c'} holds no images" in one_error_line(capsys)
    os.rmdir(root / "train" / "c")
    os.rename(root / "train" / "b", os.fsencode(root / "train") + b"/b\xff")
    assert cli("train", "--dataset", "imagefolder", "--data-root", root, "--model", "small", "--epochs", 1,
               "--out", tmp_path / "run") == 2
    assert "is not valid UTF-8; rename it" in one_error_line(capsys)


def test_a_truncated_decode_cache_is_rebuilt(tmp_path):
    from cskd.config import resolve
    from cskd.data.decode_cache import DecodeCache
    from cskd.training.trainer import run_training

    root = write_image_folder(tmp_path / "data", train=4, test=2, size=(40, 30))
    cfg = resolve({"dataset": "imagefolder", "data_root": str(root), "model": "small", "epochs": 1, "workers": 0,
                   "val_fraction": 0.5, "batch_size": 4, "out": str(tmp_path / "a")})
    run_training(cfg, progress=False)
    caches = [p for p in (root / ".cskd-cache").iterdir() if p.is_dir()]
    assert caches
    for cache in caches:
        pixels = cache / "pixels.u8"
        pixels.write_bytes(pixels.read_bytes()[: pixels.stat().st_size // 2])
    run_training(resolve({**cfg.to_dict(), "out": str(tmp_path / "b")}), progress=False)  # no traceback: rebuilt
    from PIL import Image

    files = sorted(str(p) for p in (root / "train").rglob("*.png"))
    cache = DecodeCache(files, root / ".cskd-cache")
    for i, f in enumerate(files):  # every image as decoding its file gives (short side < 256: kept as is)
        assert np.array_equal(cache.image(i).permute(1, 2, 0).numpy(), np.asarray(Image.open(f).convert("RGB")))


def test_a_junk_cifar_file_is_one_line_and_never_unpickled(tmp_path, capsys):
    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    import pickle

    class Boom:
        def __reduce__(self):
            return (print, ("code ran",))

    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(pickle.dumps(Boom()))
    assert cli("train", "--dataset", "cifar100", "--data-root", tmp_path, "--model", "small", "--epochs", 1,
               "--out", tmp_path / "run") == 2
    captured = capsys.readouterr()
    assert "code ran" not in captured.out
    assert "is missing, damaged or not CIFAR-100's (its MD5 differs" in captured.err
    assert not (tmp_path / "run").exists()


def test_a_read_only_run_folder_with_fresh_predictions_can_be_analysed(predicted_runs, tmp_path):
    """Reading needs no lock: `predict` and `analyze` write nothing when the predictions are fresh."""
    from conftest import copy_run

    run = copy_run(predicted_runs["ce"], tmp_path / "run")
    assert cli("analyze", run, "--out", tmp_path / "rep1") == 0  # t-SNE cached while writable
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", "-o", "ro", str(run), str(ro)],
                                           capture_output=True).returncode != 0:
        pytest.skip("a read-only bind mount needs root")
    bare = copy_run(predicted_runs["cskd"], tmp_path / "bare")  # fresh predictions, no caches at all
    assert not (bare / "stats-test.npz").exists() and not (bare / "tsne-test.npz").exists()
    ro_bare = tmp_path / "ro-bare"
    ro_bare.mkdir()
    try:
        subprocess.run(["mount", "--bind", "-o", "ro", str(bare), str(ro_bare)], capture_output=True)
        for mount in (ro, ro_bare):
            subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], capture_output=True)
        assert cli("predict", ro) == 0
        assert cli("analyze", ro, "--out", tmp_path / "rep2") == 0
        # without caches: computed and used, not saved
        before = sorted(os.listdir(bare))
        assert cli("analyze", ro_bare, "--out", tmp_path / "rep3") == 0
        assert sorted(os.listdir(bare)) == before and not (bare / "stats-test.npz").exists()
    finally:
        for mount in (ro, ro_bare):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    assert cli("analyze", bare, "--out", tmp_path / "rep4") == 0  # writable: the same numbers, cached
    unsaved = json.loads((tmp_path / "rep3" / "metrics.json").read_text())["ro-bare"]
    cached = json.loads((tmp_path / "rep4" / "metrics.json").read_text())["bare"]
    assert unsaved.keys() == cached.keys() and (bare / "stats-test.npz").is_file()
    for key, value in cached.items():
        assert unsaved[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key
