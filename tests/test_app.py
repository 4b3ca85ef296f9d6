"""The Streamlit dashboard (app/) through streamlit.testing.v1.AppTest, on tiny synthetic runs
(`write_synthetic_run` of tests/test_browser.py), plus the path checks of app/paths.py and
`cskd.dashboard.launch`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_browser import write_synthetic_run

APP = Path(__file__).resolve().parents[1] / "app" / "main.py"


# --------------------------------------------------------------------------- fixtures and helpers

CE, CSKD0, CSKD1, FLAT = "cifar-ce-s0", "sweep/cifar-cskd-s0", "sweep/cifar-cskd-s1", "flat"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs: three with a coarse grouping (one seed group of two, nested one folder down), one
    without, one without predictions, one with corrupt predictions and one with a broken config."""
    root = tmp_path_factory.mktemp("tiny-runs")
    common = dict(n=240, n_val=120, n_classes=10, coarse=True, dataset="cifar-like")
    write_synthetic_run(root / CE, method="ce", seed=0, sharpness=3.0, accuracy=0.7, **common)
    write_synthetic_run(root / CSKD0, method="cskd", seed=0, sharpness=1.5, accuracy=0.75, **common)
    write_synthetic_run(root / CSKD1, method="cskd", seed=1, sharpness=1.5, accuracy=0.74, **common)
    write_synthetic_run(root / FLAT, method="ce", n=240, dataset="flatset", tsne=False)
    write_synthetic_run(root / "no-predictions", predictions=False)
    write_synthetic_run(root / "broken", predictions=False)
    (root / "broken" / "predictions-test.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (root / "bad-config").mkdir()
    (root / "bad-config" / "config.json").write_text("{ not json")
    return root


def load(root, name, split="test"):
    from cskd.runs import load_predictions

    return load_predictions(Path(root) / name / f"predictions-{split}.npz")


def app(monkeypatch, root, picks=None):
    """An AppTest of app/main.py on the runs folder `root`, with `picks` as ?run= query values."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CSKD_RUNS_DIR", str(root))
    at = AppTest.from_file(str(APP), default_timeout=60)
    if picks is not None:
        at.query_params["run"] = list(picks)
    return at


def open_page(at, name):
    """Run the app (landing on the Runs page), then switch to views/<name>.py."""
    at.run()
    if name != "runs":
        at.switch_page(f"views/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def charts(at):
    return at.get("vega_lite_chart")


def row_of(df, run):
    return df[df["run"] == run].iloc[0]


# --------------------------------------------------------------------------------------- pages

def test_runs_page_lists_runs_groups_seeds_and_plots_curves(monkeypatch, runs):
    from analysis.calibration import ece
    from analysis.metrics import softmax, top_k_error
    from analysis.retrieval import recall_at_k

    at = open_page(app(monkeypatch, runs, [CE, CSKD0]), "runs")
    df = at.dataframe[0].value
    assert set(df["run"]) == {CE, CSKD0, CSKD1, FLAT, "no-predictions", "broken"}
    p = load(runs, CE)
    row = row_of(df, CE)
    assert row["method"] == "ce" and row["seed"] == 0 and row["epochs"] == 5
    assert row["top-1 err %"] == pytest.approx(100 * top_k_error(p["logits"], p["labels"]))
    assert row["top-5 err %"] == pytest.approx(100 * top_k_error(p["logits"], p["labels"], k=5))
    assert row["ECE %"] == pytest.approx(100 * ece(softmax(p["logits"]), p["labels"], n_bins=20))
    assert row["R@1 %"] == pytest.approx(100 * recall_at_k(p["features"], p["labels"]))
    assert row_of(df, CSKD0)["T"] == 4 and row_of(df, CSKD0)["λ"] == 1
    assert not row_of(df, "no-predictions")["predictions"]
    grouped = texts(at.markdown)
    assert "| dataset=cifar-like, method=cskd | 2 |" in grouped and " ± " in grouped  # two seeds, one row
    assert len(charts(at)) == 2  # validation accuracy and training loss curves
    errors = texts(at.error)
    assert "bad-config" in errors and "config.json" in errors
    assert any(b.label == "Compute predictions of no-predictions" for b in at.button)


def test_calibration_numbers_follow_the_bin_count(monkeypatch, runs):
    from analysis.calibration import ece, fit_temperature, mce
    from analysis.metrics import softmax

    at = open_page(app(monkeypatch, runs, [CE, CSKD0]), "calibration")
    p, v = load(runs, CE), load(runs, CE, "val")
    probs = softmax(p["logits"])
    row = row_of(at.dataframe[0].value, CE)
    assert row["ECE %"] == pytest.approx(100 * ece(probs, p["labels"], n_bins=20))
    assert row["MCE %"] == pytest.approx(100 * mce(probs, p["labels"], n_bins=20))
    t = fit_temperature(v["logits"], v["labels"])
    assert row["T (fit on val)"] == pytest.approx(t)
    assert row["ECE after TS %"] == pytest.approx(100 * ece(softmax(p["logits"] / t), p["labels"], n_bins=20))
    assert len(charts(at)) == 2  # before and after temperature scaling
    assert len(at.get("download_button")) == 4  # PNG and PDF of each
    counts = at.dataframe[1].value
    assert len(counts) == 20 and counts[CE].sum() == len(p["labels"])

    at.number_input(key="n_bins").set_value(5).run()
    row5 = row_of(at.dataframe[0].value, CE)
    assert row5["ECE %"] == pytest.approx(100 * ece(probs, p["labels"], n_bins=5))
    assert row5["ECE %"] != pytest.approx(row["ECE %"])
    assert len(at.dataframe[1].value) == 5


def test_misclassified_gallery_inspect_and_modes(monkeypatch, runs):
    from analysis.misclassified import misclassified_by_all, misclassified_by_first_not_second

    at = open_page(app(monkeypatch, runs, [CE, CSKD0]), "misclassified")
    a, b = load(runs, CE), load(runs, CSKD0)
    both = misclassified_by_all({"a": a["logits"], "b": b["logits"]}, a["labels"])
    assert f"**{len(both)}** of {len(a['labels'])} test samples" in texts(at.markdown)
    gallery = [img for img in at.image if img.captions and img.captions[0].startswith("#")]
    assert len(gallery) == min(16, len(both)) + 1  # the gallery, and the selected sample's image
    assert len(charts(at)) == 3  # one predictive distribution per run, and Fig. 2

    third = int(both[2])
    at.button(key=f"inspect:{third}").click().run()
    assert f"Sample #{a['indices'][third]}" in texts(at.subheader)
    assert at.selectbox(key="mis_row").value == third

    at.radio(key="mis_mode").set_value("misclassified by one run but not another").run()
    only_a = misclassified_by_first_not_second(a["logits"], b["logits"], a["labels"])
    assert f"**{len(only_a)}** of {len(a['labels'])} test samples are misclassified by {CE} but not" \
        in texts(at.markdown)


def test_misclassified_refuses_runs_on_different_samples(monkeypatch, runs):
    at = open_page(app(monkeypatch, runs, [CE, FLAT]), "misclassified")
    assert "predictions on different samples" in texts(at.error)


def test_embeddings_show_tsne_and_recall(monkeypatch, runs):
    from analysis.retrieval import recall_at_k

    at = open_page(app(monkeypatch, runs, [CE, CSKD0]), "embeddings")
    assert len(charts(at)) == 2
    p = load(runs, CE)
    assert f"Recall@1 {100 * recall_at_k(p['features'], p['labels']):.2f}%" in texts(at.caption)


def test_embeddings_compute_missing_tsne(monkeypatch, tmp_path):
    run = write_synthetic_run(tmp_path / "r", n=120, tsne=False)
    at = open_page(app(monkeypatch, tmp_path, ["r"]), "embeddings")
    assert not charts(at)
    at.button(key="tsne:r").click().run()
    assert not at.exception and (run / "tsne-test.npz").is_file()
    assert len(charts(at)) == 1


def test_hierarchy_for_coarse_runs_and_a_note_otherwise(monkeypatch, runs):
    from analysis.hierarchy import hierarchical_accuracy

    at = open_page(app(monkeypatch, runs, [CE, FLAT]), "hierarchy")
    assert len(charts(at)) == 1
    p = load(runs, CE)
    acc = hierarchical_accuracy(p["logits"].argmax(1), p["labels"], p["fine_to_coarse"])
    assert f"hierarchical accuracy {100 * acc:.2f}%" in texts(at.markdown)
    assert FLAT in texts(at.info) and "no coarse grouping" in texts(at.info)


# ------------------------------------------------------------------------------ damaged runs

def test_damaged_predictions_get_an_error_card_and_the_rest_still_shows(monkeypatch, runs, tmp_path):
    for name in ("calibration", "misclassified", "embeddings", "hierarchy"):
        at = open_page(app(monkeypatch, runs, ["broken", CE]), name)
        errors = texts(at.error)
        assert "broken" in errors and "predictions-test.npz" in errors, name
        assert CE in texts(at.caption)  # the footer lists it, and the page drew it:
        assert charts(at), name

    # A readable file lacking an array, and a truncated one.
    root = tmp_path / "runs"
    write_synthetic_run(root / "good")
    lacking = write_synthetic_run(root / "lacking")
    arrays = dict(np.load(lacking / "predictions-test.npz"))
    del arrays["features"]
    np.savez(lacking / "predictions-test.npz", **arrays)
    cut = write_synthetic_run(root / "cut")
    blob = (cut / "predictions-test.npz").read_bytes()
    (cut / "predictions-test.npz").write_bytes(blob[: len(blob) // 2])
    at = open_page(app(monkeypatch, root, ["lacking", "cut", "good"]), "calibration")
    errors = texts(at.error)
    assert "lacks features" in errors and "cut/predictions-test.npz" in errors
    assert list(at.dataframe[0].value["run"]) == ["good"]


def test_damaged_tsne_cache_is_named_and_can_be_recomputed(monkeypatch, tmp_path):
    run = write_synthetic_run(tmp_path / "r", n=120)
    (run / "tsne-test.npz").write_bytes(b"garbage")
    os.utime(run / "tsne-test.npz")  # newer than the predictions, so it is read
    at = open_page(app(monkeypatch, tmp_path, ["r"]), "embeddings")
    assert "tsne-test.npz" in texts(at.error)
    assert at.button(key="tsne:r").label == "Recompute the t-SNE of r"


def test_compute_predictions_button(monkeypatch, tmp_path, digits_runs):
    root = tmp_path / "runs"
    run = root / "digits-ce"
    shutil.copytree(digits_runs["ce"], run, ignore=shutil.ignore_patterns("predictions-*", "tsne-*"))
    at = open_page(app(monkeypatch, root, ["digits-ce"]), "calibration")
    assert "has no predictions yet" in texts(at.warning)
    at.button(key="predict:calibration:digits-ce").click().run(timeout=120)
    assert not at.exception, [e.value for e in at.exception]
    for name in ("predictions-test.npz", "predictions-val.npz", "tsne-test.npz"):
        assert (run / name).is_file(), name
    assert list(at.dataframe[0].value["run"]) == ["digits-ce"]

    later = (run / "predictions-test.npz").stat().st_mtime + 10
    os.utime(run / "best.pt", (later, later))  # a newer checkpoint: the predictions are stale
    at.run()
    assert "best.pt is newer than its predictions" in texts(at.caption)
    assert at.button(key="predict:calibration:digits-ce").label == "Recompute predictions of digits-ce"


def test_predictions_copied_from_another_run_are_flagged_and_not_used_for_temperature(monkeypatch, tmp_path):
    root = tmp_path / "runs"
    for name, seed in (("a", 0), ("b", 1)):
        write_synthetic_run(root / name, seed=seed, n=60, n_val=30)
    for split in ("test", "val"):
        shutil.copy(root / "a" / f"predictions-{split}.npz", root / "b" / f"predictions-{split}.npz")
    at = open_page(app(monkeypatch, root, ["a", "b"]), "calibration")
    assert not at.exception, [e.value for e in at.exception]
    captions = texts(at.caption)
    assert "b: its predictions were not made from this run's best.pt" in captions
    assert "a: its predictions" not in captions
    assert at.button(key="predict:calibration:b").label == "Recompute predictions of b"
    table = at.dataframe[0].value.set_index("run")
    assert not pd.isna(table.loc["a", "T (fit on val)"]) and pd.isna(table.loc["b", "T (fit on val)"])


# ------------------------------------------------------------------------- paths and folders

def test_run_names_from_the_url_cannot_leave_the_runs_folder(monkeypatch, runs):
    at = app(monkeypatch, runs, ["../../etc", "/etc/passwd", "sweep/../../x", CE]).run()
    assert not at.exception
    warned = texts(at.warning)
    assert "'../../etc'" in warned and "'/etc/passwd'" in warned and "'sweep/../../x'" in warned
    assert at.session_state["picked"] == [CE]


def test_paths_refuse_escapes_and_outside_symlinks(monkeypatch, tmp_path):
    from app import paths
    from cskd.errors import UserError

    root = tmp_path / "runs"
    outside = write_synthetic_run(tmp_path / "outside" / "secret")
    write_synthetic_run(root / "ok")
    (root / "linked-run").symlink_to(outside, target_is_directory=True)  # a whole run elsewhere
    evil = write_synthetic_run(root / "evil", predictions=False)
    (evil / "predictions-test.npz").symlink_to(outside / "predictions-test.npz")  # one file elsewhere
    real = paths.resolve_root(root)
    known = paths.discover_runs(real)
    assert known == ["evil", "ok"]
    for name in ("../outside/secret", "../../etc", "/etc", "linked-run", "ok/..", ""):
        with pytest.raises(UserError):
            paths.run_dir(real, name, known)
    for filename in ("../ok/config.json", "/etc/passwd", "..", "a/b"):
        with pytest.raises(UserError):
            paths.run_file(real, "ok", filename, known)
    with pytest.raises(UserError, match="outside the runs folder"):
        paths.run_files(real, "evil", known)

    at = open_page(app(monkeypatch, root, ["evil", "ok"]), "calibration")
    assert "outside the runs folder" in texts(at.error)
    assert list(at.dataframe[0].value["run"]) == ["ok"]


def test_empty_and_missing_runs_folder(monkeypatch, tmp_path):
    at = app(monkeypatch, tmp_path).run()
    assert not at.exception and "cskd demo --runs" in texts(at.info) and "cskd train" in texts(at.info)
    at.switch_page("views/calibration.py").run()
    assert "cskd demo --runs" in texts(at.info)
    at = app(monkeypatch, tmp_path / "nope").run()
    assert "does not exist" in texts(at.error)


# ------------------------------------------------------------------------------------ launch

class FakeProc:
    """Stands in for the Streamlit child process."""

    def __init__(self, waits):
        self.waits, self.signals = list(waits), []

    def wait(self, timeout=None):
        result = self.waits.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result

    def poll(self):
        return 0

    def terminate(self):
        self.signals.append("terminate")

    def kill(self):
        self.signals.append("kill")


def test_launch(monkeypatch, tmp_path, capsys):
    import socket

    from cskd import dashboard
    from cskd.errors import UserError

    with pytest.raises(UserError, match="not a folder"):
        dashboard.launch(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="not a folder"):
        dashboard.launch(str(tmp_path / "file"))
    with pytest.raises(UserError, match="--port"):
        dashboard.launch(str(tmp_path), port=70000)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(UserError, match="cannot listen"):
            dashboard.launch(str(tmp_path), port=taken.getsockname()[1])

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free again once closed
    started = []
    monkeypatch.setattr(dashboard.subprocess, "Popen", lambda cmd: started.append(cmd) or FakeProc([3]))
    assert dashboard.launch(str(tmp_path), port=port) == 3  # Streamlit's exit status
    cmd = started[0]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith(os.path.join("app", "main.py"))
    for flag, value in (("--server.address", "127.0.0.1"), ("--server.headless", "true"),
                        ("--browser.gatherUsageStats", "false")):
        assert cmd[cmd.index(flag) + 1] == value
    assert cmd[-3:] == ["--", "--runs", str(tmp_path.resolve())]
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().out

    # Ctrl-C: Streamlit got SIGINT too; launch waits for it and reports a clean stop.
    monkeypatch.setattr(dashboard.subprocess, "Popen", lambda cmd: FakeProc([KeyboardInterrupt(), 0]))
    assert dashboard.launch(str(tmp_path), port=port) == 0
    assert "stopped" in capsys.readouterr().err
