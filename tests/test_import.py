"""`cskd import` (cskd/importer.py): predictions of a model trained elsewhere become a run folder that
`cskd analyze` and every dashboard page read; bad inputs are one-line errors naming the file."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest

from cskd.errors import UserError
from cskd.evaluation.importer import add_arguments, cmd_import, import_predictions
from cskd.runfolder import RunFolder, is_imported, predictions_status, read_config_dict, read_predictions

N, C = 1000, 10


def pair(folder, *, seed=0, n=N, features=False, images=False):
    """A synthetic (N, C) logits / (N,) labels pair (and features, images) as .npy files."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, n)
    logits = rng.normal(size=(n, C)).astype(np.float32)
    logits[np.arange(n), labels] += 2.5
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "logits.npy", logits)
    np.save(folder / "labels.npy", labels)
    files = {"logits": folder / "logits.npy", "labels": folder / "labels.npy"}
    if features:
        np.save(folder / "features.npy", rng.normal(size=(n, 8)).astype(np.float32) + labels[:, None])
        files["features"] = folder / "features.npy"
    if images:
        np.save(folder / "images.npy", rng.integers(0, 255, (n, 3, 8, 8), dtype=np.uint8))  # N, C, H, W
        files["images"] = folder / "images.npy"
    return files


def test_import_makes_a_run_folder_and_a_second_call_adds_val(tmp_path):
    run = tmp_path / "runs" / "resnet-elsewhere"
    files = pair(tmp_path / "in", features=True, images=True)
    (tmp_path / "in" / "names.txt").write_text("\n".join(f"class {i}" for i in range(C)) + "\n")
    line = import_predictions(run, **files, class_names=tmp_path / "in" / "names.txt", dataset="cifar-like",
                              model="resnet", method="ce")
    assert "imported 1,000 test predictions (10 classes, 8-d features, images)" in line and "\n" not in line
    folder = RunFolder(run)
    assert is_imported(folder) and read_config_dict(folder) == {"dataset": "cifar-like", "model": "resnet",
                                                                "method": "ce", "seed": 0}
    assert predictions_status(folder, "test") == ("fresh", "imported")
    p = read_predictions(folder, "test", verify=True)
    assert p.class_names[3] == "class 3" and p.images.shape == (N, 8, 8, 3) and p.features.dtype == np.float16
    assert (np.asarray(p.labels) == np.load(files["labels"])).all()
    val = pair(tmp_path / "val", seed=1, n=300)
    import_predictions(run, **val, split="val")
    assert read_predictions(folder, "val").class_names == p.class_names  # the run's names, not 0..C-1
    with pytest.raises(UserError, match="was imported with dataset 'cifar-like'"):
        import_predictions(run, **val, split="val", dataset="other")


@pytest.mark.slow
def test_cskd_analyze_and_the_stats_cache_work_on_an_import(tmp_path):
    from cskd.evaluation.analyze import analyze
    from cskd.evaluation.stats_compute import ensure_stats

    run = tmp_path / "imported"
    import_predictions(run, **pair(tmp_path / "in", features=True))
    import_predictions(run, **pair(tmp_path / "val", seed=1, n=300), split="val")
    metrics = analyze([str(run)], str(tmp_path / "report"), progress=False)
    s = ensure_stats(run)
    assert metrics["imported"]["ece"] == pytest.approx(s.metrics["ece"])
    assert metrics["imported"]["temperature"] == pytest.approx(s.metrics["temperature"], rel=1e-6)
    assert (tmp_path / "report" / "metrics.json").is_file()


def test_cskd_analyze_on_an_import_without_features(tmp_path):
    """The brief's case: a bare 1,000 x 10 logits/labels pair."""
    from cskd.evaluation.analyze import analyze

    run = tmp_path / "imported"
    import_predictions(run, **pair(tmp_path / "in"))
    metrics = analyze([str(run)], str(tmp_path / "report"), progress=False)["imported"]
    assert "recall_at_1" not in metrics and 0 <= metrics["ece"] <= 1 and "temperature" not in metrics
    assert not (run / "tsne-test.npz").exists()


@pytest.mark.slow
def test_every_dashboard_page_renders_an_import_without_features_or_images(monkeypatch, tmp_path):
    from app_helpers import app, open_page, settle, texts

    root = tmp_path / "runs"
    import_predictions(root / "logits-only", **pair(tmp_path / "in"))
    for page in ("runs", "calibration", "misclassified", "confusion", "embeddings", "hierarchy"):
        at = open_page(app(monkeypatch, root, ["logits-only"]), page)
        settle(at)
        assert not at.error, (page, texts(at.error))
        if page == "embeddings":
            assert "carry no features" in texts(at.info)
        if page == "misclassified":
            assert "carry no images" in texts(at.caption)
        if page == "calibration":  # temperature scaling asked for: said to be impossible, not drawn wrong
            at.toggle(key="cal_scaled").set_value(True).run()
            assert not at.exception and "no validation predictions" in texts(at.caption)
        if page == "runs":
            assert at.dataframe[0].value["state"].iloc[0] in ("metrics", "metrics (R@1 pending)")


