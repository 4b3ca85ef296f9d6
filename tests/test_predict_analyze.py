"""`cskd predict` and `cskd analyze`: the predictions file, its freshness and damage rules, the
metrics against independent computations, and the report folder replaced as a whole."""

import json
import shutil

import numpy as np
import pytest
from conftest import cli, copy_run, one_error_line

from cskd.errors import UserError
from cskd.evaluation.predict import predict
from cskd.runfolder import (
    RunFolder,
    predictions_status,
    read_predictions,
    read_record,
    read_run_id,
    save_checkpoint,
    write_config,
)

pytestmark = pytest.mark.slow


def test_predict_writes_the_documented_arrays_and_skips_when_fresh(digits_runs, tmp_path):
    run = copy_run(digits_runs["ce"], tmp_path / "copy")
    path = predict(run, progress=False)
    with np.load(path, allow_pickle=False) as z:  # a plain npz any numpy user can read
        assert z["logits"].dtype == np.float32 and z["logits"].shape == (360, 10)
        assert z["features"].dtype == np.float16 and z["features"].shape == (360, 128)
        assert z["labels"].shape == z["indices"].shape == (360,)
        assert z["images"].shape == (360, 8, 8, 1)
        meta = json.loads(str(z["meta"]))
    assert meta["class_names"] == [str(i) for i in range(10)] and meta["dataset"] == "digits"
    assert meta["split"] == "test" and meta["checkpoint"] == "best" and meta["format"] == 2
    folder = RunFolder(run)
    assert meta["run_id"] == read_run_id(folder) and meta["checkpoint_sha256"] == folder.recorded_sha256("best.pt")
    p = read_predictions(RunFolder(run), "test")
    assert not p.logits.flags.owndata and not p.logits.flags.writeable  # a view of the file's mapping: lazy
    mtime = path.stat().st_mtime_ns
    predict(run, progress=False)
    assert path.stat().st_mtime_ns == mtime  # fresh: not recomputed
    # predictions of best.pt are not those of last.pt: asking for last recomputes
    predict(run, checkpoint="last", progress=False)
    assert path.stat().st_mtime_ns > mtime and read_predictions(RunFolder(run), "test").meta["checkpoint"] == "last"


def test_a_new_best_checkpoint_makes_predictions_stale(digits_runs, tmp_path):
    import torch

    run = copy_run(digits_runs["ce"], tmp_path / "copy")
    predict(run, progress=False)
    folder = RunFolder(run)
    assert predictions_status(folder, "test")[0] == "fresh"
    state = torch.load(run / "best.pt", weights_only=True)
    with folder.writing():  # the run trained further and found a better epoch
        save_checkpoint(folder, "best", {k: v for k, v in {**state, "epoch": 5}.items() if k != "format"})
    assert predictions_status(folder, "test") == ("stale", "made from an earlier best.pt")
    predict(run, progress=False)
    assert read_predictions(folder, "test").meta["epoch"] == 6


def test_damaged_bytes_are_found_and_predict_recomputes(digits_runs, tmp_path):
    import os

    run = copy_run(digits_runs["ce"], tmp_path / "copy")
    path = predict(run, progress=False)
    stat = path.stat()
    data = bytearray(path.read_bytes())
    start = data.find(b"logits.npy") + 200
    data[start] ^= 0x10  # a flipped bit inside the logits: same size, same time
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(UserError, match="do not match their checksum"):
        read_predictions(RunFolder(run), "test", verify=True)
    predict(run, progress=False)
    read_predictions(RunFolder(run), "test", verify=True)  # whole again


def test_a_file_of_another_split_or_run_is_refused_and_never_replaced(predicted_runs, tmp_path, capsys):
    run = copy_run(predicted_runs["ce"], tmp_path / "copy")
    shutil.copy(run / "predictions-val.npz", run / "predictions-test.npz")  # validation predictions as test ones
    with pytest.raises(UserError, match="holds predictions of the val split, not of test"):
        read_predictions(RunFolder(run), "test")
    assert cli("analyze", run, "--out", tmp_path / "out") == 2
    assert "was not written by cskd in this run folder" in one_error_line(capsys)
    other = copy_run(predicted_runs["cskd"], tmp_path / "other")
    shutil.copy2(run / "predictions-val.npz", other / "predictions-val.npz")  # another run's file, times kept
    with pytest.raises(UserError, match="was made by another run"):
        read_predictions(RunFolder(other), "val")
    assert predictions_status(RunFolder(other), "val")[0] == "foreign"


def test_predictions_with_mismatched_shapes_or_bad_labels_are_refused(tmp_path):
    from cskd.runfolder import Predictions
    from cskd.runfolder.npz import write_npz

    meta = {"format": 2, "kind": "predictions", "class_names": ["a", "b", "c"], "split": "test", "dataset": "x",
            "checkpoint": "best"}
    good = {"logits": np.zeros((5, 3), np.float32), "labels": np.zeros(5, np.int64), "indices": np.arange(5)}
    for change, expected in (({"features": np.zeros((4, 2), np.float16)}, "features have shape"),
                             ({"labels": np.array([0, 1, 2, 3, 0])}, "labels fall outside 0..2"),
                             ({"labels": np.zeros(5)}, "labels are not integers"),
                             ({"logits": np.zeros((5, 4), np.float32)}, "4 logit columns but 3 class names")):
        with open(tmp_path / "p.npz", "wb") as f:
            write_npz(f, {**good, **change}, meta)
        with pytest.raises(UserError, match=expected):
            Predictions(tmp_path / "p.npz", fix="fix it")
    with open(tmp_path / "p.npz", "wb") as f:
        write_npz(f, {**good, "logits": np.full((5, 3), np.nan, np.float32)}, meta)
    with pytest.raises(UserError, match="not all finite"):
        Predictions(tmp_path / "p.npz", fix="fix it").verify()
    (tmp_path / "p.npz").write_bytes(b"garbage")
    with pytest.raises(UserError, match="p.npz is not usable: not a readable npz"):
        Predictions(tmp_path / "p.npz", fix="fix it")


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


