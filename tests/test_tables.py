import csv
import io
import math

import numpy as np
import pytest

from cskd.analysis.tables import (
    CAPTION,
    comparison_table,
    format_table,
    group_by_seed,
    to_csv,
    to_latex,
    txl_grid,
    txl_groups,
)

IGNORE = ("seed", "out")  # the caller's knowledge: which config keys do not change results


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
    groups = group_by_seed(RECORDS, ignore=IGNORE)
    assert [g.runs for g in groups] == [("ce0", "ce1", "ce2"), ("cskd0",)]
    ce, cskd = groups
    assert ce.seeds == (0, 1, 2) and "seed" not in ce.config and "out" not in ce.config
    # mean(.20, .22, .24) = .22; sample std = sqrt((.02² + 0 + .02²) / 2) = .02
    assert ce.mean["top1_error"] == pytest.approx(0.22)
    assert ce.std["top1_error"] == pytest.approx(0.02)
    assert ce.n["top1_error"] == 3
    # one run: n 1 and no std (the sample std is undefined)
    assert math.isnan(cskd.std["top1_error"]) and cskd.n["top1_error"] == 1


def test_ignore_is_required_and_decides_the_grouping():
    with pytest.raises(TypeError):
        group_by_seed(RECORDS)
    # ignoring only the seed, the differing output folders keep every run apart
    assert [g.runs for g in group_by_seed(RECORDS, ignore=("seed",))] == [("ce0",), ("cskd0",), ("ce1",), ("ce2",)]


def test_other_config_differences_split_groups():
    groups = group_by_seed([rec("a", "cskd", 0, 0.1, T=4.0), rec("b", "cskd", 1, 0.1, T=1.0)], ignore=IGNORE)
    assert len(groups) == 2


def test_format_table_markdown():
    text = format_table(group_by_seed(RECORDS, ignore=IGNORE), metrics=("top1_error", "nll", "ece"))
    lines = text.strip().splitlines()
    assert lines[0] == "| run | n | top1_error (%) | nll | ece (%) |"
    # only `method` differs between the groups, so it labels the rows
    assert lines[2] == "| method=ce | 3 | 22.00 ± 2.00 | 1.20 ± 0.20 | n/a |"
    # a single run: its value, no "± 0.00"
    assert lines[3] == "| method=cskd | 1 | 10.00 | 1.00 | n/a |"
    # the caption under the table says what the cells are
    assert lines[4] == "" and lines[5] == CAPTION[0].upper() + CAPTION[1:] + "."
    assert "sample standard deviation (ddof = 1)" in CAPTION
    raw = format_table(group_by_seed(RECORDS, ignore=IGNORE), metrics=("top1_error",), percent=False)
    assert "| method=ce | 3 | 0.22 ± 0.02 |" in raw


def test_a_metric_only_some_runs_have_says_n():
    records = [rec("a", "ce", 0, 0.2, ece=0.05), rec("b", "ce", 1, 0.3)]
    text = format_table(group_by_seed(records, ignore=IGNORE), metrics=("top1_error", "ece"))
    assert "| method=ce | 2 | 25.00 ± 7.07 | 5.00 (n=1) |" in text


def test_the_brier_score_is_not_shown_as_a_percentage():
    """Brier lies in [0, 2] (not a fraction): shown as it is, like the NLL, in tables and the dashboard."""
    records = [rec("a", "ce", 0, 0.2, brier=0.31), rec("b", "ce", 1, 0.3, brier=0.35)]
    text = format_table(group_by_seed(records, ignore=IGNORE), metrics=("brier",))
    assert "| run | n | brier |" in text and "| 0.33 ± 0.03 |" in text


def test_to_csv_round_trips():
    rows = list(csv.DictReader(io.StringIO(to_csv(group_by_seed(RECORDS, ignore=IGNORE),
                                                  metrics=("top1_error", "ece")))))
    assert rows[0]["label"] == "method=ce" and rows[0]["runs"] == "ce0;ce1;ce2"
    assert float(rows[0]["top1_error_mean"]) == pytest.approx(22.0)
    assert float(rows[0]["top1_error_std_ddof1"]) == pytest.approx(2.0)  # the column says which std
    assert rows[0]["top1_error_n"] == "3"
    assert rows[0]["ece_mean"] == "" and rows[0]["ece_n"] == "0"
    # one run: a mean, no std
    assert float(rows[1]["top1_error_mean"]) == pytest.approx(10.0) and rows[1]["top1_error_std_ddof1"] == ""


