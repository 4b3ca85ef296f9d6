"""analyze_runs against independent computations: every metric is recomputed here with explicit
loops, sorting, scipy.special.logsumexp or brute-force distances, never with the analysis functions
the report itself calls."""

import csv
import io
import json
import math
import os
import statistics

import numpy as np
import pytest
from scipy.special import logsumexp

from analysis.report import analyze_runs

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


def ref_bins(conf, correct, m):
    """Per-bin (count, sum correct, sum confidence) by a loop; bin of c is ceil(c m) - 1, 0 for c = 0."""
    stats = [[0, 0.0, 0.0] for _ in range(m)]
    for c, ok in zip(conf, correct):
        b = max(0, math.ceil(c * m) - 1)
        stats[b][0] += 1
        stats[b][1] += ok
        stats[b][2] += c
    return stats


def ref_ece_mce(p, y, m=20):
    conf, correct = p.max(axis=1), p.argmax(axis=1) == y
    gaps = [(n, abs(s_ok / n - s_c / n)) for n, s_ok, s_c in ref_bins(conf, correct, m) if n]
    return sum(n * g for n, g in gaps) / len(y), max(g for _, g in gaps)


def ref_adaptive_ece(p, y, m=20):
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    order = sorted(range(len(y)), key=lambda i: (conf[i], i))
    sizes = [len(y) // m + (j < len(y) % m) for j in range(m)]
    total, start = 0.0, 0
    for size in sizes:
        group = order[start:start + size]
        start += size
        if group:
            total += len(group) * abs(np.mean(correct[group]) - np.mean(conf[group]))
    return total / len(y)


def ref_classwise_ece(p, y, m=20):
    per_class = []
    for c in range(p.shape[1]):
        stats = ref_bins(p[:, c], (y == c).astype(float), m)
        per_class.append(sum(abs(s_ok - s_c) for n, s_ok, s_c in stats if n) / len(y))
    return float(np.mean(per_class))


def ref_recall_at_1(x, y):
    x = np.asarray(x, dtype=np.float64)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float(np.mean(y[d.argmin(axis=1)] == y))


def check_metrics(m, run):
    z, y = run["logits"], run["labels"]
    p = ref_probs(z)
    pred = p.argmax(axis=1)
    assert m["top1_error"] == pytest.approx(np.mean(pred != y))
    assert m["top5_error"] == pytest.approx(ref_top_k_error(z, y, 5))
    assert m["nll"] == pytest.approx(ref_nll(z, y), rel=1e-6)
    ece, mce = ref_ece_mce(p, y)
    assert m["ece"] == pytest.approx(ece, abs=1e-7) and m["mce"] == pytest.approx(mce, abs=1e-7)
    assert m["adaptive_ece"] == pytest.approx(ref_adaptive_ece(p, y), abs=1e-7)
    assert m["classwise_ece"] == pytest.approx(ref_classwise_ece(p, y), abs=1e-7)
    onehot = np.eye(C)[y]
    assert m["brier"] == pytest.approx(np.mean(((p - onehot) ** 2).sum(axis=1)))
    assert m["overconfidence"] == pytest.approx(p.max(axis=1).mean() - np.mean(pred == y))
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
    ece_ts, mce_ts = ref_ece_mce(ref_probs(np.asarray(z, np.float64) / t), y)
    assert m["ece_after_ts"] == pytest.approx(ece_ts, abs=1e-7) and m["mce_after_ts"] == pytest.approx(mce_ts, abs=1e-7)


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
    metrics = analyze_runs(runs, tmp_path / "out", progress=False, group_ignore=("seed", "out"), n_boot=200)
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
    metrics = analyze_runs({"only": run}, tmp_path, progress=False, n_boot=20)
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
    run = dict(make_run(0), metrics=cached, metrics_settings=settings)
    assert analyze_runs({"r": run}, tmp_path / "a", progress=False, n_boot=20)["r"] == cached
    for other in ({"n_bins": 10}, {"n_boot": 30}, {"ci_level": 0.9}):
        metrics = analyze_runs({"r": run}, tmp_path / f"b{len(other)}{list(other)[0]}", progress=False,
                               **{**settings, **other})["r"]
        assert metrics["top1_error"] != cached["top1_error"], other


def test_read_only_memmap_inputs_are_never_written(tmp_path):
    run = make_run(0, tsne=(np.zeros((N, 2)), np.arange(N)))
    for key in ("logits", "features", "labels", "val_logits", "val_labels"):
        np.save(tmp_path / f"{key}.npy", np.ascontiguousarray(run[key]))
        run[key] = np.load(tmp_path / f"{key}.npy", mmap_mode="r")  # read-only: a write would raise
    before = {k: np.array(run[k]) for k in ("logits", "features", "labels")}
    metrics = analyze_runs({"mm": run}, tmp_path / "out", progress=False, n_boot=20)
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
        analyze_runs(runs, tmp_path, progress=False)
    assert str(err.value) == message
    assert not os.listdir(tmp_path)  # nothing written


def test_refuses_incomplete_runs(tmp_path):
    run = make_run(0)
    del run["features"]
    with pytest.raises(ValueError, match=r"^run 'x' lacks the keys \['features'\]$"):
        analyze_runs({"x": run}, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"^run 'x': give both val_logits and val_labels"):
        analyze_runs({"x": make_run(0, val_labels=None)}, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"^runs must be a non-empty dict"):
        analyze_runs({}, tmp_path, progress=False)


@pytest.mark.slow  # a fresh interpreter importing matplotlib, seaborn and scipy: about 1.5 s
def test_importing_the_report_loads_neither_cskd_nor_app():
    import subprocess
    import sys

    code = ("import sys, analysis.report, analysis.displays; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cskd', 'app')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
