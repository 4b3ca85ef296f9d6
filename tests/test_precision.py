"""--precision is a setting that changes results: fp32 by default under the authors' protocol,
refused in one line where the device cannot compute it, recorded in config.json, named in the
tables' titles and in the folder name when it is not the default, and the --dry-run estimate
assumes the throughput of the precision chosen. Threads: recorded, and result-changing."""

import json

import pytest
import torch
from conftest import cli, one_error_line

from cskd.config import NOT_EXPERIMENT, RESUME_MAY_CHANGE, resolve
from cskd.errors import UserError
from cskd.experiments.plans import ASSUMED_TFLOPS, gpu_hours, plan
from cskd.runfolder.run_names import run_name
from cskd.training import device as device_mod
from cskd.training.device import check_precision, precision_used

CPU = torch.device("cpu")


def test_the_authors_protocol_defaults_to_fp32_and_an_explicit_precision_wins():
    assert resolve({"protocol": "authors"}).precision == "fp32"
    assert resolve({"protocol": "authors", "precision": "bf16"}).precision == "bf16"
    assert resolve({}).precision == "auto"  # the clean protocol keeps the old default
    assert precision_used(resolve({}), CPU) == "fp32"  # auto is fp32 on every CPU
    assert "precision" not in NOT_EXPERIMENT and "precision" not in RESUME_MAY_CHANGE
    assert "threads" not in NOT_EXPERIMENT and "threads" not in RESUME_MAY_CHANGE


def test_a_precision_the_device_cannot_compute_is_refused(monkeypatch):
    with pytest.raises(UserError, match="tf32 needs a CUDA GPU"):
        check_precision("tf32", CPU)
    monkeypatch.setattr(device_mod, "bf16_is_native", lambda device: False)
    with pytest.raises(UserError, match="this CPU has no bf16 instructions"):
        check_precision("bf16", CPU)
    check_precision("fp32", CPU)


def test_train_refuses_tf32_on_the_cpu_in_one_line_and_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli("train", "--device", "cpu", "--precision", "tf32", "--epochs", 1, "--out", out) == 2
    assert "--precision tf32 needs a CUDA GPU" in one_error_line(capsys)
    assert not out.exists()


def test_the_dry_run_estimate_follows_the_precision_and_folders_name_a_non_default_one():
    fp32 = plan("table5", runs_root="r")
    bf16 = plan("table5", runs_root="r", precision="bf16")
    assert {i.cfg.precision for i in fp32} == {"fp32"} and {i.cfg.precision for i in bf16} == {"bf16"}
    ratio = gpu_hours(fp32, tflops=ASSUMED_TFLOPS["fp32"]) / gpu_hours(bf16, tflops=ASSUMED_TFLOPS["bf16"])
    assert ratio == pytest.approx(ASSUMED_TFLOPS["bf16"] / ASSUMED_TFLOPS["fp32"])
    assert run_name(fp32[0].cfg).endswith("-authors-e90-s0")  # the protocol's default: not in the name
    assert run_name(bf16[0].cfg).endswith("-authors-bf16-e90-s0")


def test_dry_run_prints_the_precision_and_its_assumed_throughput(tmp_path, capsys):
    assert cli("reproduce", "table5", "--dry-run", "--runs", tmp_path) == 0
    assert "precision fp32; estimated" in capsys.readouterr().out
    assert cli("reproduce", "table5", "--dry-run", "--runs", tmp_path, "--precision", "tf32") == 0
    out = capsys.readouterr().out
    assert f"assumed sustained {ASSUMED_TFLOPS['tf32']:g} TFLOP/s" in out and "precision tf32" in out


def test_every_table_names_the_precision_in_its_title(tmp_path):
    from cskd.analysis.tables import format_table, group_by_seed, to_latex
    from cskd.experiments.reproduce import write_tables

    records = [{"run": f"r{s}", "config": {"method": "ce", "precision": "fp32", "seed": s},
                "metrics": {"top1_error": 0.1 * s}} for s in (1, 2)]
    groups = group_by_seed(records, ignore=("seed",))
    assert format_table(groups, metrics=("top1_error",)).splitlines()[0] == "**precision: fp32**"
    assert to_latex(groups, metrics=("top1_error",)).splitlines()[0] == "% precision: fp32"
    items = plan("table5", runs_root="r", precision="bf16")
    md = write_tables("table5", items, {}, tmp_path, protocol="authors", scale="full")[0].read_text()
    assert md.startswith("**table5: ours vs the paper, protocol authors, precision bf16")


@pytest.mark.slow
def test_an_authors_run_records_fp32_the_threads_and_the_machine(tmp_path):
    out = tmp_path / "run"
    assert cli("train", "--protocol", "authors", "--epochs", 1, "--method", "ce", "--threads", 1, "--out", out) == 0
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["precision"] == "fp32" and record["meta"]["precision"] == "fp32"
    meta = record["meta"]
    assert meta["threads_used"] == 1 and meta["cpu"] and meta["cpu_cores"] >= 1 and meta["torch_version"]
    # a different thread count changes results: a resumed run refuses it
    assert cli("train", "--resume", "--threads", 2, "--out", out) == 2


def test_runs_that_differ_in_threads_or_precision_are_never_seeds_of_one_experiment():
    from cskd.analysis.tables import group_by_seed
    from cskd.config import TrainConfig

    def record(seed, **changes):
        cfg = TrainConfig(seed=seed, **changes).to_dict()
        return {"run": f"r{seed}{changes}", "config": cfg, "metrics": {"top1_error": 0.1}}

    same = group_by_seed([record(0, threads=1), record(1, threads=1)], ignore=NOT_EXPERIMENT)
    assert len(same) == 1 and same[0].seeds == (0, 1)
    assert len(group_by_seed([record(0, threads=1), record(1, threads=2)], ignore=NOT_EXPERIMENT)) == 2
    assert len(group_by_seed([record(0, precision="fp32"), record(1, precision="bf16")], ignore=NOT_EXPERIMENT)) == 2


def test_the_machine_line_names_cpu_cores_torch_and_threads():
    from cskd.training.machine import cpu_model, machine_line, machine_meta

    line = machine_line(3)
    assert line.startswith(f"machine: {cpu_model()}, ") and f"torch {torch.__version__}" in line
    assert line.endswith("3 CPU thread(s)")
    meta = machine_meta(CPU)
    assert meta["threads_used"] == torch.get_num_threads() and meta["cpu_cores"] >= 1


@pytest.mark.parametrize("caps, fast", [({"amx_bf16": True, "avx512_bf16": True}, True),
                                        ({"amx_bf16": False, "avx512_bf16": True}, False),
                                        ({"avx2": True}, False)])
def test_the_speed_paths_take_bf16_on_a_cpu_only_with_amx(caps, fast, monkeypatch):
    """AVX512-BF16 without AMX computes bf16 natively but trained slower than fp32 (docs/performance.md)."""
    from cskd.training.device import bf16_is_fast, bf16_is_native

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps, raising=False)
    assert bf16_is_fast(CPU) is fast
    assert bf16_is_native(CPU) is (caps.get("amx_bf16", False) or caps.get("avx512_bf16", False))
