"""Shared fixtures and helpers.

Session fixtures hold finished runs that tests only READ. A test that changes a run works on
`copy_run(...)`, a copy that keeps the files' times (so cskd still recognises its own files).
"""

import os
import shutil
import subprocess
import sys

os.environ.setdefault("MPLBACKEND", "Agg")
# The suite is CPU only, also on a machine with a GPU: `--device auto` (and bf16 autocast, and the
# --compile and --sync-bn checks) would otherwise take the CUDA paths. Subprocesses inherit it.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models: one thread is as fast as two and immune to OpenMP spin-wait stalls when the
# machine is shared.
torch.set_num_threads(1)


def cli(*argv) -> int:
    """`cskd ARGV...` in this process; argparse's own exits return their status."""
    from cskd.cli.main import main

    try:
        return main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


def one_error_line(capsys) -> str:
    """The single stderr line of a failed command (asserts there is exactly one, and its prefix)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cskd: error: "), err
    return err[0]


def copy_run(run, dest):
    """A copy of a run folder that keeps modification times (as `cp -p` or rsync -a)."""
    shutil.copytree(run, dest, copy_function=shutil.copy2)
    return dest


def hold_lock(folder, command: str) -> subprocess.Popen:
    """Another process holding `folder`'s FolderLock as `command` until killed (returns once held).
    The caller kills it (`proc.kill(); proc.wait()`)."""
    proc = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom cskd.runfolder.store import FolderLock\n"
        f"with FolderLock({str(folder)!r}, {command!r}):\n"
        "    print('held', flush=True)\n    time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "held":
        proc.kill()
        raise AssertionError(f"the lock holder for {folder} did not start")
    return proc


def write_image_folder(root, *, classes=("a", "b"), train=6, test=3, size=(20, 24), seed=0):
    """A tiny ImageFolder data set: root/{train,test}/<class>/<i>.png with random pixels."""
    rng = np.random.default_rng(seed)
    from PIL import Image

    for split, n in (("train", train), ("test", test)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def digits_runs(tmp_path_factory):
    """Two finished 2-epoch digits runs (CE and CS-KD). Read only: copy before changing."""
    from cskd.config import resolve
    from cskd.training.trainer import run_training

    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for method in ("ce", "cskd"):
        out = root / f"digits-{method}"
        cfg = resolve({"method": method, "epochs": 2, "seed": 0, "out": str(out)}, "digits-small")
        run_training(cfg, progress=False)
        runs[method] = out
    return runs


@pytest.fixture
def predicted(predicted_runs, tmp_path):
    """Fresh copies of predicted_runs (same folder names), for a test whose commands write caches
    (stats, t-SNE) into the runs."""
    return {method: copy_run(run, tmp_path / "runs" / run.name) for method, run in predicted_runs.items()}


@pytest.fixture(scope="session")
def predicted_runs(digits_runs, tmp_path_factory):
    """Copies of digits_runs with their test and validation predictions and no caches. Read only:
    a test that analyses them uses `predicted`."""
    from cskd.evaluation.predict import predict

    root = tmp_path_factory.mktemp("predicted")
    runs = {}
    for method, run in digits_runs.items():
        runs[method] = copy_run(run, root / run.name)
        for split in ("test", "val"):
            predict(runs[method], split=split, progress=False)
    return runs


@pytest.fixture(scope="session")
def tiny_app_runs(tmp_path_factory):
    """app_helpers.tiny_runs(): the dashboard tests' runs, read only."""
    from app_helpers import tiny_runs

    return tiny_runs(tmp_path_factory.mktemp("tiny-runs"))
