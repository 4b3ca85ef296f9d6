"""The GPU check script and the throughput benchmark run end to end (on the CPU, at toy sizes),
so a session that is lent a GPU for a few minutes does not spend them on a broken script."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
RATIOS = re.compile(r"^ratios: cskd_over_ce_paired=(\S+) cskd_over_ce_inbatch=(\S+) fastest_over_reference=(\S+) "
                    r"device=cpu$")
ROW = re.compile(r"^\| (reference|default|fastest|in-batch) \| ([\d.]+) \| \d+ \| ([\d.]+) \| \d+ \| ([\d.]+) \| "
                 r"([\d.]+) \|$")


def test_gpu_check_script_runs_every_step_in_smoke_mode():
    env = dict(os.environ, CSKD_GPU_CHECK_SMOKE="1", OMP_NUM_THREADS="1", PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()

    # Throughput: four table rows whose ratios agree with their step times, and the summary line
    # holds the same quotients.
    rows = {m[1]: tuple(map(float, m.groups()[1:])) for m in map(ROW.match, lines) if m}
    assert set(rows) == {"reference", "default", "fastest", "in-batch"}

    def quotient_of(printed, num_ms, den_ms):
        """`printed` (2 decimals) is num/den for step times that were rounded to 0.1 ms when printed."""
        return (num_ms - 0.05) / (den_ms + 0.05) - 0.005 <= printed <= (num_ms + 0.05) / (den_ms - 0.05) + 0.005

    for ce_ms, cskd_ms, ratio, speedup in rows.values():
        assert ce_ms > 0 and cskd_ms > 0
        assert quotient_of(ratio, cskd_ms, ce_ms)
        assert quotient_of(speedup, rows["reference"][1], cskd_ms)
    ratios = [RATIOS.match(line) for line in lines]
    paired, in_batch, fastest = map(float, next(m for m in ratios if m).groups())
    assert quotient_of(paired, rows["fastest"][1], rows["fastest"][0])
    assert quotient_of(in_batch, rows["in-batch"][1], rows["fastest"][0])
    assert quotient_of(fastest, rows["reference"][1], rows["fastest"][1])

    # The short CS-KD run: one metrics record per epoch, finite losses, a non-zero regulariser.
    records = [json.loads(line) for line in lines if line.startswith('{"epoch"')]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(math.isfinite(r["train_loss"]) and r["train_reg"] > 0 for r in records)

    # The host-sync check ran every method (counting needs CUDA).
    for method in ("ce", "cskd", "mixup_cskd"):
        assert f"{method}: 1 step ran on cpu; syncs are counted on CUDA only" in lines
    assert lines[-1] == "all steps passed"


def test_step_phases_time_every_phase_and_only_cskd_has_a_partner_forward():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_phases.py"), "--device", "cpu", "--width",
                           "4", "--batch-size", "8", "--steps", "2", "--warmup", "1", "--no-compile"],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {m[1]: (float(m[2]), float(m[3])) for m in
            map(re.compile(r"^\| (\w+) \| ([\d.]+) \| ([\d.]+) \|$").match, proc.stdout.splitlines()) if m}
    assert list(rows) == ["data", "forward", "partner", "loss", "backward", "sgd", "sum"]
    assert rows["partner"][0] == 0 and rows["partner"][1] > 0
    for i in (0, 1):  # the sum row adds the phases (each printed to 0.01 ms, the sum to 0.1 ms)
        assert abs(sum(v[i] for k, v in rows.items() if k != "sum") - rows["sum"][i]) <= 0.1
