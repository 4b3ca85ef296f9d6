"""`cskd sweep`'s and `cskd reproduce`'s launcher options (`--launcher local|slurm`, `--parallel`,
the SLURM resources, `--status`), and the Launch they describe (cskd.experiments.slurm). Without
`--launcher slurm` or `--parallel`, runs are trained one after another in this process, as always.
"""

from __future__ import annotations

import argparse

from cskd.errors import UserError

SLURM_ONLY = ("slurm_partition", "slurm_account", "slurm_qos", "cpus_per_gpu", "mem_per_gpu", "time",
              "array_parallelism", "slurm_arg", "wait")


def minutes(text: str) -> int:
    """--time in sbatch's forms, as whole minutes (seconds rounded up): M, M:S, H:M:S, D-H, D-H:M,
    D-H:M:S (so "30:00" is 30 minutes, as sbatch reads it)."""
    t = text.strip()
    days, sep, rest = t.partition("-")
    if not sep:
        days, rest = "0", t
    parts = rest.split(":")
    if not (days.isdigit() and 1 <= len(parts) <= 3 and all(p.isdigit() for p in parts)):
        raise argparse.ArgumentTypeError(f"{text!r} is no time; give minutes (240) or sbatch's M:S, H:M:S, D-H, "
                                         f"D-H:M or D-H:M:S")
    v = [int(p) for p in parts]
    if sep:  # D-H, D-H:M, D-H:M:S
        h, m, s = (v + [0, 0])[:3]
    elif len(v) == 3:  # H:M:S
        h, m, s = v
    else:  # M, M:S
        h, m, s = 0, v[0], v[1] if len(v) == 2 else 0
    return int(days) * 1440 + h * 60 + m + (1 if s else 0)


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. constraint=a100)")
    return key.strip().removeprefix("--"), value


def add_launch_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("launcher (default: one run after another in this process)")
    g.add_argument("--launcher", choices=("local", "slurm"),
                   help="local: --parallel K runs at once on this machine; slurm: one SLURM job array of the "
                        "unfinished runs (through submitit; logs in RUNS/.slurm/)")
    g.add_argument("--parallel", type=int, help="local: runs at once, each on its own GPU where there are several")
    g.add_argument("--status", action="store_true",
                   help="print how many runs are done / running / pending / failed / missing and the GPU-hours left; "
                        "train nothing")
    g.add_argument("--slurm-partition", help="slurm: partition")
    g.add_argument("--slurm-account", help="slurm: account")
    g.add_argument("--slurm-qos", help="slurm: quality of service")
    g.add_argument("--gpus-per-run", type=int, default=1,
                   help="GPUs of one node per run (torchrun over them when more than 1) (default: 1)")
    g.add_argument("--cpus-per-gpu", type=int, help="slurm: CPU cores per GPU")
    g.add_argument("--mem-per-gpu", help="slurm: memory per GPU, e.g. 32G")
    g.add_argument("--time", type=minutes,
                   help="slurm: time limit per run, as sbatch reads it: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S "
                        "(default: twice the --dry-run estimate of the longest run, plus 15 minutes, at least 30)")
    g.add_argument("--array-parallelism", type=int, help="slurm: most tasks of the array running at once")
    g.add_argument("--slurm-arg", type=key_value, action="append", metavar="KEY=VALUE",
                   help="slurm: any other sbatch option, e.g. constraint=a100 (repeatable)")
    g.add_argument("--wait", action="store_true", help="slurm: wait for the jobs to end (then write the tables)")


def launch_fields(args: argparse.Namespace) -> dict | None:
    """The fields of the cskd.experiments.slurm.Launch the options describe, or None for today's
    sequential training."""
    if args.parallel is not None and args.parallel < 1:
        raise UserError(f"--parallel must be a positive number of runs at once; got {args.parallel}")
    launcher = args.launcher or ("local" if args.parallel is not None else None)
    given = [name for name in SLURM_ONLY if getattr(args, name) not in (None, False, [])]
    if launcher != "slurm" and given:
        raise UserError(f"--{given[0].replace('_', '-')} is an option of --launcher slurm; add it, or leave the "
                        f"option out")
    if launcher == "slurm" and args.parallel is not None:
        raise UserError("--parallel is for --launcher local; with slurm, --array-parallelism limits the tasks "
                        "running at once")
    if launcher is not None and args.nproc_per_node != 1 and not (launcher == "local" and args.parallel is None):
        raise UserError("--nproc-per-node is for runs trained in this process; with a launcher, --gpus-per-run N "
                        "trains each run with torchrun over N GPUs")
    if launcher is None or (launcher == "local" and args.parallel is None):
        if args.gpus_per_run != 1:
            raise UserError("--gpus-per-run needs --launcher slurm or --parallel; without them use --nproc-per-node")
        return None
    return dict(launcher=launcher, parallel=args.parallel or 1, partition=args.slurm_partition,
                  account=args.slurm_account, qos=args.slurm_qos, gpus_per_run=args.gpus_per_run,
                  cpus_per_gpu=args.cpus_per_gpu, mem_per_gpu=args.mem_per_gpu, time_min=args.time,
                  array_parallelism=args.array_parallelism, slurm_args=dict(args.slurm_arg or []), wait=args.wait)
