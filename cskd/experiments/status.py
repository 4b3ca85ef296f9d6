"""Where a plan's runs stand: `cskd sweep --status`, `cskd reproduce TABLE --status`, and which runs
a (re)submission sends.

Each run is exactly one of:
- done: its folder holds a finished run (summary.json);
- running: a process holds its folder's writer lock, or SLURM says its task runs;
- pending: its latest task waits in SLURM's queue (PENDING, REQUEUED, ...);
- failed: its latest task ended without finishing the run (sacct's state, else submitit's log);
- missing: never submitted, or the cluster lost its task (neither queued nor ended in the records).

Submissions are recorded in `RUNS/.slurm/submissions.jsonl` (one line per array: job id, launcher
and the run folders of its tasks, in task order); logs are submitit's,
`RUNS/.slurm/<job>_<task>_0_log.out/.err`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cskd.errors import UserError
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.store import LOCK_NAME, META_DIR
from cskd.runfolder.training_log import finished_summary

SLURM_DIR = ".slurm"  # submitit's folder under the runs folder
SUBMISSIONS = "submissions.jsonl"
STATES = ("done", "running", "pending", "failed", "missing")
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED", "CONFIGURING"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


@dataclass
class RunState:
    out: str
    state: str  # one of STATES
    task: str = ""  # the latest task, "<job>_<index>"
    error: str = ""  # failed: the last error line of its log


@dataclass
class Status:
    runs: list[RunState] = field(default_factory=list)

    def of(self, state: str) -> list[RunState]:
        return [r for r in self.runs if r.state == state]

    def to_submit(self) -> list[str]:
        """The run folders a submission sends: missing or failed, never running, pending or done."""
        return [r.out for r in self.runs if r.state in ("missing", "failed")]


def slurm_folder(runs_root) -> Path:
    return Path(runs_root) / SLURM_DIR


def lock_holder(out) -> str | None:
    """Who holds the writer lock of run folder `out` ("PID 123 (cskd ...)"), or None when no process
    does. Reads the lock without creating anything (flock: it dies with its holder)."""
    import fcntl

    path = os.path.join(out, META_DIR, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 400, 0).decode("utf-8", errors="replace").strip() or "another process"
    finally:
        os.close(fd)  # closing the descriptor drops a shared lock taken just now
    return None


def record_submission(runs_root, job_id: str, launcher: str, outs: list[str], *, array: bool = True) -> None:
    """Note a submitted job: an array (tasks "<job>_<index>", one per run of `outs`) or one job."""
    folder = slurm_folder(runs_root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / SUBMISSIONS, "a") as f:
        f.write(json.dumps({"job": job_id, "launcher": launcher, "array": array, "runs": [str(o) for o in outs]})
                + "\n")


def latest_tasks(runs_root) -> dict[str, tuple[str, str]]:
    """{run folder: (task id "<job>_<index>", launcher)} of each run's latest submission."""
    path = slurm_folder(runs_root) / SUBMISSIONS
    tasks: dict[str, tuple[str, str]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut by a kill
                continue
            for k, out in enumerate(record.get("runs", [])):
                task = f"{record['job']}_{k}" if record.get("array", True) else str(record["job"])
                tasks[out] = (task, record.get("launcher", "slurm"))
    return tasks


def sacct_states(job_ids) -> dict[str, str] | None:
    """{"<job>_<index>" (or "<job>" for a one-task job): state} from sacct (a requeued task's latest
    record), or None where sacct is not on PATH or does not answer."""
    if not job_ids or shutil.which("sacct") is None:
        return None
    try:
        done = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(sorted(job_ids))],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    states = {}
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and "[" not in parts[0] and "." not in parts[0]:  # tasks, not pending ranges or steps
            states[parts[0]] = parts[1].split()[0] if parts[1] else ""  # "CANCELLED by 123" -> CANCELLED
    return states


def last_error_line(runs_root, task: str) -> str:
    """The last line of a task's stderr that says what went wrong (cskd's one-line error, else the
    last non-empty line)."""
    path = slurm_folder(runs_root) / f"{task}_0_log.err"
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    ours = [line for line in lines if line.startswith("cskd:") or "UserError:" in line]
    text = (ours or lines or ["empty log"])[-1]
    return text.split("UserError: ", 1)[-1].removeprefix("cskd: ").removeprefix("error: ")[:300]


def _log_says_finished(runs_root, task: str) -> bool | None:
    """From submitit's result file: True (the task returned), False (it failed), None (no result)."""
    folder = slurm_folder(runs_root)
    if (folder / f"{task}_0_result.pkl").is_file():
        # submitit's own pickle ("success"|"error", ...): only its first bytes are looked at, never unpickled
        head = (folder / f"{task}_0_result.pkl").read_bytes()[:64]
        return b"success" in head
    return None


def run_states(outs, runs_root) -> Status:
    """The state of each run folder in `outs` (see the module docstring)."""
    outs = [str(o) for o in outs]
    tasks = latest_tasks(runs_root)
    slurm_jobs = {t.split("_")[0] for o, (t, launcher) in tasks.items() if o in outs and launcher == "slurm"}
    sacct = sacct_states(slurm_jobs)
    status = Status()
    for out in outs:
        task, launcher = tasks.get(out, ("", ""))
        try:
            finished = finished_summary(RunFolder(out))
        except UserError:  # a damaged folder: not done; training says what is wrong
            finished = None
        if finished:
            status.runs.append(RunState(out, "done", task))
        elif lock_holder(out):
            status.runs.append(RunState(out, "running", task))
        elif not task:
            status.runs.append(RunState(out, "missing"))
        else:
            status.runs.append(RunState(out, _task_state(runs_root, task, launcher, sacct), task))
    for r in status.of("failed"):
        r.error = last_error_line(runs_root, r.task)
    return status


def _task_state(runs_root, task: str, launcher: str, sacct: dict | None) -> str:
    """A submitted, unfinished run whose folder is not locked: pending, running, failed or missing."""
    state = (sacct or {}).get(task)
    if state in QUEUED:
        return "pending"
    if state in RUNNING:
        return "running"  # started, not yet at its folder's lock
    if state:  # COMPLETED without a finished run (it lost the lock), FAILED, TIMEOUT, CANCELLED, ...
        return "failed"
    if _log_says_finished(runs_root, task) is not None or (slurm_folder(runs_root) / f"{task}_0_log.err").is_file():
        return "failed"  # ended (or started) without finishing, and nothing holds the folder
    if launcher == "slurm" and sacct is None and shutil.which("squeue"):
        return "pending" if _in_squeue(task) else "missing"
    return "missing" if sacct is not None or launcher != "slurm" else "pending"


def _in_squeue(task: str) -> bool:
    job = task.split("_")[0]
    try:
        done = subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%i"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return True  # cannot tell: do not resubmit it
    return done.returncode != 0 or task in done.stdout.split()  # -r: one line per array task


def print_status(status: Status, hours_left: float, *, tflops: float) -> None:
    counts = ", ".join(f"{len(status.of(s))} {s}" for s in STATES)
    print(f"{len(status.runs)} runs: {counts}")
    for r in status.of("running"):
        print(f"  running  {Path(r.out).name}" + (f"  (task {r.task})" if r.task else ""))
    for r in status.of("failed"):
        print(f"  failed   {Path(r.out).name}  (task {r.task}): {r.error}")
    print(f"estimated GPU time left (all but done): {hours_left:.1f} GPU-hours at an assumed {tflops:g} TFLOP/s")
