"""Training under torchrun on the CPU (gloo, 2 processes): the same weights as one process with the
same global batch, every method's gradients all-reduced, files written by rank 0 only, --resume
auto, and a worker killed mid-run under --max-restarts 1 finishing with the uninterrupted weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("ddp_worker.py")
# Two processes add gradients in another order than one: float32 rounding, amplified over the
# steps. Measured after 2 epochs (42 steps): ce 1.1e-7, cskd 1.3e-5 (largest absolute weight
# difference). ce holds torch's float32 default (atol 1e-5); cskd, whose KL term at T = 4 amplifies
# the rounding, needs 5x that. A real mismatch (a gradient not averaged, a wrong loss scale, another
# batch) moves weights by 1e-2 and more.
ATOL = {"ce": 1e-5, "cskd": 5e-5}


def torchrun(*args, env=None, restarts=0, timeout=240):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--max-restarts", str(restarts), str(WORKER), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
                               "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",  # README: PyTorch issue #135712
                               **{k: str(v) for k, v in (env or {}).items()}})


def weights(run):
    return torch.load(Path(run) / "last.pt", weights_only=True)["model"]


def assert_same_weights(a, b, atol):
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= atol, worst
    return worst


TRAIN = ["--preset", "digits-small", "--model", "small_nobn", "--epochs", 2, "--seed", 0, "--batch-size", 64]


@pytest.mark.parametrize("method", ["ce", "cskd"])
def test_two_processes_train_to_the_weights_of_one(tmp_path, method):
    assert cli("train", *TRAIN, "--method", method, "--out", tmp_path / "one") == 0
    r = torchrun("train", "train", *TRAIN, "--method", method, "--out", tmp_path / "two",
                 env={"CSKD_TEST_WRITES": tmp_path / "writes.log"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert_same_weights(weights(tmp_path / "one"), weights(tmp_path / "two"), ATOL[method])
    # one process wrote every file: rank 0
    writers = {line.split()[0] for line in (tmp_path / "writes.log").read_text().splitlines()}
    assert writers == {"0"}
    metrics = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").open()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    one = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").open()]
    # metrics are reduced over ranks: the same sums as one process (up to summation order)
    assert [round(m["train_acc"], 6) for m in metrics] == [round(m["train_acc"], 6) for m in one]
    assert [m["val_acc"] for m in metrics] == [m["val_acc"] for m in one]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["test_n"] == 360  # evaluation split over ranks: no sample twice, none dropped
    assert json.loads((tmp_path / "two" / "config.json").read_text())["meta"]["world_size"] == 2


def test_every_method_all_reduces_every_gradient(digits_runs, tmp_path):
    r = torchrun("steps", tmp_path / "steps.json", env={"CSKD_TEST_TEACHER": digits_runs["cskd"]})
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((tmp_path / "steps.json").read_text())
    from cskd.config import METHODS

    assert set(results) == set(METHODS)
    for method, res in results.items():
        assert res["local_labels_differ"], method  # else equal gradients would prove nothing
        assert res["params_equal"], method
        # each rank's local batch differs: only an all-reduce makes their gradients equal
        assert res["grad_equal"], (method, res["param"])


def test_resume_auto_and_a_killed_worker_restarted_by_torchrun(tmp_path):
    args = [*TRAIN, "--method", "cskd", "--epochs", 3, "--resume", "auto"]
    env = {"CSKD_TEST_WRITES": tmp_path / "a.log"}
    assert torchrun("train", "train", *args, "--out", tmp_path / "full", env=env).returncode == 0
    # finished: --resume auto does nothing
    before = (tmp_path / "full" / "last.pt").stat().st_mtime_ns
    r = torchrun("train", "train", *args, "--out", tmp_path / "full", env=env)
    assert r.returncode == 0 and "finished earlier" in r.stdout
    assert (tmp_path / "full" / "last.pt").stat().st_mtime_ns == before
    # rank 1 is killed (SIGKILL) in epoch 2; torchrun restarts both workers, which continue from
    # the last checkpoint and end with the uninterrupted run's weights
    steps_per_epoch = -(-1293 // 64)
    r = torchrun("train", "train", *args, "--out", tmp_path / "killed", restarts=1,
                 env={"CSKD_TEST_WRITES": tmp_path / "k.log", "CSKD_TEST_KILL_AT": steps_per_epoch + 5})
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "k.killed").exists()  # the kill really happened
    assert "epochs 2-3" in r.stdout  # the restart resumed after epoch 1
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "killed"), atol=0)


def test_batch_not_divisible_by_the_processes_is_one_line(tmp_path):
    r = torchrun("train", "train", *TRAIN, "--batch-size", 63, "--out", tmp_path / "x",
                 env={"CSKD_TEST_WRITES": tmp_path / "w.log"})
    assert r.returncode != 0
    assert "--batch-size 63 (the global batch) is not divisible by the 2 processes" in r.stderr
    assert not (tmp_path / "x").exists()


def test_sweep_launches_each_run_through_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runs = tmp_path / "runs"
    assert cli("sweep", "--methods", "ce", "--seeds", 0, "--epochs", 1, "--runs", runs, "--nproc-per-node", 2) == 0
    run = runs / "digits-small-ce-e1-s0"
    assert json.loads((run / "config.json").read_text())["meta"]["world_size"] == 2
    assert (runs / "report" / "table.md").is_file()


def test_an_image_file_set_with_batchnorm_under_torchrun(tmp_path):
    """Every rank needs the decode cache at once: one builds it, the others wait and reuse it. With
    BatchNorm, every rank evaluates with rank 0's statistics (those the checkpoint saves): the
    validation loss the run records is that of the weights it saved."""
    import numpy as np
    from conftest import write_image_folder

    from cskd.evaluation.predict import predict
    from cskd.runfolder import RunFolder, read_predictions

    root = write_image_folder(tmp_path / "data", classes=("a", "b", "c"), train=8, test=4, size=(20, 24))
    out = tmp_path / "run"
    r = torchrun("train", "train", "--dataset", "imagefolder", "--data-root", root, "--model", "small",
                 "--method", "cskd", "--epochs", 1, "--batch-size", 6, "--workers", 0, "--val-fraction", 0.25,
                 "--device", "cpu", "--out", out, env={"CSKD_TEST_WRITES": tmp_path / "w.log"})
    assert r.returncode == 0, r.stderr[-3000:]
    recorded = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["val_loss"]
    p = read_predictions(RunFolder(predict(out, split="val", checkpoint="last", progress=False).parent), "val")
    z = np.asarray(p.logits, np.float64)
    z = z - z.max(1, keepdims=True)
    nll = -(z[np.arange(len(z)), p.labels] - np.log(np.exp(z).sum(1))).mean()
    assert abs(recorded - nll) < 1e-4
