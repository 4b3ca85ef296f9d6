import json
import os

import numpy as np
import pytest

from analysis.calibration import ece
from analysis.metrics import softmax, top_k_error
from analysis.report import analyze_runs

N, C, D = 120, 6, 8


def make_run(seed, *, method="cskd", temperature=4.0, lambda_cls=1.0, scale=1.0, **extra):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % C  # identical labels in every run
    centers = np.random.default_rng(100).normal(size=(C, D))
    feats = (centers[y] + rng.normal(size=(N, D))).astype(np.float32)
    logits = (scale * feats @ centers.T).astype(np.float32)
    run = dict(logits=logits, features=feats, labels=y, indices=np.arange(N) + 1000,
               class_names=[f"c{i}" for i in range(C)], dataset="toy", split="test",
               config=dict(dataset="toy", method=method, temperature=temperature,
                           lambda_cls=lambda_cls, seed=seed, out=f"runs/{seed}"),
               val_logits=logits[:60], val_labels=y[:60],
               fine_to_coarse=[0, 0, 0, 1, 1, 1], coarse_names=["a", "b"])
    run.update(extra)
    return run


def test_full_report(tmp_path):
    seen = []

    def image(i):
        seen.append(i)
        return np.zeros((8, 8, 3), np.uint8)

    runs = {"ce": make_run(0, method="ce", scale=3.0, images=image),
            "cskd_T4": make_run(1), "cskd_T1": make_run(2, temperature=1.0, lambda_cls=2.0)}
    # reuse a precomputed embedding for one run (its rows are plotted as given)
    runs["cskd_T1"]["tsne"] = (np.random.default_rng(0).normal(size=(N, 2)), np.arange(N))
    metrics = analyze_runs(runs, tmp_path / "out", progress=False)

    assert set(metrics) == set(runs)
    for name, m in metrics.items():
        assert {"top1_error", "top5_error", "nll", "ece", "mce", "adaptive_ece", "classwise_ece",
                "recall_at_1", "temperature", "ece_after_ts", "nll_after_ts",
                "hierarchical_accuracy"} <= set(m)
        for key in ("top1_error", "top5_error", "ece", "mce", "adaptive_ece", "classwise_ece",
                    "recall_at_1", "ece_after_ts", "hierarchical_accuracy"):
            assert 0.0 <= m[key] <= 1.0, (name, key)
        z, y = runs[name]["logits"], runs[name]["labels"]
        assert m["top1_error"] == top_k_error(z, y)
        assert m["top5_error"] == top_k_error(z, y, k=5)
        assert m["ece"] == ece(softmax(z), y, n_bins=20)
    # the over-confident run (logits x3) gets T > 1 and a lower NLL after scaling
    assert metrics["ce"]["temperature"] > 1 and metrics["ce"]["nll_after_ts"] < metrics["ce"]["nll"]

    out = tmp_path / "out"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved.keys() == metrics.keys()
    for name in metrics:
        assert saved[name] == pytest.approx(metrics[name])
    table = (out / "table.md").read_text()
    assert "method=ce" in table and "± 0.00" in table
    assert (out / "table.csv").read_text().startswith("label,n,runs,")
    assert r"\toprule" in (out / "table.tex").read_text()
    names = {f for f in os.listdir(out / "figures")}
    for stem in ("reliability", "logprob_misclassified_by_all", "predictive_distribution",
                 "tsne_ce", "tsne_cskd_T4", "tsne_cskd_T1", "hierarchical_confusion_ce",
                 "txl_top1_error"):
        for ext in ("png", "pdf"):
            assert f"{stem}.{ext}" in names and os.path.getsize(out / "figures" / f"{stem}.{ext}")
    assert not [f for f in names if f.endswith((".tmp", ".part"))]
    assert len(seen) == 1 and seen[0] >= 1000  # called with the dataset index, not the row


def test_single_run_without_optional_inputs(tmp_path):
    run = make_run(0, tsne=(np.zeros((N, 2)), np.arange(N)))
    for key in ("val_logits", "val_labels", "fine_to_coarse", "coarse_names"):
        del run[key]
    metrics = analyze_runs({"only": run}, tmp_path, progress=False)
    assert "temperature" not in metrics["only"] and "hierarchical_accuracy" not in metrics["only"]
    names = set(os.listdir(tmp_path / "figures"))
    assert "reliability.png" in names and "tsne_only.png" in names
    assert not any(n.startswith(("logprob", "hierarchical", "txl", "predictive")) for n in names)


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
