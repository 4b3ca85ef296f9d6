"""`--launcher slurm|local` and `--status` without a cluster: stand-in `sbatch`, `srun`, `squeue`,
`sacct`, `scancel` and `scontrol` on PATH (as submitit's own tests do) record what is submitted;
`sacct` answers what a test writes into STANDIN/sacct.txt.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import cli, one_error_line

from cskd.cli.launch_options import minutes

SBATCH = r'''#!/usr/bin/env python3
import os, re, sys
from pathlib import Path
record = Path(os.environ["STANDIN"])
args = sys.argv[1:]
if "--test-only" in args:
    for a in args:
        m = re.fullmatch(r"--(partition|account)=(.*)", a)
        if m and m.group(2) not in os.environ.get("STANDIN_KNOWN", "gpu,lab").split(","):
            sys.exit(print(f"sbatch: error: invalid {m.group(1)} specified: {m.group(2)}", file=sys.stderr) or 1)
    sys.exit(print("sbatch: Job 0 to start at now", file=sys.stderr))
n = len(list(record.glob("submitted_*.sh"))) + 1
text = Path(args[-1]).read_text()
(record / f"submitted_{n}.sh").write_text(text)
print(f"Submitted batch job {1000 + n}")
if os.environ.get("STANDIN_RUN"):  # run the tasks here, one after another, once submitit has named its files
    import subprocess
    subprocess.Popen([sys.executable, str(record.parent / "bin" / "run_array"), str(record / f"submitted_{n}.sh"),
                      str(1000 + n)], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
'''
RUN_ARRAY = r'''#!/usr/bin/env python3
import os, re, subprocess, sys
from pathlib import Path
script, job = sys.argv[1], sys.argv[2]
match = re.search(r"#SBATCH --array=0-(\d+)", Path(script).read_text())
for k in range(int(match.group(1)) + 1 if match else 1):
    env = {**os.environ, "SLURM_JOB_ID": job, "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0",
           "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "localhost"}
    if match:
        env.update(SLURM_ARRAY_JOB_ID=job, SLURM_ARRAY_TASK_ID=str(k))
    requeued = Path(os.environ["STANDIN"]) / (f"requeue_{job}" + (f"_{k}" if match else ""))
    while True:
        subprocess.run(["bash", script], env=env)
        if not requeued.exists():  # scontrol requeue was called: run the task again
            break
        requeued.unlink()
(Path(os.environ["STANDIN"]) / f"ran_{job}").write_text("")
'''
SCONTROL = r'''#!/usr/bin/env python3
import os, sys
from pathlib import Path
if sys.argv[1:2] == ["requeue"]:
    (Path(os.environ["STANDIN"]) / f"requeue_{sys.argv[2]}").write_text("")
'''
SRUN = r'''#!/usr/bin/env python3
import os, subprocess, sys
args, files = sys.argv[1:], {}
while args and args[0].startswith("--"):
    flag = args.pop(0)
    if flag in ("--output", "--error"):
        job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ["SLURM_JOB_ID"])
        task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
        name = args.pop(0).replace("%A", job).replace("%a", task).replace("%j", job).replace("%t", "0")
        files[flag] = open(name, "a")
sys.exit(subprocess.run(args, stdout=files.get("--output"), stderr=files.get("--error")).returncode)
'''
SACCT = r'''#!/usr/bin/env python3
import os, sys
from pathlib import Path
f = Path(os.environ["STANDIN"]) / "sacct.txt"
print(f.read_text() if f.exists() else "", end="")
'''
NOOP = "#!/bin/sh\nexit 0\n"


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """A folder of stand-in SLURM commands, first on PATH; returns the folder they record into."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    for name, text in {"sbatch": SBATCH, "sacct": SACCT, "srun": SRUN, "squeue": NOOP, "scancel": NOOP,
                       "scontrol": SCONTROL, "run_array": RUN_ARRAY}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN", str(record))
    return record


SWEEP = ["sweep", "--preset", "digits-small", "--methods", "ce", "cskd", "--seeds", "0", "1", "--epochs", "1"]
NAMES = ["digits-small-ce-e1-s0", "digits-small-ce-e1-s1", "digits-small-cskd-T4-L1-e1-s0",
         "digits-small-cskd-T4-L1-e1-s1"]


def submissions(runs: Path) -> list[dict]:
    return [json.loads(line) for line in (runs / ".slurm" / "submissions.jsonl").read_text().splitlines()]