def test_to_latex_booktabs():
    tex = to_latex(group_by_seed(RECORDS, ignore=IGNORE), metrics=("top1_error",))
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"top1\_error (\%)" in tex
    assert r"method=ce & 3 & 22.00 $\pm$ 2.00 \\" in tex
    assert r"method=cskd & 1 & 10.00 \\" in tex
    assert tex.startswith(f"% {CAPTION}\n")


def test_txl_grid():
    records = [rec("t1l1", "cskd", 0, 0.30, T=1.0, lam=1.0),
               rec("t1l1s", "cskd", 1, 0.32, T=1.0, lam=1.0),
               rec("t4l1", "cskd", 0, 0.20, T=4.0, lam=1.0),
               rec("t4l2", "cskd", 0, 0.25, T=4.0, lam=2.0)]
    temps, lambdas, mean, std = txl_grid(group_by_seed(records, ignore=IGNORE))
    np.testing.assert_array_equal(temps, [1.0, 4.0])
    np.testing.assert_array_equal(lambdas, [1.0, 2.0])
    # T=1, λ=2 was never run -> NaN
    np.testing.assert_allclose(mean, [[0.31, np.nan], [0.20, 0.25]])
    assert std[0, 0] == pytest.approx(math.sqrt(2) * 0.01)  # sample std of .30, .32


def test_txl_groups_keeps_each_method_that_spans_t_or_lambda():
    records = [rec("a", "cskd", 0, 0.2, T=1.0), rec("b", "cskd", 0, 0.3, T=4.0),  # spans T: a grid
               rec("c", "kd", 0, 0.2), rec("d", "kd", 1, 0.2),  # seeds of one cell: no grid
               rec("e", "ce", 0, 0.2, T=1.0), rec("f", "ce", 0, 0.2, T=4.0),  # cross-entropy: never
               rec("g", "cskd_e", 0, 0.2, lam=1.0), rec("h", "cskd_e", 0, 0.2, lam=2.0)]
    records[-1]["config"]["model"] = "resnet18"
    grids = txl_groups(group_by_seed(records, ignore=IGNORE))
    assert {k: [g.runs for g in v] for k, v in grids.items()} == {
        ("cifar100", "preact_resnet18", "cskd"): [("a",), ("b",)]}  # cskd_e's two λ are on two models
    assert set(txl_groups(group_by_seed(records, ignore=IGNORE), by=("method",))) == {("cskd",), ("cskd_e",)}


def test_txl_grid_refuses_two_groups_on_one_cell():
    groups = group_by_seed([rec("a", "ce", 0, 0.3), rec("b", "cskd", 0, 0.2)], ignore=IGNORE)
    with pytest.raises(ValueError, match=r"^two groups have temperature=4.0, lambda_cls=1.0 "
                                         r"\('a' and 'b'\); pass groups of one data set"):
        txl_grid(groups)


def test_input_checks():
    with pytest.raises(ValueError, match=r"^records is empty; pass at least one run$"):
        group_by_seed([], ignore=IGNORE)
    with pytest.raises(ValueError, match=r"^record 0 must be a dict with keys 'run', 'config' "
                                         r"and 'metrics'$"):
        group_by_seed([{"run": "x"}], ignore=IGNORE)


def test_a_lone_group_of_seeds_is_labelled_by_its_method_not_by_one_seeds_run_name():
    from cskd.analysis.tables import RunGroup, row_labels

    def group(runs):
        return RunGroup({"method": "cskd", "dataset": "digits"}, tuple(runs), tuple(range(len(runs))), {}, {}, {})

    assert row_labels([group(["digits-cskd-s0", "digits-cskd-s1", "digits-cskd-s2"])]) == ["method=cskd"]
    assert row_labels([group(["digits-cskd-s0"])]) == ["digits-cskd-s0"]


ROWS, COLS = ["ce", "cskd"], ["C100", "TIN", "CUB"]
OURS = {("ce", "C100"): (24.0, 0.5, 3),     # paper 24.71: |Δ| .71 <= 2 * .5 + .005 -> no mark
        ("cskd", "C100"): (22.0, 0.1, 3),   # paper 21.99: Δ +.01 -> no mark
        ("ce", "TIN"): (46.0, 0.7, 1),      # one run: std ignored (0), Δ 2.47 -> mark
        ("ce", "CUB"): (47.0, 1.0, 2)}      # the paper has no number here
PAPER = {("ce", "C100"): (24.71, 0.24), ("cskd", "C100"): (21.99, 0.13),
         ("ce", "TIN"): (43.53, 0.19), ("cskd", "TIN"): (41.62, None)}  # cskd on TIN not run yet


