"""Hierarchy (Fig. 4 a/b), domain error (Fig. 4(c)), t-SNE (Fig. 3) and T × λ (Table 7) displays:
held values against hand computations, plot() on given axes (Agg), frame() against the arrays."""

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from cskd.analysis.displays import DomainErrorDisplay, HierarchyDisplay, TSNEDisplay, TxLDisplay
from cskd.analysis.figures import class_colors, run_color
from cskd.analysis.tables import group_by_seed

# fine labels 0..4 -> coarse groups [0, 0, 1, 1, 2] (as in test_hierarchy.py)
MAP = np.array([0, 0, 1, 1, 2])
TRUE = np.array([0, 1, 2, 3, 4, 4])  # true coarse [0, 0, 1, 1, 2, 2]
PRED = np.array([1, 2, 2, 0, 4, 0])  # pred coarse [0, 1, 1, 0, 2, 0]; fine right on samples 2, 4
PRED_B = np.array([0, 1, 2, 3, 4, 4])  # all right
GROUPS = ["animals", "plants", "things"]
for _a in (MAP, TRUE, PRED, PRED_B):
    _a.flags.writeable = False


def test_hierarchy_display_hand_computed():
    d = HierarchyDisplay.from_predictions(PRED, TRUE, MAP, coarse_names=GROUPS, name="ce")
    np.testing.assert_allclose(d.confusion, [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])
    assert d.accuracy == pytest.approx(0.5)  # coarse right on samples 0, 2, 4
    assert d.group_sizes.tolist() == [2, 2, 2] and d.coarse_names == tuple(GROUPS)
    assert d.title == "ce: hierarchical accuracy 50.00%"
    logits = np.eye(5)[PRED] * 3.0
    same = HierarchyDisplay.from_logits(logits, TRUE, MAP, coarse_names=GROUPS)
    np.testing.assert_array_equal(same.confusion, d.confusion)


def test_hierarchy_frame_and_plot():
    d = HierarchyDisplay.from_predictions(PRED, TRUE, MAP, coarse_names=GROUPS, name="ce")
    f = d.frame()
    assert len(f) == 9
    cell = f[(f["true_group"] == "things") & (f["predicted_group"] == "animals")].iloc[0]
    assert (cell["g"], cell["h"], cell["fraction"], cell["percent"], cell["n_true_group"]) == (2, 0, 0.5, 50.0, 2)
    np.testing.assert_allclose(f["fraction"].to_numpy().reshape(3, 3), d.confusion)
    ax = Figure().subplots()
    assert d.plot(ax) is ax
    assert [t.get_text() for t in ax.texts] == ["50.0", "50.0", "0.0", "50.0", "50.0", "0.0", "50.0", "0.0", "50.0"]
    assert ax.get_title() == d.title
    assert [t.get_text() for t in ax.get_xticklabels()] == GROUPS


def test_domain_error_display_hand_computed():
    d = DomainErrorDisplay.from_predictions({"ce": PRED, "kd": PRED_B}, TRUE, MAP, coarse_names=GROUPS)
    # ce: group animals {0, 1} both wrong; plants {2 right, 3 wrong}; things {4 right, 5 wrong}
    np.testing.assert_allclose(d.error, [[1.0, 0.5, 0.5], [0.0, 0.0, 0.0]])
    assert d.group_sizes.tolist() == [2, 2, 2]
    assert d.metrics("ce") == {"top1_error[animals]": 1.0, "top1_error[plants]": 0.5, "top1_error[things]": 0.5}
    assert DomainErrorDisplay.metric_key("x") == "top1_error[x]"
    logits = {"ce": np.eye(5)[PRED], "kd": np.eye(5)[PRED_B]}
    np.testing.assert_array_equal(DomainErrorDisplay.from_logits(logits, TRUE, MAP).error, d.error)
    assert DomainErrorDisplay.from_logits(logits, TRUE, MAP).coarse_names == ("0", "1", "2")


def test_domain_error_frame_and_plot():
    d = DomainErrorDisplay.from_predictions({"ce": PRED, "kd": PRED_B}, TRUE, MAP, coarse_names=GROUPS)
    f = d.frame()
    assert len(f) == 6 and f["run"].tolist() == ["ce"] * 3 + ["kd"] * 3
    np.testing.assert_allclose(f["top1_error"], d.error.ravel())
    np.testing.assert_allclose(f["top1_error_pct"], 100 * d.error.ravel())
    assert f["color"].tolist() == [run_color(0)] * 3 + [run_color(1)] * 3 and f["n"].tolist() == [2] * 6
    ax = Figure().subplots()
    assert d.plot(ax) is ax
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, 100 * d.error.ravel())  # runs x groups bars, in percent
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ce", "kd"]
    with pytest.raises(ValueError, match="^pred_by_run must be a non-empty dict"):
        DomainErrorDisplay.from_predictions({}, TRUE, MAP)


