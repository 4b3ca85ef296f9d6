import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

# Tiny models: one thread is as fast as two and immune to OpenMP spin-wait stalls when the
# machine is shared.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits_runs(tmp_path_factory):
    """Two finished 2-epoch digits runs (CE and CS-KD), shared by the tests that only read runs."""
    from cskd.config import resolve
    from cskd.train import run_training

    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for method in ("ce", "cskd"):
        out = root / f"digits-{method}"
        cfg = resolve({"method": method, "epochs": 2, "seed": 0, "out": str(out)}, "digits-small")
        run_training(cfg, progress=False)
        runs[method] = out
    return runs
