"""Training a plan's runs through submitit instead of one after another in this process.

- `--launcher slurm`: the unfinished runs (missing or failed, cskd.experiments.status) as one SLURM
  job array, one task per run folder (cskd.experiments.run_task), with `--gpus-per-run` GPUs of one
  node each (torchrun when more than one). Teachers that students distil from (Table 4) go in a
  first array; the students' array starts `afterok` of it. The command prints the job id, the task
  count and where the logs go, and returns (unless `--wait`).
- `--launcher local --parallel K`: K runs at once on this machine through submitit's local
  executor, each on its own GPU(s) (CUDA_VISIBLE_DEVICES) where there are GPUs; it waits.

submitit's files (submission scripts, pickled tasks, logs) live in `RUNS/.slurm/`.

Time limit (`--time`): unless given, the largest `--dry-run` estimate of one run of the array
(cskd.experiments.plans.gpu_hours, divided over its GPUs), times TIME_MARGIN, plus TIME_EXTRA_MIN,
and at least TIME_FLOOR_MIN minutes. A run that outlives it is checkpointed on SIGUSR1
(SIGNAL_DELAY_S ahead) and requeued, at most MAX_TIMEOUTS times (submitit's count); a task that
fails otherwise is not requeued: `--status` reports it, and the same command resubmits it.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cskd.errors import UserError
from cskd.experiments.run_task import PREEMPT_SIGNAL, RunTask
from cskd.experiments.status import print_status, record_submission, run_states, slurm_folder

TIME_MARGIN = 2.0  # x the estimate: the estimate assumes a sustained throughput (--tflops) and no data stalls
TIME_EXTRA_MIN = 15  # start-up, data loading, the final evaluation
TIME_FLOOR_MIN = 30
SIGNAL_DELAY_S = 180  # SIGUSR1 this long before the limit: time for a checkpoint within the epoch
MAX_TIMEOUTS = 3  # requeues after a time-out (submitit's max_num_timeout); preemptions are not counted
LOCAL_TIME_MIN = 7 * 24 * 60  # the local executor kills a job after its time limit: a week


@dataclass
class Launch:
    """How a plan's runs are trained (the `--launcher` options)."""

    launcher: str = "local"  # "local" or "slurm"
    parallel: int = 1  # local: runs at once
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_run: int = 1
    cpus_per_gpu: int | None = None
    mem_per_gpu: str | None = None  # SLURM's --mem-per-gpu, e.g. 32G
    time_min: int | None = None
    array_parallelism: int | None = None
    slurm_args: dict = field(default_factory=dict)
    wait: bool = False

    # the plan's commands call these (they sit below this module: cskd.cli.main builds the Launch)
    def run(self, runs, runs_root, *, name: str, tflops: float) -> bool:
        return launch_runs(runs, self, runs_root, name=name, tflops=tflops)

    def show_status(self, runs, runs_root, *, tflops: float) -> None:
        show_status(runs, runs_root, tflops=tflops)


def hours_of(configs, tflops: float) -> float:
    """The dry-run estimate (GPU-hours) of `configs`; 0 for a data set the estimate does not know."""
    from cskd.experiments.plans import Item, gpu_hours

    try:
        return gpu_hours([Item(cfg) for cfg in configs], tflops=tflops)
    except KeyError:
        return 0.0


def default_time_min(configs, gpus_per_run: int, tflops: float) -> int:
    longest = max((hours_of([cfg], tflops) for cfg in configs), default=0.0) / gpus_per_run
    return max(TIME_FLOOR_MIN, math.ceil(longest * 60 * TIME_MARGIN + TIME_EXTRA_MIN))


def check_launch(launch: Launch, configs, runs_root) -> None:
    """Every mistake of the launch options, one line each, before anything is submitted."""
    if launch.parallel < 1:
        raise UserError(f"--parallel must be a positive number of runs at once; got {launch.parallel}")
    if launch.gpus_per_run < 1:
        raise UserError(f"--gpus-per-run must be a positive integer; got {launch.gpus_per_run}")
    for cfg in configs:
        if cfg.batch_size % launch.gpus_per_run:
            raise UserError(f"--gpus-per-run {launch.gpus_per_run} does not divide the global batch of "
                            f"{Path(cfg.out).name} (--batch-size {cfg.batch_size}); choose a divisor of it")
    if launch.time_min is not None and launch.time_min < 1:
        raise UserError(f"--time must be a positive number of minutes; got {launch.time_min}")
    folder = slurm_folder(runs_root)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError
    except OSError:
        raise UserError(f"the runs folder {runs_root} is not writable (its runs and {folder} go there); "
                        f"give a --runs folder you can write") from None
    if launch.launcher == "slurm":
        for tool in ("sbatch", "srun"):
            if shutil.which(tool) is None:
                raise UserError(f"--launcher slurm needs SLURM's `{tool}` on PATH and there is none here; run on "
                                f"the cluster's login node, or use --launcher local")
        _sbatch_test(launch)