def test_tsne_display_by_class_with_legend():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    labels.flags.writeable = False
    rows = np.array([0, 5, 12, 25, 39])
    coords = rng.normal(size=(5, 2))
    d = TSNEDisplay.from_embedding(coords, rows, labels, class_names=list("abcd"), indices=100 + np.arange(40),
                                   name="ce")
    assert d.color_by == "class" and d.classes.tolist() == [0, 0, 1, 2, 3]
    np.testing.assert_allclose(d.coords, coords.astype(np.float32))
    f = d.frame()
    assert f["index"].tolist() == [100, 105, 112, 125, 139] and f["class_name"].tolist() == list("aabcd")
    assert f["color"].tolist() == [class_colors(4)[c] for c in [0, 0, 1, 2, 3]]
    assert f["category"].tolist() == list("aabcd") and d.palette == dict(zip("abcd", class_colors(4)))
    ax = Figure().subplots()
    assert d.plot(ax) is ax
    np.testing.assert_allclose(ax.collections[0].get_offsets(), coords.astype(np.float32))
    drawn = [to_hex(c) for c in ax.collections[0].get_facecolors()]
    assert drawn == f["color"].tolist()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list("abcd")


def test_tsne_display_colours_by_group_above_20_classes():
    labels = np.arange(30)
    mapping = np.arange(30) // 10
    d = TSNEDisplay.from_embedding(np.zeros((30, 2)), np.arange(30), labels, fine_to_coarse=mapping,
                                   coarse_names=["x", "y", "z"])
    assert d.color_by == "group" and d.groups.tolist() == mapping.tolist() and d.show_legend
    f = d.frame()
    assert f["group_name"].tolist() == ["x"] * 10 + ["y"] * 10 + ["z"] * 10
    assert set(f["color"]) == set(class_colors(3))
    no_map = TSNEDisplay.from_embedding(np.zeros((30, 2)), np.arange(30), labels)
    assert no_map.color_by == "class" and not no_map.show_legend and len(set(no_map.frame()["color"])) == 30
    ax = no_map.plot()
    assert ax.get_legend() is None
    with pytest.raises(ValueError, match="^color_by must be 'auto', 'class' or 'group'"):
        TSNEDisplay.from_embedding(np.zeros((30, 2)), np.arange(30), labels, color_by="group")
    with pytest.raises(ValueError, match=r"^coords must have 2 columns; got shape \(30, 3\)$"):
        TSNEDisplay.from_embedding(np.zeros((30, 3)), np.arange(30), labels)


def test_tsne_display_from_features_runs_tsne():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = 10.0 * np.eye(3, 8)[y] + rng.normal(size=(60, 8))
    d = TSNEDisplay.from_features(x, y, max_points=30, seed=0, name="ce")
    assert d.coords.shape == (30, 2) and np.bincount(d.classes).tolist() == [10, 10, 10]


def _rec(name, seed, top1, T, lam):
    cfg = dict(dataset="toy", method="cskd", temperature=T, lambda_cls=lam, seed=seed)
    return {"run": name, "config": cfg, "metrics": {"top1_error": top1}}


def test_txl_display_from_groups():
    groups = group_by_seed([_rec("a", 0, 0.30, 1.0, 1.0), _rec("b", 1, 0.32, 1.0, 1.0),
                            _rec("c", 0, 0.20, 4.0, 1.0), _rec("d", 0, 0.25, 4.0, 2.0)], ignore=("seed",))
    d = TxLDisplay.from_groups(groups, name="cskd")
    np.testing.assert_array_equal(d.temperatures, [1.0, 4.0])
    np.testing.assert_array_equal(d.lambdas, [1.0, 2.0])
    np.testing.assert_allclose(d.mean, [[0.31, np.nan], [0.20, 0.25]])
    assert d.percent and d.value_label == "top1_error (%)"
    f = d.frame()
    assert f[["temperature", "lambda_cls"]].values.tolist() == [[1, 1], [1, 2], [4, 1], [4, 2]]
    np.testing.assert_allclose(f["value"], [31.0, np.nan, 20.0, 25.0])
    assert f["text"].tolist() == ["31.00", "", "20.00", "25.00"]
    assert f["std"].iloc[0] == pytest.approx(100 * np.std([0.30, 0.32], ddof=1)) and np.isnan(f["std"].iloc[2])
    ax = Figure().subplots()
    assert d.plot(ax) is ax
    assert [t.get_text() for t in ax.texts] == ["31.00", "20.00", "25.00"]  # the empty cell left blank
    assert ax.get_title() == "cskd: top1_error (%)"