def test_one_array_task_per_unfinished_run_with_the_requested_resources(standin, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli(*SWEEP, "--runs", runs, "--launcher", "slurm", "--slurm-partition", "gpu", "--slurm-account", "lab",
               "--gpus-per-run", "2", "--cpus-per-gpu", "4", "--mem-per-gpu", "16G", "--time", "1:30:00",
               "--slurm-arg", "constraint=a100", "--array-parallelism", "3") == 0
    out = capsys.readouterr().out
    assert "submitted job array 1001: 4 runs, 2 GPU(s) and 90 min each, to partition gpu" in out
    assert f"logs: {runs}/.slurm/1001_<task>_0_log.out" in out
    script = (standin / "submitted_1.sh").read_text()
    for line in ("--array=0-3%3", "--partition=gpu", "--account=lab", "--gpus-per-node=2", "--cpus-per-task=8",
                 "--mem-per-gpu=16G", "--time=90", "--signal=USR1@180", "--constraint=a100", "--requeue",
                 "--nodes=1", "--ntasks-per-node=1"):
        assert f"#SBATCH {line}\n" in script, line
    assert "export SUBMITIT_PREEMPT_SIGNAL=USR1\n" in script and "submitit.core._submit" in script
    # one pickled task per run, in the recorded order, each with the run's folder and its GPUs
    from submitit.core.utils import DelayedSubmission

    [record] = submissions(runs)
    assert record["job"] == "1001" and [Path(r).name for r in record["runs"]] == NAMES
    tasks = [DelayedSubmission.load(runs / ".slurm" / f"1001_{k}_submitted.pkl").function for k in range(4)]
    assert [(Path(t.cfg.out).name, t.gpus) for t in tasks] == [(n, 2) for n in NAMES]
    assert not (runs / NAMES[0]).exists()  # nothing trained here


def test_default_time_is_twice_the_estimate_plus_a_quarter_hour_at_least_half_an_hour(standin, tmp_path, capsys):
    assert cli(*SWEEP, "--runs", tmp_path / "runs", "--launcher", "slurm") == 0
    assert "#SBATCH --time=30\n" in (standin / "submitted_1.sh").read_text()  # digits: seconds, so the floor
    assert "the default partition" in capsys.readouterr().out
    from cskd.config import resolve
    from cskd.experiments.slurm import default_time_min, hours_of

    cfg = resolve({}, "cifar100-preact18")
    hours = hours_of([cfg], 50.0)
    assert hours > 0.1  # 200 epochs of CIFAR-100
    assert default_time_min([cfg], 2, 50.0) == int(-(-(hours / 2 * 60 * 2 + 15) // 1))


def test_status_counts_and_resubmission_sends_only_missing_and_failed(standin, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli(*SWEEP, "--runs", runs, "--launcher", "slurm") == 0
    # run 0: its folder's lock is held (training); 1: failed; 2: waits in the queue; 3: SLURM lost it
    (standin / "sacct.txt").write_text("1001_0|RUNNING\n1001_1|FAILED\n1001_2|PENDING\n")
    (runs / ".slurm" / "1001_1_0_log.err").write_text("Traceback ...\ncskd: error: CUDA out of memory\n")
    holder = subprocess.Popen([sys.executable, "-c", "import sys,time; from cskd.runfolder.store import FolderLock\n"
                               f"with FolderLock({str(runs / NAMES[0])!r}, 'cskd train x'):\n"
                               " print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert cli(*SWEEP, "--runs", runs, "--status") == 0
        out = capsys.readouterr().out
        assert "4 runs: 0 done, 1 running, 1 pending, 1 failed, 1 missing" in out
        assert f"failed   {NAMES[1]}  (task 1001_1): CUDA out of memory" in out
        assert "GPU-hours" in out
        assert cli(*SWEEP, "--runs", runs, "--launcher", "slurm") == 0
        assert "2 of 4 runs to train (0 done, 1 running, 1 pending are left alone)" in capsys.readouterr().out
        assert "--array=0-1%2" in (standin / "submitted_2.sh").read_text()
        assert [Path(r).name for r in submissions(runs)[-1]["runs"]] == [NAMES[1], NAMES[3]]
    finally:
        holder.kill()
        holder.wait()


def test_a_second_task_of_a_running_run_leaves_it_alone_in_one_line(tmp_path, capsys):
    from cskd.config import resolve
    from cskd.experiments.run_task import RunTask

    out = tmp_path / "runs" / "r"
    cfg = resolve({"epochs": 1, "out": str(out)}, "digits-small")
    holder = subprocess.Popen([sys.executable, "-c", "import time; from cskd.runfolder.store import FolderLock\n"
                               f"with FolderLock({str(out)!r}, 'cskd train x'):\n print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "held"
        assert RunTask(cfg)() == "skipped"
        line = capsys.readouterr().out.strip()
        assert "\n" not in line and "is being written by PID" in line and "this task leaves it alone" in line
        assert not (out / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_slurm_mistakes_are_one_line_before_anything_is_submitted(standin, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    cases = [
        (["--launcher", "slurm", "--slurm-partition", "nope"], "sbatch refused the job: sbatch: error: invalid "
                                                              "partition specified: nope"),
        (["--launcher", "slurm", "--slurm-account", "x"], "invalid account specified: x"),
        (["--launcher", "slurm", "--gpus-per-run", "3"], "--gpus-per-run 3 does not divide the global batch"),
        (["--parallel", "0"], "--parallel must be a positive number of runs at once; got 0"),
        (["--slurm-partition", "gpu"], "--slurm-partition is an option of --launcher slurm"),
        (["--launcher", "slurm", "--parallel", "2"], "--parallel is for --launcher local"),
        (["--parallel", "2", "--nproc-per-node", "2"], "with a launcher, --gpus-per-run N"),
    ]
    for extra, message in cases:
        assert cli(*SWEEP, "--runs", runs, *extra) == 2
        assert message in one_error_line(capsys), extra
    (tmp_path / "file").write_text("x")
    assert cli(*SWEEP, "--runs", tmp_path / "file" / "runs", "--launcher", "slurm") == 2
    assert "is not writable" in one_error_line(capsys)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert cli(*SWEEP, "--runs", runs, "--launcher", "slurm") == 2
    line = one_error_line(capsys)
    assert "needs SLURM's `sbatch` on PATH" in line and "--launcher local" in line
    assert not list(standin.glob("submitted_*"))


def test_table4_teachers_go_first_and_the_students_wait_for_them(standin, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli("reproduce", "table4", "--scale", "smoke", "--runs", runs, "--launcher", "slurm",
               "--slurm-partition", "gpu") == 0
    first, second = (standin / "submitted_1.sh").read_text(), (standin / "submitted_2.sh").read_text()
    teachers, students = submissions(runs)
    assert "--dependency" not in first and "#SBATCH --dependency=afterok:1001\n" in second
    assert "--array" not in first and not teachers["array"]  # one teacher at smoke scale: a plain job
    assert f"#SBATCH --array=0-{len(students['runs']) - 1}%{len(students['runs'])}\n" in second
    assert all("kd" not in Path(r).name.split("-")[2:3] for r in teachers["runs"])  # the CS-KD teachers
    assert "the tables are written once every run is finished" in capsys.readouterr().out


def test_time_option_reads_minutes_and_slurm_times():
    # as sbatch reads them: M, M:S (seconds rounded up), H:M:S, D-H, D-H:M, D-H:M:S
    times = ("90", "30:00", "1:30", "1:30:01", "2-00", "2-00:00", "1-2:30:10")
    assert [minutes(t) for t in times] == [90, 30, 2, 91, 2880, 2880, 1591]
    for bad in ("1h", "1:2:3:4", "-5", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="no time"):
            minutes(bad)


@pytest.mark.slow
def test_local_parallel_sweep_trains_every_run_and_a_resubmission_sends_nothing(standin, tmp_path, capsys):
    runs = tmp_path / "runs"
    sweep = [*SWEEP[:-1], "2"]
    assert cli(*sweep, "--launcher", "local", "--parallel", "2", "--runs", runs) == 0
    names = [n.replace("-e1-", "-e2-") for n in NAMES]
    for name in names:
        assert json.loads((runs / name / "summary.json").read_text())["finished"]
        assert len((runs / name / "metrics.jsonl").read_text().splitlines()) == 2  # epochs
    assert "method=ce" in (runs / "report" / "table.md").read_text()
    assert len(submissions(runs)) == 4 and all(not s["array"] for s in submissions(runs))
    capsys.readouterr()
    assert cli(*sweep, "--runs", runs, "--status") == 0
    assert "4 runs: 4 done, 0 running, 0 pending, 0 failed, 0 missing" in capsys.readouterr().out
    assert cli(*sweep, "--runs", runs, "--launcher", "slurm", "--slurm-partition", "gpu") == 0
    assert "nothing to submit: 4 done, 0 running, 0 pending" in capsys.readouterr().out
    assert not list(standin.glob("submitted_*"))


@pytest.mark.slow
def test_the_stand_in_cluster_runs_the_array_and_wait_writes_the_report(standin, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STANDIN_RUN", "1")
    monkeypatch.setenv("PYTHONPATH", os.getcwd())
    runs = tmp_path / "runs"
    two = [*SWEEP[:6], "--seeds", "0", "--epochs", "1"]  # ce and cskd, one seed
    assert cli(*two, "--runs", runs, "--launcher", "slurm", "--slurm-partition", "gpu", "--wait") == 0
    out = capsys.readouterr().out  # --wait: the command returns once the tasks have ended, with the report
    assert "submitted job array 1001: 2 runs" in out and "2 trained, 0 resumed, 0 already finished" in out
    assert (runs / "report" / "table.md").is_file()
    for k, name in enumerate(("digits-small-ce-e1-s0", "digits-small-cskd-T4-L1-e1-s0")):
        log = (runs / ".slurm" / f"1001_{k}_0_log.out").read_text()
        assert json.loads((runs / name / "summary.json").read_text())["finished"], log
        assert f"Starting with JobEnvironment(job_id=1001_{k}," in log  # submitit's SLURM side, array task k
    (standin / "sacct.txt").write_text("1001_0|COMPLETED\n1001_1|COMPLETED\n")
    assert cli(*two, "--runs", runs, "--status") == 0
    assert "2 runs: 2 done, 0 running, 0 pending, 0 failed, 0 missing" in capsys.readouterr().out
    assert cli(*two, "--runs", runs) == 0  # no launcher: trains nothing, writes the report again
    assert "0 trained, 0 resumed, 2 already finished" in capsys.readouterr().out


@pytest.mark.slow
def test_sigusr1_on_the_stand_in_cluster_requeues_through_scontrol_and_continues(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_RUN", "1")
    monkeypatch.setenv("PYTHONPATH", os.getcwd())
    runs, plain = tmp_path / "runs", tmp_path / "plain"
    one = [*SWEEP[:4], "ce", "--seeds", "0", "--epochs", "4"]
    assert cli(*one, "--runs", runs, "--launcher", "slurm") == 0
    run, deadline = runs / "digits-small-ce-e4-s0", time.time() + 300
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    tasks = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).startswith(
        f"{sys.executable} -u -m submitit.core._submit {runs}")]
    assert len(tasks) == 1
    os.kill(tasks[0], signal.SIGUSR1)
    while not (standin / "ran_1001").exists() and time.time() < deadline:
        time.sleep(0.2)
    log = (runs / ".slurm" / "1001_0_log.out").read_text() + (runs / ".slurm" / "1001_0_log.err").read_text()
    assert "stopped by SIGUSR1" in log and "Requeued job 1001" in log, log
    assert log.count("Starting with JobEnvironment") == 2, log
    assert json.loads((run / "summary.json").read_text())["finished"]
    assert cli(*one, "--runs", plain) == 0
    a = torch.load(run / "last.pt", weights_only=True, map_location="cpu")["model"]
    b = torch.load(plain / run.name / "last.pt", weights_only=True, map_location="cpu")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("gpus", [1, 2])  # 2: torchrun over 2 CPU processes, compared with --nproc-per-node 2
def test_a_task_stopped_by_sigusr1_is_requeued_and_ends_with_the_uninterrupted_weights(tmp_path, gpus):
    if not Path("/proc/self/task").exists():
        pytest.skip("needs /proc to find the task's process")
    runs, plain = tmp_path / "runs", tmp_path / "plain"
    args = [sys.executable, "-m", "cskd", *SWEEP[:4], "ce", "--seeds", "0", "--epochs", "4"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([*args, "--launcher", "local", "--parallel", "1", "--gpus-per-run", str(gpus),
                             "--runs", str(runs)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = runs / "digits-small-ce-e4-s0"
    deadline = time.time() + 300
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:  # the first epoch is done
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.05)
    controller = int(submissions(runs)[0]["job"])
    [task] = _children(controller)
    os.kill(task, signal.SIGUSR1)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    log = (runs / ".slurm" / f"{controller}_0_log.out").read_text()
    err = (runs / ".slurm" / f"{controller}_0_log.err").read_text()
    assert "requeued" in log, log + err
    assert re.search(r"stopped by SIG(USR1|TERM) (at|after) epoch", log + err), log
    assert (log + err).count("Starting with JobEnvironment") == 2 and "Requeued job" in log + err  # ran twice
    assert json.loads((run / "summary.json").read_text())["finished"]
    subprocess.run([*args, "--nproc-per-node", str(gpus), "--runs", str(plain)], env=env, check=True,
                   capture_output=True)
    a = torch.load(run / "last.pt", weights_only=True, map_location="cpu")["model"]
    b = torch.load(plain / "digits-small-ce-e4-s0" / "last.pt", weights_only=True, map_location="cpu")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
