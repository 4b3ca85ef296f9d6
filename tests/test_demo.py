"""`cskd demo`: CE and CS-KD over seeds in a low-data regime, the printed comparison, and reuse."""

import re

import pytest
from conftest import cli

from cskd.experiments.demo import demo_configs, summary_lines


def test_the_summary_shows_mean_and_sample_std_and_the_paired_differences(tmp_path):
    configs = demo_configs(str(tmp_path), seeds=2, epochs=5, per_class=20)
    values = {("ce", 0): 0.05, ("ce", 1): 0.03, ("cskd", 0): 0.02, ("cskd", 1): 0.03}
    metrics = {}
    for c in configs:
        v = values[(c.method, c.seed)]
        metrics[c.out.split("/")[-1]] = {"top1_error": v, "ece": 2 * v, "ece_after_ts": v, "nll": 10 * v,
                                         "recall_at_1": 1 - v}
    text = "\n".join(summary_lines(metrics, configs, per_class=20, seeds=2))
    assert "20 training images per class (200)" in text and "sample std (n - 1)" in text
    assert "4.00 ± 1.41" in text  # CE top-1 error: mean of 5 % and 3 %, sample std sqrt(2)
    assert "-3.00, +0.00  ->  -1.50 ± 2.12" in text  # CS-KD − CE per seed, then mean ± std
    assert "same sign" not in text  # -3.00 and +0.00: not one sign, so no row is marked
    metrics[configs[-1].out.split("/")[-1]]["top1_error"] = 0.02  # seed 1's CS-KD now lower too
    text = "\n".join(summary_lines(metrics, configs, per_class=20, seeds=2))
    row = next(line for line in text.splitlines() if line.startswith("  top-1 err %"))
    assert row.endswith("(same sign in all 2 seeds of this run)")  # a fact of this run, nothing more
    assert "every seed agrees" not in text
    one = "\n".join(summary_lines(metrics, configs[:2], per_class=20, seeds=1))
    assert "one seed (n = 1)" in one
    # one seed: plain values (top-1 err %, ECE %, ECE after TS %, NLL, R@1 %), no ± std
    assert re.search(r"^  CE +5\.00 +10\.00 +5\.00 +0\.50 +95\.00$", one, re.M), one
    assert re.search(r"^  CS-KD +2\.00 +4\.00 +2\.00 +0\.20 +98\.00$", one, re.M), one
    assert "±" not in one


@pytest.mark.slow
def test_demo_trains_seeds_of_both_methods_prints_the_comparison_and_reuses_its_runs(tmp_path, capsys):
    args = ("demo", "--runs", tmp_path, "--seeds", 2, "--epochs", 3, "--per-class", 10)
    assert cli(*args) == 0
    out = capsys.readouterr().out
    assert "10 training images per class (100)" in out and "ECE after TS %" in out
    assert "CS-KD − CE, paired by seed" in out and "R@1 %" in out
    from cskd.training.machine import cpu_model

    assert f"machine: {cpu_model()}, " in out and "torch " in out and "1 CPU thread(s)" in out
    runs = sorted(p for p in (tmp_path / "demo").iterdir() if p.name.startswith("digits"))
    assert [p.name for p in runs] == ["digits-small-ce-n10-e3-s0", "digits-small-ce-n10-e3-s1",
                                      "digits-small-cskd-T4-L1-n10-e3-s0", "digits-small-cskd-T4-L1-n10-e3-s1"]
    mtimes = [(p / "last.pt").stat().st_mtime_ns for p in runs]
    assert cli(*args) == 0  # a second demo reuses the finished runs
    assert [(p / "last.pt").stat().st_mtime_ns for p in runs] == mtimes
    assert (tmp_path / "demo" / "analysis" / "table.md").is_file()
