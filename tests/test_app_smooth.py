"""The Calibration page's smooth option (no bins): the smooth ECE of each picked run equals
analysis.smooth_calibration on the run's predictions, the curves are drawn, and the download is
offered."""

from __future__ import annotations

import pytest
from app_helpers import CE, CSKD0, app, charts, open_page, preds
from streamlit import dataframe_util

from cskd.analysis.calibration import confidence_and_correctness
from cskd.analysis.metrics import softmax
from cskd.analysis.smooth_calibration import smooth_ece_from_confidence

pytestmark = pytest.mark.slow


def test_the_smooth_option_shows_the_smooth_ece_and_curves(monkeypatch, tiny_app_runs):
    at = open_page(app(monkeypatch, tiny_app_runs, [CE, CSKD0]), "calibration")
    at.segmented_control(key="cal_strategy").set_value("smooth (no bins)").run()
    assert not at.exception
    table = at.dataframe[0].value
    for run in (CE, CSKD0):
        p = preds(tiny_app_runs, run)
        conf, right = confidence_and_correctness(softmax(p.logits), p.labels)
        want = smooth_ece_from_confidence(conf, right)
        assert table.loc["smooth ECE (shown predictions)", run] == f"{100 * want:.2f} %"
    assert "ECE (shown bins)" not in table.index
    frame = dataframe_util.convert_arrow_bytes_to_pandas_df(charts(at)[0].proto.data.data)
    assert set(frame["run"]) == {CE, CSKD0} and {"lower", "upper", "accuracy", "density"} <= set(frame.columns)
    assert (frame["lower"] <= frame["upper"] + 1e-9).all()
    assert len(at.get("download_button")) == 2
