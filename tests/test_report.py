"""analyze_runs and run_metrics: metrics hand-computed on tiny arrays, properties that hold for any
predictions (ECE = 0 when every bin's accuracy equals its confidence; ECE = mean confidence when
every prediction is wrong), metrics recomputed independently (scipy.special.logsumexp, loops,
brute-force distances) in a full report, the report's use of a caller's cached metrics, and the
report's files and figures. The one-pipeline property (the report's numbers are the stats
cache's, bit for bit) is in test_stats.py."""

import csv
import io
import json
import os
import statistics

import numpy as np
import pytest
from scipy.special import logsumexp

from cskd.analysis import report
from cskd.analysis.calibration import N_BINS

N, C, D = 120, 6, 8
MAP = [0, 0, 0, 1, 1, 1]


def make_run(seed, *, method="cskd", temperature=4.0, lambda_cls=1.0, scale=1.0, **extra):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % C  # identical labels in every run
    centers = np.random.default_rng(100).normal(size=(C, D))
    hard = np.random.default_rng(200).normal(size=(N, D))  # shared by all runs: hard samples are hard for every run
    feats = (centers[y] + 1.2 * hard + 0.5 * rng.normal(size=(N, D))).astype(np.float32)
    logits = (scale * feats @ centers.T).astype(np.float32)
    run = dict(logits=logits, features=feats, labels=y, indices=np.arange(N) + 1000,
               class_names=[f"c{i}" for i in range(C)], dataset="toy", split="test",
               config=dict(dataset="toy", method=method, temperature=temperature,
                           lambda_cls=lambda_cls, seed=seed, out=f"runs/{seed}"),
               val_logits=logits[:60], val_labels=y[:60],
               fine_to_coarse=MAP, coarse_names=["a", "b"])
    run.update(extra)
    return run


# --- independent reference implementations ------------------------------------------------------


def ref_probs(z):
    z = np.asarray(z, dtype=np.float64)
    return np.exp(z - logsumexp(z, axis=1, keepdims=True))


def ref_nll(z, y):
    z = np.asarray(z, dtype=np.float64)
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def ref_top_k_error(z, y, k):
    top = np.argsort(-np.asarray(z), axis=1, kind="stable")[:, :k]
    return float(np.mean([label not in row for row, label in zip(top, y)]))


def ref_recall_at_1(x, y):
    x = np.asarray(x, dtype=np.float64)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float(np.mean(y[d.argmin(axis=1)] == y))


def check_metrics(m, run):
    """Independent recomputations where one is short (errors, NLL, Brier, over-confidence, Recall@1,
    hierarchy, the temperature's optimality), and for the binned calibration errors (hand-computed in
    the tests below and in test_calibration.py) the relations they obey on any predictions."""
    z, y = run["logits"], run["labels"]
    p = ref_probs(z)
    pred = p.argmax(axis=1)
    assert m["top1_error"] == pytest.approx(np.mean(pred != y))
    assert m["top5_error"] == pytest.approx(ref_top_k_error(z, y, 5))
    assert m["nll"] == pytest.approx(ref_nll(z, y), rel=1e-6)
    onehot = np.eye(C)[y]
    assert m["brier"] == pytest.approx(np.mean(((p - onehot) ** 2).sum(axis=1)))
    over = p.max(axis=1).mean() - np.mean(pred == y)
    assert m["overconfidence"] == pytest.approx(over)
    # the signed ECE (= over-confidence) is bounded by the ECE of any binning; MCE bounds ECE
    for key in ("ece", "adaptive_ece"):
        assert abs(over) - 1e-12 <= m[key] <= 1.0
    assert m["ece"] <= m["mce"] + 1e-12 and 0.0 <= m["classwise_ece"] <= 1.0
    assert m["recall_at_1"] == pytest.approx(ref_recall_at_1(run["features"], y))
    assert 0.0 <= m["ece_ci_low"] <= m["ece_ci_high"] <= 1.0
    mapping = np.array(run["fine_to_coarse"])
    assert m["hierarchical_accuracy"] == pytest.approx(np.mean(mapping[pred] == mapping[y]))
    for g, name in enumerate(run["coarse_names"]):
        in_group = mapping[y] == g
        assert m[f"top1_error[{name}]"] == pytest.approx(np.mean(pred[in_group] != y[in_group]))
    # temperature: a minimum of the validation NLL; the scaled metrics use it
    t, zv, yv = m["temperature"], run["val_logits"], run["val_labels"]
    assert ref_nll(zv / t, yv) <= min(ref_nll(zv / (t * 1.02), yv), ref_nll(zv / (t / 1.02), yv))
    assert m["nll_after_ts"] == pytest.approx(ref_nll(np.asarray(z, np.float64) / t, y), rel=1e-6)
    scaled = report.run_metrics({"logits": np.asarray(z, np.float64) / t, "labels": y}, n_boot=0)
    assert m["ece_after_ts"] == pytest.approx(scaled["ece"], abs=1e-12)
    assert m["mce_after_ts"] == pytest.approx(scaled["mce"], abs=1e-12)


