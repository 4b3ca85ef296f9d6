"""Every --method trains on digits and can be analysed; head-changing methods still give plain logits."""

import json

import pytest
import torch

from cskd.config import METHODS, resolve
from cskd.data.placement import bundle_for
from cskd.evaluation.analyze import analyze
from cskd.method.objectives import method_for
from cskd.runfolder import RunFolder, read_config
from cskd.training.run_model import load_run_model
from cskd.training.trainer import run_training

pytestmark = pytest.mark.slow
# Methods whose loss is a cross-entropy alone: their logged regulariser must be exactly 0.
NO_REGULARISER = {"ce", "adacos", "virtual_softmax", "mixup"}


@pytest.fixture(scope="module")
def method_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    runs = {}
    order = ["cskd"] + [m for m in METHODS if m != "cskd"]  # cskd first: it is the KD teacher
    for method in order:
        extra = {"teacher": str(runs["cskd"])} if method in ("kd", "kd_cskd") else {}
        cfg = resolve({"method": method, "epochs": 1, "out": str(root / method), **extra},
                      "digits-small")
        run_training(cfg, progress=False)
        runs[method] = root / method
    return runs


def test_method_table_covers_every_method_name_with_its_data_needs():
    partner = {}
    for name in METHODS:
        extra = {"teacher": "x"} if name in ("kd", "kd_cskd") else {}
        m = method_for(resolve({"method": name, **extra}))
        partner[name] = (m.partner, m.clean)
    assert partner["ce"] == ("none", False) and partner["cskd"] == ("class", False)
    assert partner["ddgsd"] == ("view", False) and partner["cskd_e"] == ("class", True)
    assert partner["mixup_cskd"] == partner["kd_cskd"] == ("class", False)
    assert method_for(resolve({"method": "cskd", "pairing": "in-batch"})).partner == "in-batch"


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_one_epoch_and_learns(method_runs, method):
    summary = json.loads((method_runs[method] / "summary.json").read_text())
    assert summary["test_acc"] > 0.15  # better than the 0.10 of chance after one epoch
    record = json.loads((method_runs[method] / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(torch.isfinite(torch.tensor(record[k])) for k in ("train_loss", "train_ce", "train_reg"))
    # a method whose regulariser silently became zero would pass the lines above, but not these
    if method in NO_REGULARISER:
        assert record["train_reg"] == 0.0 and record["train_loss"] == pytest.approx(record["train_ce"])
    else:
        assert abs(record["train_reg"]) > 1e-4
        # KD weighs its CE by (1 - α): loss = (1-α)·CE + reg
        alpha = json.loads((method_runs[method] / "config.json").read_text())["config"]["kd_alpha"]
        ce_weight = 1 - alpha if method in ("kd", "kd_cskd") else 1.0
        assert record["train_loss"] == pytest.approx(ce_weight * record["train_ce"] + record["train_reg"], rel=1e-5)


@pytest.mark.parametrize("method", ["adacos", "virtual_softmax", "byot"])
def test_head_changing_methods_evaluate_to_plain_logits_and_features(method_runs, method):
    _, bundle, model, _ = load_run_model(method_runs[method], device=torch.device("cpu"),
                                         bundle=bundle_for(read_config(RunFolder(method_runs[method]))))
    x = bundle.test.images[:4].float()
    with torch.no_grad():
        assert model(x).shape == (4, 10)
        assert model.forward_features(x).shape == (4, model.feature_dim)


def test_every_method_can_be_analysed(method_runs, tmp_path):
    metrics = analyze([str(p) for p in method_runs.values()], str(tmp_path / "report"), progress=False,
                      tsne_max_points=200)
    assert set(metrics) == set(METHODS)
    for m in metrics.values():
        assert 0 <= m["top1_error"] <= 1 and 0 <= m["ece"] <= 1 and 0 <= m["recall_at_1"] <= 1


def test_kd_teacher_must_be_on_the_same_data_set(method_runs, tmp_path, capsys):
    from cskd.cli.main import main

    cfg_path = method_runs["cskd"] / "config.json"
    (tmp_path / "teacher").mkdir()
    cfg = json.loads(cfg_path.read_text())
    cfg["config"]["dataset"] = "synthetic"
    (tmp_path / "teacher" / "config.json").write_text(json.dumps(cfg))
    for name in ("best.pt", "summary.json"):
        (tmp_path / "teacher" / name).write_bytes((method_runs["cskd"] / name).read_bytes())
    code = main(["train", "--method", "kd", "--teacher", str(tmp_path / "teacher"), "--epochs", "1",
                 "--out", str(tmp_path / "student")])
    assert code == 2 and not (tmp_path / "student").exists()
    assert "was trained on synthetic, this run is on digits" in capsys.readouterr().err