def _sbatch_test(launch: Launch) -> None:
    """`sbatch --test-only`: SLURM checks partition, account and QOS without submitting anything."""
    command = ["sbatch", "--test-only", *_resource_flags(launch), "--wrap", "true"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"sbatch refused the job: {_one_line(done.stderr or done.stdout)}")


def _resource_flags(launch: Launch) -> list[str]:
    given = {"partition": launch.partition, "account": launch.account, "qos": launch.qos}
    return [f"--{k}={v}" for k, v in given.items() if v]


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no message")[:300]


def launch_runs(runs, launch: Launch, runs_root, *, name: str, tflops: float) -> bool:
    """Submit (slurm) or train (local) the runs of `runs` = [(config, is_teacher)] that are missing or
    failed. Returns True when every run of the plan is finished afterwards."""
    check_launch(launch, [cfg for cfg, _ in runs], runs_root)
    status = run_states([cfg.out for cfg, _ in runs], runs_root)
    todo = set(status.to_submit())
    left = {s: len(status.of(s)) for s in ("done", "running", "pending")}
    if not todo:
        print(f"nothing to submit: {left['done']} done, {left['running']} running, {left['pending']} pending")
        return left["done"] == len(runs)
    teachers = [cfg for cfg, teacher in runs if teacher and cfg.out in todo]
    students = [cfg for cfg, teacher in runs if not teacher and cfg.out in todo]
    print(f"{len(todo)} of {len(runs)} runs to train ({left['done']} done, {left['running']} running, "
          f"{left['pending']} pending are left alone)")
    if launch.launcher == "slurm":
        waiting_on = {r.task.split("_")[0] for r in status.runs
                      if r.state in ("running", "pending") and r.task and r.out in {c.out for c, t in runs if t}}
        jobs = _submit_slurm(teachers, students, launch, runs_root, name=name, tflops=tflops, after=waiting_on)
        if launch.wait:
            for job in jobs:
                job.wait()
    else:
        _run_local(teachers, launch, runs_root)
        _run_local(students, launch, runs_root)
    final = run_states([cfg.out for cfg, _ in runs], runs_root)
    if launch.launcher == "local" or launch.wait:
        failed = final.of("failed")
        if failed:
            raise UserError(f"{len(failed)} run(s) failed, e.g. {Path(failed[0].out).name}: {failed[0].error}; "
                            f"the same command trains them again (see --status)")
    return len(final.of("done")) == len(runs)


def _slurm_executor(launch: Launch, runs_root, time_min: int, name: str):
    import submitit

    executor = submitit.SlurmExecutor(folder=slurm_folder(runs_root), max_num_timeout=MAX_TIMEOUTS)
    n = launch.gpus_per_run
    given = {"partition": launch.partition, "account": launch.account, "qos": launch.qos,
             "mem_per_gpu": launch.mem_per_gpu, "cpus_per_task": launch.cpus_per_gpu and launch.cpus_per_gpu * n}
    executor.update_parameters(
        job_name=f"cskd-{name}", time=time_min, nodes=1, ntasks_per_node=1, gpus_per_node=n,
        signal_delay_s=SIGNAL_DELAY_S, setup=[f"export SUBMITIT_PREEMPT_SIGNAL={PREEMPT_SIGNAL}"],
        **({"array_parallelism": launch.array_parallelism} if launch.array_parallelism else {}),
        **{k: v for k, v in given.items() if v})
    return executor