# --- run_metrics on tiny arrays, by hand ------------------------------------------------------------

# Five samples, two classes, logits = log p (so softmax gives p back). Confidences sit well inside
# the 20 equal-width bins (width 0.05): .91 and .93 share (0.90, 0.95], the others have one each.
TINY_P = np.array([[0.91, 0.09],   # y=0: conf .91, right
                   [0.07, 0.93],   # y=0: conf .93, wrong
                   [0.28, 0.72],   # y=1: conf .72, right
                   [0.62, 0.38],   # y=1: conf .62, wrong
                   [0.44, 0.56]])  # y=1: conf .56, right
TINY_Y = np.array([0, 0, 1, 1, 1])


def tiny_metrics(**kwargs):
    return report.run_metrics({"logits": np.log(TINY_P), "labels": TINY_Y}, **kwargs)


def test_run_metrics_hand_computed_on_five_samples():
    m = tiny_metrics(n_boot=0)
    assert m["top1_error"] == pytest.approx(2 / 5) and m["top5_error"] == 0.0  # k = min(5, C) = 2
    assert m["nll"] == pytest.approx(-np.log([0.91, 0.07, 0.72, 0.38, 0.56]).mean())
    # shared bin: accuracy 1/2, confidence .92 -> gap .42, weight 2/5; others: |1-.72|, |0-.62|, |1-.56|
    assert m["ece"] == pytest.approx((2 * 0.42 + 0.28 + 0.62 + 0.44) / 5)  # 0.436
    assert m["mce"] == pytest.approx(0.62)
    # 20 equal-mass bins for 5 samples: one sample each (15 empty) -> mean |correct - confidence|
    assert m["adaptive_ece"] == pytest.approx((0.09 + 0.93 + 0.28 + 0.62 + 0.44) / 5)  # 0.472
    # class-wise: for either class every p_c has a bin of its own -> mean |1[y=c] - p_c| = .472 each
    assert m["classwise_ece"] == pytest.approx(0.472)
    assert m["brier"] == pytest.approx((2 * 0.09**2 + 2 * 0.93**2 + 2 * 0.28**2 + 2 * 0.62**2 + 2 * 0.44**2) / 5)
    assert m["overconfidence"] == pytest.approx((0.91 + 0.93 + 0.72 + 0.62 + 0.56) / 5 - 3 / 5)  # 0.148
    assert "ece_ci_low" not in m and "temperature" not in m and "recall_at_1" not in m


def test_run_metrics_hand_computed_with_two_bins():
    m = tiny_metrics(n_bins=2, n_boot=0)
    # equal width: every confidence is in (0.5, 1] -> ECE = MCE = |accuracy - mean confidence|
    assert m["ece"] == pytest.approx(0.148) and m["mce"] == pytest.approx(0.148)
    # equal mass, sizes 3 and 2: (.56 right, .62 wrong, .72 right) and (.91 right, .93 wrong)
    assert m["adaptive_ece"] == pytest.approx(3 / 5 * abs(2 / 3 - 1.9 / 3) + 2 / 5 * abs(1 / 2 - 0.92))  # 0.188


def test_bootstrap_interval_of_identical_samples_is_a_point():
    # every resample of four identical samples has the same ECE: |1 - .8| = .2
    z, y = np.log(np.tile([[0.8, 0.2]], (4, 1))), np.zeros(4, int)
    m = report.run_metrics({"logits": z, "labels": y}, n_boot=50)
    assert m["ece"] == pytest.approx(0.2) and m["ece_ci_low"] == pytest.approx(0.2)
    assert m["ece_ci_high"] == pytest.approx(0.2)


# --- properties ---------------------------------------------------------------------------------------

