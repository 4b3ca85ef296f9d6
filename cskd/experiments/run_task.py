"""One task of a launched plan (`--launcher slurm` array task, `--launcher local --parallel K` job):
train one run folder with `--resume auto`, in this process or under torchrun over its GPUs.

Preemption: SLURM sends SIGUSR1 `--signal` seconds ahead of the time limit. While an epoch runs,
cskd's own handler takes it (a checkpoint within the epoch, then `Preempted`); the task then hands
the signal on to submitit's handler, which calls `RunTask.checkpoint()` (the same task again: it
continues from the run's last.pt) and requeues the job. Between epochs submitit's handler takes
the signal directly and the run continues from its last epoch's checkpoint. SIGTERM (scancel) is
not requeued.

Two tasks of one run (two submissions of the same plan): the run folder's writer lock decides; the
task that does not get it prints one line and ends without error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from cskd.errors import UserError
from cskd.experiments.status import lock_holder
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.training_log import finished_summary

PREEMPT_SIGNAL = "USR1"  # what cskd's StopSignals handle (with SIGTERM); submitit's default would be USR2


class RunTask:
    """A picklable callable (submitit sends it to the job): train `cfg.out` over `gpus` GPUs."""

    def __init__(self, cfg, gpus: int = 1):
        self.cfg, self.gpus = cfg, gpus

    def __call__(self) -> str:
        out = self.cfg.out
        if finished_summary(RunFolder(out)):
            print(f"{out}: already finished")
            return "finished"
        try:
            if self.gpus > 1:
                holder = lock_holder(out)
                if holder:
                    print(f"cskd: {out} is being trained by {holder}; this task leaves it alone")
                    return "skipped"
                _torchrun_task(self.cfg, self.gpus)
            else:
                from cskd.training.trainer import run_training

                with contextlib.ExitStack() as stack:
                    try:  # the lock decides which of two tasks of one run trains it
                        stack.enter_context(RunFolder(out).writing(f"cskd task {_job_name()}"))
                    except UserError as e:
                        print(f"cskd: {e}; this task leaves it alone")
                        return "skipped"
                    run_training(self.cfg, resume="auto", progress=False)
        except UserError as e:
            if getattr(e, "exit_status", 2) == 128 + signal.SIGUSR1:
                print(f"cskd: {e}; requeued")
                _hand_on_preemption()
            raise
        return "finished"

    def checkpoint(self):
        """submitit's requeue hook: the same task, which continues from the run's checkpoint."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(RunTask(self.cfg, self.gpus))


def _job_name() -> str:
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job else f"local {os.environ.get('SUBMITIT_LOCAL_JOB_ID', os.getpid())}"


def _hand_on_preemption() -> None:
    """Raise SIGUSR1 again now that cskd's handler is gone: submitit's handler checkpoints this task
    and requeues the job (it exits the process)."""
    signal.raise_signal(signal.SIGUSR1)


def _torchrun_task(cfg, gpus: int) -> None:
    """`torchrun --standalone --nproc-per-node GPUS -m cskd train ... --resume auto`. torchrun's agent
    would die of SIGUSR1, so it starts with SIGUSR1 ignored (its workers install cskd's handler while
    training; on a cluster SLURM signals them too); this process turns SIGUSR1 into SIGTERM for the
    agent, which passes it to its workers (each in its own session), and they checkpoint within the
    epoch and end. Then the job is requeued."""
    from cskd.cli.train_options import train_arguments

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(gpus),
               "-m", "cskd", "train", *train_arguments(cfg), "--resume", "auto", "--no-progress"]
    env = {**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}  # PyTorch issue #135712
    proc = subprocess.Popen(command, env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGUSR1, signal.SIG_IGN))
    noted = []

    def forward(signum, frame):
        noted.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        status = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if signal.SIGUSR1 in noted:
        print(f"cskd: {cfg.out} stopped by SIGUSR1 (checkpoint saved); requeued")
        _hand_on_preemption()
    if status != 0:
        raise UserError(f"torchrun ended with status {status} on {cfg.out} (its output above says why)")
