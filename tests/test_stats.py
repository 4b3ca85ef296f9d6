"""cskd.evaluation.stats_cache (the per-run metrics cache) against independent computations, its freshness rule, and
the two small analysis additions it relies on (ECE bootstrap from per-sample confidence, Fig. 2
from cached log-probabilities)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax, softmax
from synthetic_runs import write_synthetic_run

from cskd.errors import UserError
from cskd.evaluation import stats_compute as stats_module
from cskd.evaluation.stats_cache import read_stats
from cskd.evaluation.stats_compute import ensure_stats
from cskd.runfolder import RunFolder, read_config, read_predictions, save_checkpoint, write_config, write_predictions


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("stats") / "r", n=300, n_val=150, n_classes=12, coarse=True,
                               sharpness=2.5, dim=16)


def test_scalars_are_the_reports_own_numbers(run):
    """One pipeline: the cache computes through analysis.summary.run_scalars, the code path of the
    report's run_metrics, so on the same arrays they give the same keys and floats; only Recall@1
    comes from another search (FAISS here, brute force there)."""
    from cskd.analysis.report import run_metrics

    s = ensure_stats(run)
    p, v = read_predictions(RunFolder(run), "test"), read_predictions(RunFolder(run), "val")
    ref = run_metrics({"logits": p.logits, "labels": p.labels, "features": p.features, "val_logits": v.logits,
                       "val_labels": v.labels, "fine_to_coarse": p.fine_to_coarse, "coarse_names": p.coarse_names})
    cached = s.report_metrics(p.coarse_names)
    recall = (cached.pop("recall_at_1"), ref.pop("recall_at_1"))
    assert cached == ref  # exact: one code path
    assert recall[0] == pytest.approx(recall[1])
    assert s.complete and s.num_samples == 300 and s.num_classes == 12
    assert s.settings == {"n_bins": 20, "n_boot": 1000, "ci_level": 0.95}


@pytest.mark.slow  # opens the run as cskd analyze does (about 4 s)
def test_the_report_reads_the_cache(run, monkeypatch):
    """cskd analyze's input (run_data.run_arrays) carries the cache's metrics with its settings, and
    the report takes them as they are: nothing is computed twice."""
    import cskd.analysis.report as report
    from cskd.evaluation.run_data import run_arrays

    data = run_arrays(run, progress=False, with_tsne=False)
    assert isinstance(data, report.RunData) and data.name == run.name
    assert data.metrics == ensure_stats(run).report_metrics(data.coarse_names)

    def never(*args, **kwargs):
        raise AssertionError("the report recomputed metrics the stats cache holds")

    monkeypatch.setattr(report, "run_metrics", never)
    rep = report.Report({data.name: data}, "unused", {"n_bins": 20, "n_boot": 1000, "ci_level": 0.95}, ("seed",),
                        100, True, False)
    report.compute_metrics(rep, data.name)
    assert rep.metrics[data.name] == data.metrics


def test_per_sample_summaries_by_brute_force(run):
    s = ensure_stats(run)
    p = read_predictions(RunFolder(run), "test")
    z, y = np.asarray(p.logits, dtype=np.float64), np.asarray(p.labels)
    prob, lp = softmax(z, axis=1), log_softmax(z, axis=1)
    rows = np.arange(len(y))
    assert np.asarray(s.confidence) == pytest.approx(prob.max(1))
    assert (np.asarray(s.pred) == prob.argmax(1)).all() and (np.asarray(s.correct) == (prob.argmax(1) == y)).all()
    assert np.asarray(s.true_logprob) == pytest.approx(lp[rows, y])
    assert np.asarray(s.pred_logprob) == pytest.approx(lp.max(1))
    assert (np.asarray(s.true_rank) == [(z[i] > z[i, y[i]]).sum() for i in rows]).all()
    assert np.asarray(s.entropy) == pytest.approx(-(prob * lp).sum(1), rel=1e-5)
    t = s.temperature
    assert np.asarray(s.ts_confidence) == pytest.approx(softmax(z / t, axis=1).max(1))
    confusion = np.zeros((12, 12), int)
    np.add.at(confusion, (y, prob.argmax(1)), 1)
    assert (np.asarray(s.confusion) == confusion).all()
    assert [tuple(r) for r in np.asarray(s.confused_pairs)[:3]] == \
        sorted(((a, b, confusion[a, b]) for a in range(12) for b in range(12) if a != b and confusion[a, b]),
               key=lambda r: (-r[2], r[0], r[1]))[:3]


def test_neighbours_are_the_exact_nearest_in_feature_space(run):
    s = ensure_stats(run)
    x = np.asarray(read_predictions(RunFolder(run), "test").features, dtype=np.float64)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nbrs = np.asarray(s.neighbours)
    assert nbrs.shape == (300, 10)
    assert (nbrs[:, 0] == d.argmin(1)).mean() > 0.99  # float32 search vs float64: ties may swap
    assert np.sort(d, axis=1)[:, :10] == pytest.approx(np.asarray(s.neighbour_distances), rel=1e-3)


def test_a_hand_computed_example(tmp_path):
    """Three samples, two classes: logits chosen so that softmax is exact enough to check by hand."""
    from cskd.config import TrainConfig

    folder = RunFolder(tmp_path / "hand")
    z = np.array([[np.log(3.0), 0.0], [0.0, 0.0], [0.0, np.log(4.0)]], dtype=np.float32)  # p = .75, .5, .8
    y = np.array([0, 1, 0])
    with folder.writing():
        write_config(folder, TrainConfig(dataset="hand").to_dict(), {}, kind="trained")
        write_predictions(folder, "test", {"logits": z, "labels": y, "indices": np.arange(3)},
                          {"checkpoint": "imported", "dataset": "hand", "class_names": ["a", "b"],
                           "coarse_names": None, "config": {}})
    s = ensure_stats(folder)
    assert np.asarray(s.confidence) == pytest.approx([0.75, 0.5, 0.8])
    # argmax ties go to the lower id: sample 1 (0.5, 0.5) is predicted "a", wrong; its true class ties, rank 0.
    assert list(np.asarray(s.correct)) == [True, False, False] and list(np.asarray(s.true_rank)) == [0, 0, 1]
    m = s.metrics
    assert m["top1_error"] == pytest.approx(1 / 3)  # top-k counts ties for the label: only sample 2 misses
    assert m["overconfidence"] == pytest.approx((0.75 + 0.5 + 0.8) / 3 - 1 / 3)
    # Brier: (.25² + .25²), (.5² + .5²), (.8² + .8²)
    assert m["brier"] == pytest.approx((0.125 + 0.5 + 1.28) / 3)
    assert m["nll"] == pytest.approx(-(np.log(0.75) + np.log(0.5) + np.log(0.2)) / 3)
    # 20 bins: 0.75 in (0.70, 0.75], 0.5 in (0.45, 0.5], 0.8 in (0.75, 0.8]: |1-.75| + |0-.5| + |0-.8|, / 3
    assert m["ece"] == pytest.approx((0.25 + 0.5 + 0.8) / 3) and m["mce"] == pytest.approx(0.8)
    assert m["recall_at_1"] is None and not s.has("neighbours") and m["temperature"] is None


def test_rewritten_predictions_make_the_cache_stale(tmp_path):
    run = write_synthetic_run(tmp_path / "r", n=80, n_val=40)
    folder = RunFolder(run)
    assert read_stats(run) is None
    first = ensure_stats(run)
    source = first.meta["source"]
    assert read_stats(run).meta["source"] == source
    preds = read_predictions(folder, "test")
    arrays = {k: np.array(preds.npz.array(k)) for k in preds.npz.names()}
    arrays["logits"] = arrays["logits"] * 2
    with folder.writing():
        write_predictions(folder, "test", arrays, {k: preds.meta[k] for k in (
            "checkpoint", "checkpoint_sha256", "epoch", "dataset", "class_names", "coarse_names", "config")})
    assert read_stats(run) is None  # made from the old predictions
    again = ensure_stats(run)
    assert again.meta["source"] != source and again.metrics["nll"] != pytest.approx(first.metrics["nll"])
    val = read_predictions(folder, "val")
    arrays = {k: np.array(val.npz.array(k)) for k in val.npz.names()}
    with folder.writing():  # new validation predictions: another temperature
        write_predictions(folder, "val", arrays, {k: val.meta[k] for k in (
            "checkpoint", "checkpoint_sha256", "epoch", "dataset", "class_names", "coarse_names", "config")})
    assert read_stats(run) is None and ensure_stats(run).meta["val_source"] == read_predictions(folder, "val").write_id


def test_stale_predictions_are_refused_and_damage_is_recomputed(tmp_path):
    run = write_synthetic_run(tmp_path / "r", n=60, n_val=0)
    ensure_stats(run)
    path = run / "stats-test.npz"
    st = path.stat()
    with open(path, "r+b") as f:
        f.write(b"XXXX")
    import os

    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(UserError, match="stats-test.npz is damaged"):
        read_stats(run)
    assert ensure_stats(run).complete and read_stats(run) is not None
    folder = RunFolder(run)
    with folder.writing():
        save_checkpoint(folder, "best", {"model": {}, "config": read_config(folder).to_dict(), "epoch": 9,
                                         "best": {"acc": 1.0, "epoch": 10}})
    assert read_stats(run) is None
    with pytest.raises(UserError, match="made from an earlier best.pt"):
        ensure_stats(run)


def test_two_steps_and_small_chunks_give_the_same_numbers(run, tmp_path, monkeypatch):
    import shutil

    whole = ensure_stats(run)
    copy = shutil.copytree(run, tmp_path / "copy", copy_function=shutil.copy2)
    (copy / "stats-test.npz").unlink()
    monkeypatch.setattr("cskd.analysis.metrics.CHUNK_ELEMENTS", 50)  # a few rows at a time
    monkeypatch.setattr(stats_module, "SEARCH_BATCH", 7)
    steps = []
    partial = ensure_stats(copy, retrieval=False, on_step=lambda f, t: steps.append(f))
    assert not partial.complete and partial.metrics["recall_at_1"] is None and not partial.has("neighbours")
    assert read_stats(copy) is not None  # the partial cache is readable meanwhile
    full = ensure_stats(copy)
    assert full.complete and steps == sorted(steps)
    for key, value in whole.metrics.items():
        assert full.metrics[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert (np.asarray(full.neighbours) == np.asarray(whole.neighbours)).all()


def test_one_temperature_fit_in_row_chunks(run):
    """The cache's temperature is analysis.calibration.fit_temperature's (the only fit), which reads
    the logits in row chunks without changing the result."""
    from cskd.analysis.calibration import fit_temperature

    v = read_predictions(RunFolder(run), "val")
    t = fit_temperature(v.logits, v.labels)
    assert ensure_stats(run).temperature == t
    assert fit_temperature(v.logits, v.labels, chunk_elements=5 * 12) == pytest.approx(t, rel=1e-6)
    assert not hasattr(stats_module, "fit_temperature")


# ------------------------------------------------------------------- the analysis additions it uses

def test_ece_bootstrap_from_confidence_matches_and_a_degenerate_case():
    from cskd.analysis.calibration import confidence_and_correctness, ece_bootstrap_ci, ece_bootstrap_ci_from_confidence

    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(200, 5)) * 2, axis=1)
    labels = rng.integers(0, 5, 200)
    conf, right = confidence_and_correctness(probs, labels)
    assert ece_bootstrap_ci_from_confidence(conf, right, n_boot=50) == ece_bootstrap_ci(probs, labels, n_boot=50)
    # Every sample at confidence 0.9 and right: each resample's ECE is |1 - 0.9| = 0.1, so is the interval.
    assert ece_bootstrap_ci_from_confidence(np.full(10, 0.9), np.ones(10, bool), n_boot=20) == \
        pytest.approx((0.1, 0.1))
    with pytest.raises(ValueError, match="confidence"):
        ece_bootstrap_ci_from_confidence(np.array([1.5]), np.array([True]))


def test_logprob_display_from_cached_log_probabilities():
    from cskd.analysis.displays import LogProbDisplay
    from cskd.analysis.misclassified import log_probs_on

    rng = np.random.default_rng(1)
    z = {"a": rng.normal(size=(40, 4)), "b": rng.normal(size=(40, 4))}
    y = rng.integers(0, 4, 40)
    rows = np.arange(0, 40, 3)
    direct = LogProbDisplay.from_logits(z, y, rows=rows, description="every third")
    cached = LogProbDisplay.from_log_probs({n: log_probs_on(v, y, rows) for n, v in z.items()}, rows,
                                           description="every third")
    assert direct.frame().equals(cached.frame()) and cached.title == direct.title
    # Hand-made: two samples with log-probabilities 0 and log(0.5); 2 bins over [log(.5), 0].
    tiny = LogProbDisplay.from_log_probs({"r": {"predicted": np.array([0.0, np.log(0.5)]),
                                                "true": np.array([0.0, np.log(0.5)])}}, np.array([3, 5]), bins=2,
                                         min_samples=1)
    assert list(tiny.counts["predicted"]["r"]) == [1, 1] and tiny.edges["true"][0] == pytest.approx(np.log(0.5))
    with pytest.raises(ValueError, match="need 2"):
        LogProbDisplay.from_log_probs({"r": {"predicted": np.zeros(1), "true": np.zeros(1)}}, np.array([3, 5]))