def calibrated_probs(groups, n_classes=10):
    """Probabilities where each group of n samples has confidence q on its predicted class (the rest
    spread evenly) and exactly round(q n) of them are right: every bin's accuracy is its confidence."""
    rows, labels = [], []
    for q, n in groups:
        right = round(q * n)
        assert right == q * n
        for i in range(n):
            pred = (len(rows)) % n_classes
            row = np.full(n_classes, (1 - q) / (n_classes - 1))
            row[pred] = q
            rows.append(row)
            labels.append(pred if i < right else (pred + 1) % n_classes)
    return np.array(rows), np.array(labels)


def test_ece_is_zero_for_perfectly_calibrated_predictions():
    # confidences .325, .625, .875 lie inside 20-bin cells: (.30, .35], (.60, .65], (.85, .90]
    p, y = calibrated_probs([(0.325, 40), (0.625, 8), (0.875, 16)])
    m = report.run_metrics({"logits": np.log(p), "labels": y}, n_boot=0)
    assert m["ece"] == pytest.approx(0.0, abs=1e-12) and m["mce"] == pytest.approx(0.0, abs=1e-12)
    assert m["overconfidence"] == pytest.approx(0.0, abs=1e-12)
    # a coarser binning mixes the groups: accuracy still equals confidence within each merged bin
    assert report.run_metrics({"logits": np.log(p), "labels": y}, n_bins=2, n_boot=0)["ece"] == pytest.approx(0.0,
                                                                                                               abs=1e-12)


@pytest.mark.parametrize("n_bins", [1, 7, N_BINS, 200])
def test_ece_of_confident_all_wrong_predictions_is_their_mean_confidence(n_bins):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, 5)) * 3
    y = (z.argmax(axis=1) + 1 + rng.integers(0, 4, 300)) % 5  # never the argmax
    m = report.run_metrics({"logits": z, "labels": y}, n_bins=n_bins, n_boot=0)
    mean_conf = ref_probs(z).max(axis=1).mean()
    assert m["top1_error"] == 1.0
    for key in ("ece", "adaptive_ece", "overconfidence"):
        assert m[key] == pytest.approx(mean_conf, rel=1e-12), key