def test_analyze_two_runs_agrees_with_independent_computation(predicted, tmp_path, capsys):
    from sklearn.neighbors import NearestNeighbors

    out = tmp_path / "report"
    assert not (predicted["ce"] / "tsne-test.npz").exists()
    assert cli("analyze", predicted["ce"], predicted["cskd"], "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"digits-ce", "digits-cskd"}
    for name, run in (("digits-ce", predicted["ce"]), ("digits-cskd", predicted["cskd"])):
        p = read_predictions(RunFolder(run), "test")
        logits, labels = np.asarray(p.logits, np.float64), np.asarray(p.labels)
        m = metrics[name]
        assert m["top1_error"] == pytest.approx((logits.argmax(1) != labels).mean())
        top5 = np.argsort(-logits, 1)[:, :5]
        assert m["top5_error"] == pytest.approx(1 - (top5 == labels[:, None]).any(1).mean())
        assert m["ece"] == pytest.approx(_ece(logits, labels, 20), abs=1e-6)
        logp = logits - logits.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        assert m["nll"] == pytest.approx(-logp[np.arange(len(labels)), labels].mean(), rel=1e-5)
        feats = np.asarray(p.features, np.float32)
        _, nn = NearestNeighbors(n_neighbors=2).fit(feats).kneighbors(feats)
        other = np.where(nn[:, 0] == np.arange(len(labels)), nn[:, 1], nn[:, 0])
        assert m["recall_at_1"] == pytest.approx((labels[other] == labels).mean(), abs=1 / len(labels))
        for key in ("top1_error", "top5_error", "ece", "mce", "recall_at_1"):
            assert 0 <= m[key] <= 1
    for name in ("table.md", "table.csv", "table.tex", "figures/reliability.png", "figures/reliability.pdf"):
        assert (out / name).stat().st_size > 0, name
    assert (predicted["ce"] / "tsne-test.npz").is_file()  # cached next to the predictions
    assert "wrote" in capsys.readouterr().out


def test_the_report_folder_is_replaced_as_a_whole(predicted, tmp_path, capsys, monkeypatch):
    out = tmp_path / "report"
    ce, ck = predicted["ce"], predicted["cskd"]
    assert cli("analyze", ce, ck, "--out", out) == 0
    assert (out / "figures" / "tsne_digits-cskd.png").is_file()
    assert cli("analyze", ce, "--out", out) == 0  # exactly this call's report: no figure of the other run
    assert not (out / "figures" / "tsne_digits-cskd.png").exists()
    assert set(json.loads((out / "metrics.json").read_text())) == {"digits-ce"}
    before = sorted(p.name for p in out.rglob("*"))

    from cskd.analysis import report

    def fail_midway(*args, **kwargs):
        raise ValueError("boom midway")

    monkeypatch.setattr(report, "analyze_runs", fail_midway)
    assert cli("analyze", ce, ck, "--out", out) == 2
    assert sorted(p.name for p in out.rglob("*")) == before  # the previous report, untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]  # no half-written folder
    capsys.readouterr()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    monkeypatch.undo()
    assert cli("analyze", ce, "--out", tmp_path / "mine") == 2
    assert "holds files that are not a cskd report" in one_error_line(capsys)


def test_without_best_pt_a_damaged_predictions_file_names_what_is_missing(digits_runs, tmp_path, capsys):
    run = copy_run(digits_runs["ce"], tmp_path / "copy")
    predict(run, progress=False)
    folder = RunFolder(run)
    with folder.writing():
        folder.remove("best.pt")
    assert cli("analyze", run, "--out", tmp_path / "out2") == 2
    assert "best.pt" in one_error_line(capsys)


def test_runs_on_different_data_sets_are_refused(digits_runs, tmp_path, capsys):
    other = copy_run(digits_runs["cskd"], tmp_path / "other")
    folder = RunFolder(other)
    record = read_record(folder)
    with folder.writing():
        write_config(folder, {**record["config"], "dataset": "synthetic"}, record["meta"])
    assert cli("analyze", digits_runs["ce"], other, "--out", tmp_path / "out") == 2
    assert "cannot compare runs made on different data sets" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_analyze_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert cli("analyze", tmp_path, "--out", tmp_path / "out") == 2
    assert "is not a cskd run" in one_error_line(capsys)


def test_a_users_file_inside_a_report_is_never_deleted(predicted, tmp_path, capsys):
    out = tmp_path / "rep"
    assert cli("analyze", predicted["ce"], "--out", out) == 0
    (out / "notes.txt").write_text("mine")
    assert cli("analyze", predicted["ce"], "--out", out) == 2
    assert "notes.txt is not part of the report cskd wrote" in one_error_line(capsys)
    assert (out / "notes.txt").read_text() == "mine"