def test_torch_npz_and_json_inputs(tmp_path):
    import torch

    rng = np.random.default_rng(0)
    torch.save(torch.from_numpy(rng.normal(size=(50, 3)).astype(np.float32)).to(torch.bfloat16), tmp_path / "z.pt")
    np.savez(tmp_path / "y.npz", labels=rng.integers(0, 3, 50), other=np.zeros(2))
    (tmp_path / "names.json").write_text(json.dumps(["cat", "dog", "[x](http://evil.example)"]))
    import_predictions(tmp_path / "run", logits=tmp_path / "z.pt", labels=tmp_path / "y.npz",
                       class_names=tmp_path / "names.json")
    p = read_predictions(RunFolder(tmp_path / "run"), "test")
    assert p.class_names[2] == "[x](http://evil.example)" and p.logits.dtype == np.float32


def bad_input(tmp_path, name: str):
    files = pair(tmp_path / "in")
    z = np.load(files["logits"])
    target = tmp_path / "in" / name
    if name == "shape.npy":
        np.save(target, z[:, :, None])
    elif name == "nan.npy":
        z[17, 2] = np.nan
        np.save(target, z)
    elif name == "object.npy":
        np.save(target, np.array([{"a": 1}] * N, dtype=object), allow_pickle=True)
    elif name == "pickle.npy":
        import pickle

        target.write_bytes(pickle.dumps(z))
    elif name == "code.pt":
        import torch

        class Payload:
            def __reduce__(self):
                return (os.getcwd, ())
        torch.save({"logits": torch.zeros(3, 3), "x": Payload()}, target)
    elif name == "truncated.npz":
        np.savez(target, logits=z)
        target.write_bytes(target.read_bytes()[:300])
    elif name == "sparse.pt":
        import torch

        torch.save(torch.from_numpy(z).to_sparse(), target)
    elif name == "truncated.npy":
        np.save(target, z)
        target.write_bytes(target.read_bytes()[:300])
    return files, target


@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")  # torch, on loading sparse.pt
@pytest.mark.parametrize("name, match", [
    ("shape.npy", "has shape (1000, 10, 1)"), ("nan.npy", "NaN or infinite values (first in row 17)"),
    ("object.npy", "cannot be read as an array without running code"),
    ("pickle.npy", "cannot be read as an array without running code"),
    ("code.pt", "cannot be read with torch.load(weights_only=True)"),
    ("truncated.npy", "cannot be read as an array"), ("truncated.npz", "cannot be read as an array"),
    ("sparse.pt", "holds a sparse_coo tensor; save a dense one")])
def test_bad_logits_are_one_line_errors_naming_the_file(tmp_path, name, match):
    files, target = bad_input(tmp_path, name)
    with pytest.raises(UserError) as e:
        import_predictions(tmp_path / "run", logits=target, labels=files["labels"])
    assert match in str(e.value) and str(target) in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_bad_labels_names_and_folders(tmp_path):
    files = pair(tmp_path / "in")
    np.save(tmp_path / "far.npy", np.full(N, C))
    np.save(tmp_path / "short.npy", np.zeros(N - 1, int))
    np.save(tmp_path / "float.npy", np.full(N, 0.5))
    (tmp_path / "names.txt").write_text("a\nb\n")
    cases = [(dict(labels=tmp_path / "far.npy"), "outside 0..9"), (dict(labels=tmp_path / "short.npy"), "(999,)"),
             (dict(labels=tmp_path / "float.npy"), "not integer class ids"),
             (dict(class_names=tmp_path / "names.txt"), "lists 2 names for 10 classes"),
             (dict(logits=tmp_path / "missing.npy"), "no such file")]
    for change, match in cases:
        with pytest.raises(UserError, match=match.replace("(", r"\(").replace(")", r"\)")):
            import_predictions(tmp_path / "run", **{**files, **change})
    from synthetic_runs import write_synthetic_run

    trained = write_synthetic_run(tmp_path / "trained", n=20, n_val=0, predictions=False)
    with pytest.raises(UserError, match="holds a trained run"):
        import_predictions(trained, **files)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "predictions-test.npz").write_bytes(b"mine")
    with pytest.raises(UserError, match="cskd did not write"):
        import_predictions(foreign, **files)


def test_the_command_line_entry(tmp_path, capsys):
    files = pair(tmp_path / "in")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "run"), "--logits", str(files["logits"]), "--labels",
                              str(files["labels"]), "--split", "val", "--model", "vit"])
    assert cmd_import(args) == 0
    assert "imported 1,000 val predictions" in capsys.readouterr().out
    assert read_config_dict(RunFolder(tmp_path / "run"))["model"] == "vit"
