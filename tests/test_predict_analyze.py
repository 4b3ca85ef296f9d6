import json
import os
import shutil
import time

import numpy as np
import pytest

from cskd.cli import main
from cskd.predict import predict
from cskd.runs import load_predictions


def cli(*argv):
    return main([str(a) for a in argv])


def test_predict_writes_the_documented_arrays_and_skips_when_fresh(digits_runs, tmp_path):
    run = tmp_path / "copy"  # a copy: this test changes timestamps
    shutil.copytree(digits_runs["ce"], run)
    path = predict(run, progress=False)
    z = np.load(path)
    assert z["logits"].dtype == np.float32 and z["logits"].shape == (360, 10)
    assert z["features"].dtype == np.float16 and z["features"].shape == (360, 128)
    assert z["labels"].shape == z["indices"].shape == (360,)
    assert list(z["class_names"]) == [str(i) for i in range(10)]
    assert z["images"].shape == (360, 8, 8, 1) and str(z["dataset"]) == "digits"
    mtime = path.stat().st_mtime_ns
    predict(run, progress=False)
    assert path.stat().st_mtime_ns == mtime  # fresh: not recomputed
    time.sleep(0.01)
    os.utime(run / "best.pt")  # the checkpoint is now newer: predictions are stale
    predict(run, progress=False)
    assert path.stat().st_mtime_ns > mtime
    # predictions of best.pt are not those of last.pt: asking for last recomputes
    mtime = path.stat().st_mtime_ns
    predict(run, checkpoint="last", progress=False)
    assert path.stat().st_mtime_ns > mtime and str(np.load(path)["checkpoint"]) == "last"


def _ece(logits, labels, n_bins):
    """Independent ECE: explicit loop over (lo, hi] bins, 0 in the first bin."""
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    conf, pred = p.max(1), p.argmax(1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        mask = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if mask.any():
            total += mask.sum() / len(conf) * abs((pred[mask] == labels[mask]).mean() - conf[mask].mean())
    return total


def test_analyze_two_runs_agrees_with_independent_computation(digits_runs, tmp_path, capsys):
    from sklearn.neighbors import NearestNeighbors

    out = tmp_path / "report"
    assert cli("analyze", digits_runs["ce"], digits_runs["cskd"], "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"digits-ce", "digits-cskd"}
    for name, run in (("digits-ce", digits_runs["ce"]), ("digits-cskd", digits_runs["cskd"])):
        p = load_predictions(run / "predictions-test.npz")
        logits, labels = p["logits"].astype(np.float64), p["labels"]
        m = metrics[name]
        assert m["top1_error"] == pytest.approx((logits.argmax(1) != labels).mean())
        top5 = np.argsort(-logits, 1)[:, :5]
        assert m["top5_error"] == pytest.approx(1 - (top5 == labels[:, None]).any(1).mean())
        assert m["ece"] == pytest.approx(_ece(logits, labels, 20), abs=1e-6)
        logp = logits - logits.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        assert m["nll"] == pytest.approx(-logp[np.arange(len(labels)), labels].mean(), rel=1e-5)
        feats = p["features"].astype(np.float32)
        _, nn = NearestNeighbors(n_neighbors=2).fit(feats).kneighbors(feats)
        other = np.where(nn[:, 0] == np.arange(len(labels)), nn[:, 1], nn[:, 0])
        assert m["recall_at_1"] == pytest.approx((labels[other] == labels).mean(), abs=1 / len(labels))
        for key in ("top1_error", "top5_error", "ece", "mce", "recall_at_1"):
            assert 0 <= m[key] <= 1
    for name in ("table.md", "table.csv", "table.tex", "figures/reliability.png", "figures/reliability.pdf"):
        assert (out / name).stat().st_size > 0, name
    assert (digits_runs["ce"] / "tsne-test.npz").is_file()  # cached next to the predictions
    assert "wrote" in capsys.readouterr().out


def test_corrupt_predictions_file_is_named_in_a_one_line_error(digits_runs, tmp_path, capsys):
    from cskd.errors import UserError

    run = tmp_path / "copy"
    shutil.copytree(digits_runs["ce"], run)
    predict(run, progress=False)
    (run / "predictions-test.npz").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"predictions-test.npz is not a readable predictions file \(ValueError\); delete it"):
        load_predictions(run / "predictions-test.npz")
    # `cskd analyze` treats the file as a cache: a damaged one is recomputed from best.pt ...
    assert cli("analyze", run, "--out", tmp_path / "out") == 0
    assert load_predictions(run / "predictions-test.npz")["logits"].shape == (360, 10)
    # ... and without best.pt to recompute from, the error names what is missing.
    (run / "predictions-test.npz").write_bytes(b"garbage")
    (run / "best.pt").unlink()
    assert cli("analyze", run, "--out", tmp_path / "out2") == 2
    err = capsys.readouterr().err.strip()
    assert "best.pt" in err and "\n" not in err


def test_predictions_with_mismatched_shapes_are_refused(digits_runs, tmp_path):
    from cskd.errors import UserError

    path = tmp_path / "predictions-test.npz"
    np.savez(path, logits=np.zeros((5, 3), np.float32), features=np.zeros((4, 2)), labels=np.zeros(5, int),
             indices=np.arange(5), class_names=np.array(["a", "b", "c"]), dataset=np.array("x"),
             split=np.array("test"))
    with pytest.raises(UserError, match="disagree"):
        load_predictions(path)
    with pytest.raises(UserError, match="is missing; run `cskd predict"):
        load_predictions(tmp_path / "nope.npz")


def test_runs_on_different_data_sets_are_refused(digits_runs, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(digits_runs["cskd"], other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["config"]["dataset"] = "synthetic"
    (other / "config.json").write_text(json.dumps(cfg))
    assert cli("analyze", digits_runs["ce"], other, "--out", tmp_path / "out") == 2
    assert "cannot compare runs made on different data sets" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_analyze_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert cli("analyze", tmp_path, "--out", tmp_path / "out") == 2
    assert "is not a cskd run" in capsys.readouterr().err
