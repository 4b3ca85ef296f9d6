"""Training the runs of a plan (a sweep's grid, a paper table): one run at a time, in this process
or under torchrun, after checking that every data set the plan names can be loaded.
"""

from __future__ import annotations

from cskd.errors import UserError
from cskd.training.trainer import run_training


def check_data(configs) -> None:
    """Load every distinct data set the configs name (files listed, not decoded), so that a missing or
    mislaid one stops the sweep before its first run rather than hours into it."""
    from cskd.data.sets import bundle_key, load_bundle_of

    seen = set()
    for cfg in configs:
        key = bundle_key(cfg)
        if key not in seen:
            seen.add(key)
            load_bundle_of(cfg)


def train_item(cfg, *, nproc_per_node: int = 1, progress: bool | None = None) -> None:
    """Train (start, continue, or skip when finished) one run of a grid: in this process, or under
    torchrun over `nproc_per_node` local processes."""
    if nproc_per_node < 1:
        raise UserError(f"--nproc-per-node must be a positive integer; got {nproc_per_node}")
    if nproc_per_node > 1:
        _torchrun(cfg, nproc_per_node)
    else:
        run_training(cfg, resume="auto", progress=progress)


def _torchrun(cfg, nproc_per_node: int) -> None:
    """`torchrun --standalone --nproc-per-node N -m cskd train ... --resume auto` for one run."""
    import os
    import subprocess
    import sys

    from cskd.cli.train_options import train_arguments

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc_per_node),
               "-m", "cskd", "train", *train_arguments(cfg), "--resume", "auto"]
    # torchrun's shared store hands restarted workers stale addresses (PyTorch issue #135712)
    env = {**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    status = subprocess.run(command, env=env).returncode
    if status != 0:
        raise UserError(f"torchrun ended with status {status} on {cfg.out} (its output above says why); run the "
                        f"same sweep again to continue")