def _submit_slurm(teachers, students, launch: Launch, runs_root, *, name: str, tflops: float, after: set):
    """One array of the teachers, one of the students (afterok of the teachers' jobs)."""
    from submitit.core.utils import FailedJobError

    time_min = launch.time_min or default_time_min(teachers + students, launch.gpus_per_run, tflops)
    executor = _slurm_executor(launch, runs_root, time_min, name)
    jobs, after = [], set(after)
    for kind, configs in (("teachers", teachers), ("runs", students)):
        if not configs:
            continue
        extra = {"signal": f"{PREEMPT_SIGNAL}@{SIGNAL_DELAY_S}", "requeue": True, **launch.slurm_args}
        if after:
            extra["dependency"] = "afterok:" + ":".join(sorted(after))
        executor.update_parameters(additional_parameters=extra)
        try:
            array = executor.submit_array([RunTask(cfg, launch.gpus_per_run) for cfg in configs])
        except FailedJobError as e:
            raise UserError(f"sbatch refused the job array: {_one_line(str(e))}") from None
        job = array[0].job_id.split("_")[0]
        # submitit submits a single task as a plain job: its task is "<job>", not "<job>_0"
        record_submission(runs_root, job, "slurm", [cfg.out for cfg in configs], array=len(configs) > 1)
        where = f"partition {launch.partition}" if launch.partition else "the default partition"
        print(f"submitted job array {job}: {len(configs)} {kind}, {launch.gpus_per_run} GPU(s) and {time_min} min "
              f"each, to {where}" + (f", after job(s) {', '.join(sorted(after))}" if after else ""))
        print(f"  logs: {slurm_folder(runs_root)}/{job}_<task>_0_log.out and .err")
        after = {job}
        jobs += array
    return jobs


def local_gpus() -> list[str]:
    """This machine's GPUs as CUDA_VISIBLE_DEVICES names them (the visible ones when it is set)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        names = [g.strip() for g in visible.split(",") if g.strip()]
        odd = [g for g in names if not g.isdigit()]
        if odd:  # UUIDs or MIG ids: submitit hands plain indices to each job
            raise UserError(f"CUDA_VISIBLE_DEVICES names GPUs by UUID or MIG id ({odd[0]}); --launcher local "
                            f"--parallel needs plain GPU indices: set CUDA_VISIBLE_DEVICES=0,1,... or unset it")
        return names
    import torch

    return [str(k) for k in range(torch.cuda.device_count())]


@contextlib.contextmanager
def _preempt_signal_env():
    """The local jobs inherit this environment: submitit's handler there listens to PREEMPT_SIGNAL."""
    before = os.environ.get("SUBMITIT_PREEMPT_SIGNAL")
    os.environ["SUBMITIT_PREEMPT_SIGNAL"] = PREEMPT_SIGNAL
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SUBMITIT_PREEMPT_SIGNAL", None)
        else:
            os.environ["SUBMITIT_PREEMPT_SIGNAL"] = before


def _run_local(configs, launch: Launch, runs_root) -> None:
    """Train `configs` through submitit's local executor, `launch.parallel` at a time, each slot on its
    own GPUs (round robin over this machine's GPUs; none on a machine without)."""
    import submitit

    if not configs:
        return
    gpus = local_gpus()
    n = launch.gpus_per_run if gpus else 0
    slots = {k: [gpus[(k * n + j) % len(gpus)] for j in range(n)] if gpus else [] for k in range(launch.parallel)}
    executor = submitit.LocalExecutor(folder=slurm_folder(runs_root))
    queue, running = list(configs), {}
    while queue or running:
        for slot in [s for s in slots if s not in running]:
            if not queue:
                break
            cfg = queue.pop(0)
            # visible_gpus are CUDA_VISIBLE_DEVICES entries: plain indices (submitit takes ints)
            executor.update_parameters(timeout_min=launch.time_min or LOCAL_TIME_MIN, gpus_per_node=n,
                                       visible_gpus=tuple(int(g) for g in slots[slot]), signal_delay_s=SIGNAL_DELAY_S)
            with _preempt_signal_env():
                job = executor.submit(RunTask(cfg, launch.gpus_per_run))
            record_submission(runs_root, job.job_id, "local", [cfg.out], array=False)
            print(f"started {Path(cfg.out).name}" + (f" on GPU {','.join(slots[slot])}" if n else "") +
                  f" (log: {job.paths.stdout})")
            running[slot] = (job, cfg)
        time.sleep(0.5)
        for slot, (job, cfg) in list(running.items()):
            if job.done():
                del running[slot]
                error = job.exception()
                print(f"{'failed' if error else 'ended'} {Path(cfg.out).name}")


def show_status(runs, runs_root, *, tflops: float) -> None:
    """`--status`: the counts of the plan's runs, the failed ones with their last error line, and the
    estimated GPU-hours of all that is not done."""
    status = run_states([cfg.out for cfg, _ in runs], runs_root)
    done = {r.out for r in status.of("done")}
    print_status(status, hours_of([cfg for cfg, _ in runs if cfg.out not in done], tflops), tflops=tflops)
