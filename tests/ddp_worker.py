"""Run under `python -m torch.distributed.run` by tests/test_distributed.py (not a test module).

    ddp_worker.py train ARGS...   `cskd ARGS...`, logging which rank writes run-folder files to
                                  $CSKD_TEST_WRITES, and, when $CSKD_TEST_KILL_AT=N is set, rank 1
                                  SIGKILLs itself after its N-th training step (once: a marker
                                  file next to $CSKD_TEST_WRITES remembers it)
    ddp_worker.py steps OUT.json  one training step of every method; rank 0 writes, per method,
                                  whether both ranks hold identical parameters afterwards and
                                  whether a parameter reached only through a submodule (AdaCos's
                                  head, BYOT's branches, ...) got the same gradient on both ranks
"""

import json
import os
import signal
import sys
from pathlib import Path

import torch


def train(argv):
    import cskd.runfolder.folder as folder
    import cskd.training.epoch as t

    rank = int(os.environ["RANK"])
    log = Path(os.environ["CSKD_TEST_WRITES"])
    real_write = folder.RunFolder.write

    def logged(self, name, writer):
        with open(log, "a") as f:
            f.write(f"{rank} {name}\n")
        return real_write(self, name, writer)

    folder.RunFolder.write = logged
    kill_at = int(os.environ.get("CSKD_TEST_KILL_AT", "0"))
    marker = log.with_suffix(".killed")
    if kill_at and rank == 1 and not marker.exists():
        real_step, count = t.train_step, [0]

        def step(*a, **k):
            out = real_step(*a, **k)
            count[0] += 1
            if count[0] == kill_at:
                marker.write_text("killed")
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        t.train_step = step
    from cskd.cli.main import main

    return main(argv)


# A parameter each method reaches only through a part of the model other than the plain forward.
SUBMODULE_PARAM = {"adacos": "head.weight", "virtual_softmax": "head.weight", "byot": "byot.heads.0.weight",
                   "ddgsd": "stages.0.0.weight"}


def steps(out_path):
    import torch.distributed as dist

    from cskd.config import METHODS, resolve
    from cskd.data.placement import bundle_for
    from cskd.method.sampler import step_generator
    from cskd.training.distributed import init_world
    from cskd.training.epoch import train_step
    from cskd.training.trainer import build_training

    world = init_world("cpu")
    results = {}
    for method in METHODS:
        extra = {"teacher": os.environ["CSKD_TEST_TEACHER"]} if method in ("kd", "kd_cskd") else {}
        cfg = resolve({"method": method, "batch_size": 16, "width": 8, **extra}, "digits-small")
        setup = build_training(cfg, bundle_for(cfg), torch.device("cpu"), world)
        batch = next(iter(setup.source.epoch(0)))
        setup.ctx.generator = step_generator(0, 0, 0)  # what train_epoch sets for each step
        train_step(setup.ctx, setup.method, setup.optimizer, batch, device=torch.device("cpu"), bf16=False)
        labels = batch.y.clone()
        params = dict(setup.model.named_parameters())
        flat = torch.cat([p.detach().flatten() for p in params.values()])
        name = SUBMODULE_PARAM.get(method, "head.weight")
        grad = params[name].grad.detach().flatten()
        gathered = [torch.empty_like(flat) for _ in range(world.size)]
        grads = [torch.empty_like(grad) for _ in range(world.size)]
        all_labels = [torch.empty_like(labels) for _ in range(world.size)]
        dist.all_gather(gathered, flat)
        dist.all_gather(grads, grad)
        dist.all_gather(all_labels, labels)
        results[method] = {"params_equal": bool(torch.equal(gathered[0], gathered[1])),
                           "grad_equal": bool(torch.equal(grads[0], grads[1])), "param": name,
                           "local_labels_differ": not torch.equal(all_labels[0], all_labels[1])}
    if world.main:
        Path(out_path).write_text(json.dumps(results, indent=1))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, rest = sys.argv[1], sys.argv[2:]
    sys.exit(train(rest) if mode == "train" else steps(rest[0]))