def test_metrics_do_not_depend_on_the_row_chunks(monkeypatch):
    run = make_run(0)
    whole = report.run_metrics(run, n_boot=50)
    monkeypatch.setattr("cskd.analysis.metrics.CHUNK_ELEMENTS", 7 * C)  # seven rows at a time
    chunked = report.run_metrics(run, n_boot=50)
    assert chunked.keys() == whole.keys()
    for key, value in whole.items():
        assert chunked[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


@pytest.mark.slow
def test_full_report(tmp_path):
    seen = []

    def image(i):
        seen.append(i)
        return np.zeros((8, 8, 3), np.uint8)

    runs = {"ce": make_run(0, method="ce", scale=3.0, images=image),
            "cskd_T4": make_run(1), "cskd_T4_s2": make_run(2),  # one experiment, two seeds
            "cskd_T1": make_run(3, temperature=1.0, lambda_cls=2.0)}
    # reuse a precomputed embedding for one run (its rows are plotted as given)
    runs["cskd_T1"]["tsne"] = (np.random.default_rng(0).normal(size=(N, 2)), np.arange(N))
    metrics = report.analyze_runs(runs, tmp_path / "out", progress=False, group_ignore=("seed", "out"), n_boot=200)
    assert os.listdir(tmp_path) == ["out"]  # nothing written outside out_dir

    assert set(metrics) == set(runs)
    for name, m in metrics.items():
        check_metrics(m, runs[name])
    # the over-confident run (logits x3) gets T > 1 and a lower NLL after scaling
    assert metrics["ce"]["temperature"] > 1 and metrics["ce"]["nll_after_ts"] < metrics["ce"]["nll"]
    assert metrics["ce"]["overconfidence"] > 0

    out = tmp_path / "out"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved.keys() == metrics.keys()
    for name in metrics:
        assert saved[name] == pytest.approx(metrics[name])

    # seeds grouped by the caller's ignore list: cskd_T4 and cskd_T4_s2 are one row, n = 2
    table = (out / "table.md").read_text().splitlines()
    pair = [100 * metrics[r]["top1_error"] for r in ("cskd_T4", "cskd_T4_s2")]
    grouped = next(line for line in table if line.startswith("| method=cskd, temperature=4.0"))
    assert grouped.split(" | ")[1] == "2"
    assert grouped.split(" | ")[2] == f"{statistics.mean(pair):.2f} ± {statistics.stdev(pair):.2f}"
    single = next(line for line in table if line.startswith("| method=ce"))
    assert single.split(" | ")[2] == f"{100 * metrics['ce']['top1_error']:.2f}" and "±" not in single
    assert (out / "table.csv").read_text().startswith("label,n,runs,top1_error_mean,top1_error_std_ddof1,")
    assert r"\toprule" in (out / "table.tex").read_text()
    domain = (out / "table_domain_error.md").read_text()
    assert domain.startswith("| run | n | top1_error[a] (%) | top1_error[b] (%) |")

    per_class = list(csv.DictReader(io.StringIO((out / "per_class_accuracy.csv").read_text())))
    pred_ce = runs["ce"]["logits"].argmax(axis=1)
    y = runs["ce"]["labels"]
    for c, row in enumerate(per_class):
        assert row["class_name"] == f"c{c}"
        assert float(row["ce"]) == pytest.approx(np.mean(pred_ce[y == c] == c))
    confused = [r for r in csv.DictReader(io.StringIO((out / "most_confused.csv").read_text())) if r["run"] == "ce"]
    counts = {}
    for t, p in zip(y, pred_ce):
        if t != p:
            counts[(t, p)] = counts.get((t, p), 0) + 1
    top = max(counts.values())
    assert int(confused[0]["count"]) == top
    assert (int(confused[0]["true"]), int(confused[0]["predicted"])) == min(k for k, v in counts.items() if v == top)

    wrong_everywhere = np.all([r["logits"].argmax(axis=1) != y for r in runs.values()], axis=0)
    assert wrong_everywhere.sum() >= 10  # so the log-probability histograms are drawn
    names = set(os.listdir(out / "figures"))
    stems = {"reliability", "reliability_overlay", "logprob_misclassified_by_all", "predictive_distribution",
             "domain_top1_error", "txl_top1_error"}
    stems |= {f"{kind}_{r}" for kind in ("tsne", "hierarchical_confusion") for r in runs}
    assert names == {f"{s}.{ext}" for s in stems for ext in ("png", "pdf")}
    assert all(os.path.getsize(out / "figures" / n) for n in names)
    assert len(seen) == 1 and seen[0] >= 1000  # called with the dataset index, not the row


def test_single_run_without_optional_inputs(tmp_path):
    run = make_run(0, tsne=(np.zeros((N, 2)), np.arange(N)))
    for key in ("val_logits", "val_labels", "fine_to_coarse", "coarse_names"):
        del run[key]
    metrics = report.analyze_runs({"only": run}, tmp_path, progress=False, n_boot=20)
    m = metrics["only"]
    assert "temperature" not in m and "hierarchical_accuracy" not in m
    assert not any(k.startswith("top1_error[") for k in m)
    assert m["top1_error"] == pytest.approx(np.mean(ref_probs(run["logits"]).argmax(1) != run["labels"]))
    assert set(os.listdir(tmp_path / "figures")) == {"reliability.png", "reliability.pdf", "tsne_only.png",
                                                     "tsne_only.pdf"}
    assert not (tmp_path / "table_domain_error.md").exists()
    # the default grouping ignores only the seed: a single run shows its value, n = 1, no "± 0.00"
    assert "| only | 1 |" in (tmp_path / "table.md").read_text() and "± 0.00" not in (tmp_path / "table.md").read_text()


def test_precomputed_metrics_are_used_only_with_the_same_settings(tmp_path):
    # a caller's cache (cskd.evaluation.stats_cache), values a recomputation never gives
    cached = {"top1_error": 0.123456, "ece": 0.5}
    settings = {"n_bins": 20, "n_boot": 20, "ci_level": 0.95}
    run = dict(make_run(0), metrics=cached, metrics_settings=settings, tsne=(np.zeros((N, 2)), np.arange(N)))
    assert report.analyze_runs({"r": run}, tmp_path / "a", progress=False, n_boot=20)["r"] == cached
    assert json.loads((tmp_path / "a" / "metrics.json").read_text()) == {"r": cached}
    for other in ({"n_bins": 10}, {"n_boot": 30}, {"ci_level": 0.9}):
        rep = report.Report(report.as_runs({"r": run}), str(tmp_path), {**settings, **other}, ("seed",), 100,
                            True, False, mapping=MAP, coarse=["a", "b"])
        report.compute_metrics(rep, "r")  # the metrics step alone: no figures needed
        assert rep.metrics["r"]["top1_error"] != cached["top1_error"], other
        assert rep.metrics["r"] == report.run_metrics(run, **{**settings, **other}), other


def test_read_only_memmap_inputs_are_never_written(tmp_path):
    run = make_run(0, tsne=(np.zeros((N, 2)), np.arange(N)))
    for key in ("logits", "features", "labels", "val_logits", "val_labels"):
        np.save(tmp_path / f"{key}.npy", np.ascontiguousarray(run[key]))
        run[key] = np.load(tmp_path / f"{key}.npy", mmap_mode="r")  # read-only: a write would raise
    before = {k: np.array(run[k]) for k in ("logits", "features", "labels")}
    metrics = report.analyze_runs({"mm": run}, tmp_path / "out", progress=False, n_boot=20)
    check_metrics(metrics["mm"], {**run, "logits": before["logits"], "labels": before["labels"]})
    for k, v in before.items():
        np.testing.assert_array_equal(run[k], v)


@pytest.mark.parametrize("key, value, message", [
    ("dataset", "other", "runs differ in dataset ('a': 'toy', 'b': 'other'); analyse one data "
                         "set and split at a time"),
    ("split", "val", "runs differ in split ('a': 'test', 'b': 'val'); analyse one data set and "
                     "split at a time"),
    ("labels", np.roll(np.arange(N) % C, 1), "runs 'a' and 'b' differ in labels; evaluate every "
                                             "run on the same samples in the same order"),
])
def test_refuses_runs_of_different_data(tmp_path, key, value, message):
    runs = {"a": make_run(0), "b": make_run(1, **{key: value})}
    with pytest.raises(ValueError) as err:
        report.analyze_runs(runs, tmp_path, progress=False)
    assert str(err.value) == message
    assert not os.listdir(tmp_path)  # nothing written


def test_refuses_incomplete_runs(tmp_path):
    run = make_run(0)
    del run["features"]
    with pytest.raises(ValueError, match=r"^run 'x' lacks the keys \['features'\]$"):
        report.analyze_runs({"x": run}, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"^run 'x': give both val_logits and val_labels"):
        report.analyze_runs({"x": make_run(0, val_labels=None)}, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"^runs must be a non-empty dict"):
        report.analyze_runs({}, tmp_path, progress=False)


@pytest.mark.slow  # a fresh interpreter importing matplotlib, seaborn and scipy: about 1.5 s
def test_importing_the_report_loads_neither_cskd_nor_app():
    import subprocess
    import sys

    code = ("import sys, analysis.report, analysis.displays; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cskd', 'app')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_runs_as_typed_records_and_a_caller_cache_is_read_not_recomputed(tmp_path, monkeypatch):
    fields = {k: v for k, v in make_run(0).items()}
    cached = {"top1_error": 0.123456, "ece": 0.5}
    rec = report.RunData(name="typed", **fields, metrics=cached,
                         metrics_settings={"n_bins": N_BINS, "n_boot": 20, "ci_level": 0.95})

    def never(*args, **kwargs):
        raise AssertionError("recomputed although the caller's metrics have the report's settings")

    monkeypatch.setattr(report, "run_metrics", never)
    rep = report.Report({"typed": rec}, str(tmp_path), {"n_bins": N_BINS, "n_boot": 20, "ci_level": 0.95},
                        ("seed",), 100, True, False)
    report.compute_metrics(rep, "typed")
    assert rep.metrics == {"typed": cached}
    with pytest.raises(AssertionError, match="recomputed"):  # other settings: recomputed
        report.compute_metrics(dataclass_replace(rep, settings={"n_bins": 10, "n_boot": 20, "ci_level": 0.95}),
                               "typed")


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_run_records_are_checked():
    run = make_run(0)
    with pytest.raises(ValueError, match=r"^run 'x' has unknown keys \['colour'\]"):
        report.analyze_runs({"x": {**run, "colour": 1}}, "unused", progress=False)
    rec = report.RunData.from_mapping("a", run)
    with pytest.raises(ValueError, match="^two runs share a name"):
        report.analyze_runs([rec, rec], "unused", progress=False)
    assert rec.name == "a" and rec.fine_to_coarse == MAP