def test_comparison_table_markdown():
    text = comparison_table(ROWS, COLS, OURS, PAPER, title="Top-1 error (%)", row_header="method")
    lines = text.splitlines()
    assert lines[0] == "**Top-1 error (%)**" and lines[1] == ""
    assert lines[2] == ("| method | C100 ours | C100 paper | C100 Δ | TIN ours | TIN paper | TIN Δ | CUB ours | "
                        "CUB paper | CUB Δ |")
    assert lines[4] == ("| ce | 24.00 ± 0.50 (n=3) | 24.71 ± 0.24 | -0.71 | 46.00 (n=1) | 43.53 ± 0.19 | +2.47 † | "
                        "47.00 ± 1.00 (n=2) | — | — |")
    # a cell not run yet is "—", never 0
    assert lines[5] == "| cskd | 22.00 ± 0.10 (n=3) | 21.99 ± 0.13 | +0.01 | — | 41.62 | — | — | — | — |"
    assert lines[6] == "" and "ours − paper" in lines[7] and "2 std" in lines[7]


def test_comparison_mark_boundaries():
    def mark(ours, paper):
        csv_text = comparison_table(["r"], ["c"], {("r", "c"): ours}, {("r", "c"): (paper, None)}, fmt="csv")
        return next(csv.DictReader(io.StringIO(csv_text)))["paper_outside_2std"]

    # n >= 2: outside mean ± 2 std (+ .005 for rounding to 2 decimals)
    assert mark((20.0, 0.2, 3), 20.5) == "1" and mark((20.0, 0.2, 3), 20.4) == "0"
    # n = 1: std 0 -> any difference beyond rounding
    assert mark((10.004, 0.0, 1), 10.0) == "0" and mark((10.006, 0.0, 1), 10.0) == "1"
    assert mark((10.0, float("nan"), 1), 10.0) == "0"  # a single run's std is ignored


def test_comparison_table_csv_and_latex():
    rows = list(csv.DictReader(io.StringIO(comparison_table(ROWS, COLS, OURS, PAPER, fmt="csv"))))
    assert [(r["row"], r["column"]) for r in rows] == [(r, c) for r in ROWS for c in COLS]
    ce_tin = rows[1]
    assert (ce_tin["ours_mean"], ce_tin["ours_std_ddof1"], ce_tin["ours_n"]) == ("46.0", "", "1")
    assert float(ce_tin["difference"]) == pytest.approx(2.47) and ce_tin["paper_outside_2std"] == "1"
    missing = rows[4]  # cskd, TIN
    assert missing["ours_mean"] == "" and missing["paper_mean"] == "41.62" and missing["difference"] == ""
    tex = comparison_table(ROWS, COLS, OURS, PAPER, fmt="latex", title="Top-1")
    assert tex.startswith("% Top-1\n% ours: mean")
    assert r"\multicolumn{3}{c}{C100}" in tex and r"\cmidrule(lr){2-4}" in tex
    assert (r"ce & 24.00 $\pm$ 0.50 (n=3) & 24.71 $\pm$ 0.24 & -0.71 & 46.00 (n=1) & 43.53 $\pm$ 0.19 & "
            r"+2.47 $\dagger$") in tex
    assert "—" not in tex.split("\\toprule")[1] and "---" in tex


@pytest.mark.parametrize("call, message", [
    (lambda: comparison_table(["a"], ["b"], {("a", "x"): (1.0, 0.0, 1)}, {}),
     "ours has the cell ('a', 'x'), which is not in rows x columns"),
    (lambda: comparison_table(["a"], ["b"], {("a", "b"): (1.0, 0.0, 0)}, {}),
     "ours('a', 'b'): n must be an integer >= 1; got 0"),
    (lambda: comparison_table(["a"], ["b"], {}, {("a", "b"): (float("nan"), None)}),
     "paper('a', 'b'): need a finite mean; got nan"),
    (lambda: comparison_table(["a"], ["b"], {}, {}, fmt="html"),
     "fmt must be 'markdown', 'csv' or 'latex'; got 'html'"),
    (lambda: comparison_table(["a", "a"], ["b"], {}, {}), "rows and columns must not repeat a name"),
])
def test_comparison_input_checks(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message


def test_runs_of_the_authors_protocol_are_marked_whether_or_not_it_varies():
    from cskd.analysis.tables import group_by_seed, row_labels

    records = [{"run": f"r{i}", "config": {"method": m, "protocol": p, "seed": i}, "metrics": {"top1_error": 0.1}}
               for i, (m, p) in enumerate([("ce", "authors"), ("cskd", "authors"), ("cskd", "clean")])]
    labels = row_labels(group_by_seed(records, ignore=("seed",)))
    assert labels == ["method=ce [authors' protocol]", "method=cskd [authors' protocol]", "method=cskd"]
