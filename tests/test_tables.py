import csv
import io
import math

import numpy as np
import pytest

from analysis.tables import format_table, group_by_seed, to_csv, to_latex, txl_grid


def rec(name, method, seed, top1, nll=1.0, T=4.0, lam=1.0, **extra):
    cfg = dict(dataset="cifar100", model="preact_resnet18", method=method, temperature=T,
               lambda_cls=lam, seed=seed, epochs=200, out=f"runs/{name}")
    return {"run": name, "config": cfg, "metrics": dict(top1_error=top1, nll=nll, **extra)}


RECORDS = [
    rec("ce0", "ce", 0, 0.20, nll=1.0),
    rec("cskd0", "cskd", 0, 0.10),
    rec("ce1", "ce", 1, 0.22, nll=1.2),
    rec("ce2", "ce", 2, 0.24, nll=1.4),
]


def test_group_by_seed_mean_and_sample_std():
    groups = group_by_seed(RECORDS)
    assert [g.runs for g in groups] == [("ce0", "ce1", "ce2"), ("cskd0",)]
    ce, cskd = groups
    assert ce.seeds == (0, 1, 2) and "seed" not in ce.config and "out" not in ce.config
    # mean(.20, .22, .24) = .22; sample std = sqrt((.02² + 0 + .02²) / 2) = .02
    assert ce.mean["top1_error"] == pytest.approx(0.22)
    assert ce.std["top1_error"] == pytest.approx(0.02)
    assert ce.n["top1_error"] == 3
    # one run: std 0, n 1
    assert cskd.std["top1_error"] == 0.0 and cskd.n["top1_error"] == 1


def test_other_config_differences_split_groups():
    groups = group_by_seed([rec("a", "cskd", 0, 0.1, T=4.0), rec("b", "cskd", 1, 0.1, T=1.0)])
    assert len(groups) == 2


def test_format_table_markdown():
    text = format_table(group_by_seed(RECORDS), metrics=("top1_error", "nll", "ece"))
    lines = text.strip().splitlines()
    assert lines[0] == "| run | n | top1_error (%) | nll | ece (%) |"
    # only `method` differs between the groups, so it labels the rows
    assert lines[2] == "| method=ce | 3 | 22.00 ± 2.00 | 1.20 ± 0.20 | n/a |"
    assert lines[3] == "| method=cskd | 1 | 10.00 ± 0.00 | 1.00 ± 0.00 | n/a |"
    raw = format_table(group_by_seed(RECORDS), metrics=("top1_error",), percent=False)
    assert "| method=ce | 3 | 0.22 ± 0.02 |" in raw


def test_to_csv_round_trips():
    rows = list(csv.DictReader(io.StringIO(to_csv(group_by_seed(RECORDS),
                                                  metrics=("top1_error", "ece")))))
    assert rows[0]["label"] == "method=ce" and rows[0]["runs"] == "ce0;ce1;ce2"
    assert float(rows[0]["top1_error_mean"]) == pytest.approx(22.0)
    assert float(rows[0]["top1_error_std"]) == pytest.approx(2.0)
    assert rows[0]["ece_mean"] == ""


def test_to_latex_booktabs():
    tex = to_latex(group_by_seed(RECORDS), metrics=("top1_error",))
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"top1\_error (\%)" in tex
    assert r"method=ce & 3 & 22.00 $\pm$ 2.00 \\" in tex


def test_txl_grid():
    records = [rec("t1l1", "cskd", 0, 0.30, T=1.0, lam=1.0),
               rec("t1l1s", "cskd", 1, 0.32, T=1.0, lam=1.0),
               rec("t4l1", "cskd", 0, 0.20, T=4.0, lam=1.0),
               rec("t4l2", "cskd", 0, 0.25, T=4.0, lam=2.0)]
    temps, lambdas, mean, std = txl_grid(group_by_seed(records))
    np.testing.assert_array_equal(temps, [1.0, 4.0])
    np.testing.assert_array_equal(lambdas, [1.0, 2.0])
    # T=1, λ=2 was never run -> NaN
    np.testing.assert_allclose(mean, [[0.31, np.nan], [0.20, 0.25]])
    assert std[0, 0] == pytest.approx(math.sqrt(2) * 0.01)  # sample std of .30, .32


def test_txl_grid_refuses_two_groups_on_one_cell():
    groups = group_by_seed([rec("a", "ce", 0, 0.3), rec("b", "cskd", 0, 0.2)])
    with pytest.raises(ValueError, match=r"^two groups have temperature=4.0, lambda_cls=1.0 "
                                         r"\('a' and 'b'\); pass groups of one data set"):
        txl_grid(groups)


def test_input_checks():
    with pytest.raises(ValueError, match=r"^records is empty; pass at least one run$"):
        group_by_seed([])
    with pytest.raises(ValueError, match=r"^record 0 must be a dict with keys 'run', 'config' "
                                         r"and 'metrics'$"):
        group_by_seed([{"run": "x"}])


def test_a_lone_group_of_seeds_is_labelled_by_its_method_not_by_one_seeds_run_name():
    from analysis.tables import RunGroup, row_labels

    def group(runs):
        return RunGroup({"method": "cskd", "dataset": "digits"}, tuple(runs), tuple(range(len(runs))), {}, {}, {})

    assert row_labels([group(["digits-cskd-s0", "digits-cskd-s1", "digits-cskd-s2"])]) == ["method=cskd"]
    assert row_labels([group(["digits-cskd-s0"])]) == ["digits-cskd-s0"]
