"""Computations the dashboard starts in the background: a run's predictions, its stats cache or its
t-SNE cache, written through cskd (predict, cskd.evaluation.stats_compute.ensure_stats,
cskd.evaluation.run_data.cached_tsne),
which take the run folder's writer lock.

Jobs run one at a time, cheapest kind first (PRIORITY), each in a child process (`python -m cskd.app.worker`,
at a lower CPU priority): a page never waits for one, a page switch never cancels one, and the
memory a computation needs (an exact neighbour search holds the features as float32) is the
child's, returned when it ends, never the server's. CSKD_DASHBOARD_JOBS=thread runs them in a
thread of the server instead (the tests do: no interpreter start per job).

The registry is shared by every session of the server. A job that failed is not started again
for the same files (`stamp`) unless asked (`retry`), so a broken run does not loop.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

TASKS = {"predict": "predictions", "stats": "metrics", "search": "Recall@1 and neighbours", "tsne": "t-SNE"}
# Queued jobs run cheapest first: every picked run's metrics (seconds) before any exact neighbour
# search (minutes at the ImageNet scale), so all of them show up early.
PRIORITY = {"stats": 0, "predict": 1, "tsne": 2, "search": 3}
KEEP_LINES = 20  # of a child's non-progress output, for the error card
START_DELAY_S = 1.0  # the page that asked for a job is drawn first (a worker's start takes a core)


@dataclass
class Job:
    path: str  # the run folder
    name: str  # the run's name in the dashboard
    task: str  # a key of TASKS
    stamp: tuple  # the run's files (app.paths.RunFiles.key) when asked for
    root: str  # the runs folder: the worker reads none of the run's files that lead outside it
    estimate_s: float | None = None
    state: str = "queued"  # queued, running, done, failed
    fraction: float = 0.0
    text: str = "waiting for the jobs before it"
    error: str | None = None
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    peak_mb: float | None = None

    @property
    def key(self) -> tuple:
        return (self.path, self.task)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def remaining_s(self) -> float | None:
        """Seconds left: extrapolated from the progress once there is some, else the estimate."""
        if self.state == "queued":
            return self.estimate_s
        if self.state != "running" or self.started is None:
            return None
        elapsed = time.monotonic() - self.started
        if self.fraction >= 0.05:
            return max(0.0, elapsed * (1 - self.fraction) / self.fraction)
        return None if self.estimate_s is None else max(0.0, self.estimate_s - elapsed)


_lock = threading.Lock()
_jobs: dict[tuple, Job] = {}
_queue: collections.deque = collections.deque()
_runner: threading.Thread | None = None
_changes = 0  # jobs ended so far: a page that saw fewer knows it must rerun


def submit(path, name: str, task: str, *, stamp: tuple, root, estimate_s: float | None = None,
           retry: bool = False) -> Job:
    """Queue `task` for the run at `path` unless it is queued or running, or it failed (or was done)
    for the same files and `retry` is False; returns the run's job of that task."""
    global _runner
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    key = (str(path), task)
    with _lock:
        job = _jobs.get(key)
        if job is not None and (job.active or (job.stamp == stamp and not retry)):
            return job
        job = Job(str(path), name, task, stamp, str(root), estimate_s)
        _jobs[key] = job
        _queue.append(job)
        if _runner is None or not _runner.is_alive():  # none, or one that died of a bug
            _runner = threading.Thread(target=_run_queue, name="cskd-dashboard-jobs", daemon=True)
            _runner.start()
    return job


def get(path, task: str) -> Job | None:
    with _lock:
        return _jobs.get((str(path), task))


def active() -> list[Job]:
    with _lock:
        return [j for j in _jobs.values() if j.active]


def changes() -> int:
    """How many jobs have ended (a page that saw fewer reruns to show what they wrote)."""
    return _changes


def wait_idle(timeout_s: float = 120.0) -> bool:
    """Block until no job is queued or running (True), or `timeout_s` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while active():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _run_queue() -> None:
    global _changes, _runner
    if os.environ.get("CSKD_DASHBOARD_JOBS") != "thread":
        time.sleep(START_DELAY_S)
    while True:
        with _lock:
            if not _queue:
                _runner = None  # under the lock: a job submitted from now on starts a new runner
                return
            job = min(_queue, key=lambda j: PRIORITY[j.task])  # the first of the cheapest kind
            _queue.remove(job)
            job.state, job.started, job.text = "running", time.monotonic(), "starting"
        try:
            if os.environ.get("CSKD_DASHBOARD_JOBS") == "thread":
                _in_thread(job)
            else:
                _in_process(job)
        except Exception as e:  # noqa: BLE001 -- a job must never stop the queue
            job.error = job.error or f"{type(e).__name__}: {e}"
        with _lock:
            job.state = "failed" if job.error else "done"
            job.fraction = 1.0 if not job.error else job.fraction
            job.finished = time.monotonic()
            _changes += 1
        _log(job)


def _log(job: Job) -> None:
    """One line per finished job on the server's output (what benchmarks/dashboard.py reads)."""
    peak = f", peak memory {job.peak_mb:.0f} MiB" if job.peak_mb is not None else ""
    outcome = f"failed: {job.error}" if job.error else "done"
    print(f"cskd dashboard: {TASKS[job.task]} of {job.name}: {outcome} in {job.finished - job.started:.1f} s{peak}",
          file=sys.stderr, flush=True)


def _report(job: Job, fraction: float, text: str) -> None:
    job.fraction, job.text = min(max(float(fraction), 0.0), 1.0), str(text)


def _in_thread(job: Job) -> None:
    from cskd.app.worker import run_task
    from cskd.errors import UserError

    try:
        run_task(job.path, job.task, lambda f, t: _report(job, f, t), root=job.root)
    except UserError as e:
        job.error = str(e)


def _in_process(job: Job) -> None:
    env = dict(os.environ)  # the worker imports the installed cskd.app, as this process does
    cmd = [sys.executable, "-m", "cskd.app.worker", "--run", job.path, "--task", job.task, "--root", job.root]
    other = collections.deque(maxlen=KEEP_LINES)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        # the server (and the person using it) comes first; set from here, as preexec_fn is unsafe
        # in a process with threads
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, proc.pid, min(os.getpriority(os.PRIO_PROCESS, 0) + 10, 19))
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                msg = None
            if not isinstance(msg, dict):
                other.append(line.rstrip())
                continue
            if "fraction" in msg:
                _report(job, msg["fraction"], msg.get("text", ""))
            if "error" in msg:
                job.error = str(msg["error"])
            if "peak_mb" in msg:
                job.peak_mb = float(msg["peak_mb"])
        rc = proc.wait()
    if rc != 0 and not job.error:
        tail = " / ".join(line for line in other if line.strip())[-400:]
        job.error = f"the {TASKS[job.task]} computation stopped (exit status {rc}){': ' + tail if tail else ''}"
