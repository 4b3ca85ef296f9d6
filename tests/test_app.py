"""The Streamlit dashboard (app/) through streamlit.testing.v1.AppTest on tiny synthetic runs
(tests/synthetic_runs.py): the run list, default picks and the URL, seed groups, T × λ and the
training curves, background computation of missing metrics, and `cskd.cli.dashboard.launch`. The
other pages are in test_app_pages.py, damaged and hostile run folders in test_app_robust.py; the
helpers are in app_helpers.py.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from app_helpers import (
    CE,
    CSKD0,
    CSKD1,
    FLAT,
    TEST_SEL,
    app,
    charts,
    jobs_held,
    open_page,
    preds,
    row_of,
    settle,
    texts,
    url_runs,
)
from synthetic_runs import write_synthetic_run


@pytest.fixture
def runs(tiny_app_runs):
    """tiny_runs() (built once per session in conftest), read only."""
    return tiny_app_runs


# ------------------------------------------------------------------------------------ Runs page

def test_runs_page_lists_runs_with_cached_metrics(monkeypatch, runs):
    from cskd.analysis.calibration import ece
    from cskd.analysis.metrics import nll, softmax, top_k_error
    from cskd.analysis.retrieval import recall_at_k

    at = open_page(app(monkeypatch, runs, [CE, CSKD0]), "runs")
    df = at.dataframe[0].value
    assert set(df["run"]) == {CE, CSKD0, CSKD1, FLAT, TEST_SEL, "no-predictions"}
    p = preds(runs, CE)
    row = row_of(df, CE)
    assert row["method"] == "ce" and row["seed"] == 0 and row["T"] == "—"
    assert row["top-1 err %"] == pytest.approx(100 * top_k_error(p.logits, p.labels))
    assert row["top-5 err %"] == pytest.approx(100 * top_k_error(p.logits, p.labels, k=5))
    assert row["NLL"] == pytest.approx(nll(p.logits, p.labels))
    assert row["ECE %"] == pytest.approx(100 * ece(softmax(p.logits), p.labels, n_bins=20))
    assert row["R@1 %"] == pytest.approx(100 * recall_at_k(p.features, p.labels))
    assert row_of(df, CSKD0)["T"] == "4" and row_of(df, CSKD0)["λ"] == "1"
    assert row_of(df, TEST_SEL)["selected on"] == "test" and row_of(df, TEST_SEL)["state"] == "metrics"
    assert row_of(df, TEST_SEL)["protocol"] == "authors" and row_of(df, CE)["protocol"] == "clean"
    nothing = row_of(df, "no-predictions")
    assert nothing["state"] == "no predictions" and nothing["top-1 err %"] == pytest.approx(30.0)  # summary's test_acc
    groups = at.dataframe[1].value
    cskd = groups[groups["n"] == 2].iloc[0]
    assert cskd["runs"] == f"{CSKD0}, {CSKD1}" and " ± " in cskd["top-1 err %"]
    assert len(charts(at)) == 2  # selection-split accuracy and training loss
    errors = texts(at.error)
    assert "bad-config" in errors and "config.json" in errors


def test_training_curves_say_what_they_plot(monkeypatch, runs):
    at = open_page(app(monkeypatch, runs, [CE, TEST_SEL]), "runs")
    acc, loss = (c.proto.spec for c in charts(at))
    assert "selection split" in acc and "Training loss" in loss
    data = {c.proto.spec: c for c in charts(at)}
    assert len(data) == 2
    from streamlit import dataframe_util

    frames = [dataframe_util.convert_arrow_bytes_to_pandas_df(c.proto.data.data) for c in charts(at)]
    assert set(frames[0]["quantity"]) == {"validation accuracy", "TEST accuracy (the selection split)"}
    assert set(frames[1]["quantity"]) == {"CE + regulariser (the method's objective)", "CE alone"}
    assert set(frames[1][frames[1]["quantity"] == "CE alone"]["run"]) == {TEST_SEL}  # CE has no regulariser


def test_default_picks_compare_two_methods_and_the_url_follows(monkeypatch, tmp_path):
    for name, method, seed in (("a-ce-s0", "ce", 0), ("a-ce-s1", "ce", 1), ("b-cskd-s0", "cskd", 0)):
        write_synthetic_run(tmp_path / name, method=method, seed=seed, n=60, n_val=0, stats=True, tsne=False)
    at = open_page(app(monkeypatch, tmp_path), "runs")
    assert at.session_state["picked"] == ["a-ce-s0", "b-cskd-s0"]  # not ce-s0 vs ce-s1
    assert url_runs(at) == ["a-ce-s0", "b-cskd-s0"]  # in the URL from the first render
    at.multiselect(key="picked").set_value(["a-ce-s1"]).run()
    assert url_runs(at) == ["a-ce-s1"]
    at.switch_page("views/calibration.py").run()
    assert at.session_state["picked"] == ["a-ce-s1"]  # the pick survives page switches


def test_unpicked_runs_are_not_computed_until_asked(monkeypatch, tmp_path):
    from cskd.app import jobs

    for name in ("a", "b"):
        write_synthetic_run(tmp_path / name, n=60, n_val=30, tsne=False)  # predictions, no stats cache
    with jobs_held(monkeypatch):
        at = open_page(app(monkeypatch, tmp_path, ["a"]), "runs")
        assert "computing its metrics" in texts(at.caption)
    settle(at)
    assert (tmp_path / "a" / "stats-test.npz").is_file() and not (tmp_path / "b" / "stats-test.npz").exists()
    df = at.dataframe[0].value
    assert row_of(df, "a")["state"] == "metrics" and row_of(df, "b")["state"] == "metrics not computed"
    assert np.isnan(row_of(df, "b")["ECE %"])
    at.button(key="stats:others").click().run()
    settle(at)
    assert (tmp_path / "b" / "stats-test.npz").is_file()
    assert not np.isnan(row_of(at.dataframe[0].value, "b")["ECE %"])
    assert all(j.state == "done" for j in jobs._jobs.values() if str(tmp_path) in j.path)


def test_txl_grid_when_runs_span_temperatures(monkeypatch, tmp_path):
    for t in (2.0, 4.0):
        for lam in (0.5, 1.0):
            write_synthetic_run(tmp_path / f"cskd-T{t:g}-L{lam:g}", temperature=t, lambda_cls=lam, n=60, n_val=0,
                                stats=True, tsne=False, seed=int(t))
    at = open_page(app(monkeypatch, tmp_path), "runs")
    assert "T × λ" in texts(at.subheader)
    from streamlit import dataframe_util

    grids = [dataframe_util.convert_arrow_bytes_to_pandas_df(c.proto.data.data) for c in charts(at)]
    grid = next(g for g in grids if "lambda_cls" in g)
    assert len(grid) == 4 and set(grid["temperature"]) == {2.0, 4.0}


def test_runs_named_in_the_url_cannot_leave_the_runs_folder(monkeypatch, runs):
    at = app(monkeypatch, runs, ["../../etc", "/etc/passwd", "sweep/../../x", CE]).run()
    assert not at.exception
    warned = texts(at.warning)
    for bad in ("../../etc", "/etc/passwd", "sweep/../../x"):
        assert f"'{bad}'" in warned
    assert at.session_state["picked"] == [CE]


def test_empty_and_missing_runs_folder(monkeypatch, tmp_path):
    at = app(monkeypatch, tmp_path).run()
    assert not at.exception and "cskd demo --runs" in texts(at.code) and "cskd import" in texts(at.code)
    at.switch_page("views/calibration.py").run()
    assert "cskd demo --runs" in texts(at.code)
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


# `cskd dashboard` with a stand-in for Streamlit that, like Streamlit, installs its own SIGINT and
# SIGTERM handlers and exits 0 on either; it prints its pid, then waits.
FAKE_SERVER = """
import os, signal, sys, time
signal.signal(signal.SIGINT, lambda *a: sys.exit(0))
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print(os.getpid(), flush=True)
time.sleep(120)
"""
DRIVER = """
import signal, sys
if sys.argv[4] == "ignored":  # as in a background job of a shell without job control (cmd &, nohup)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
from cskd.cli import dashboard, main
dashboard.command = lambda root, port, host: [sys.executable, "-c", sys.argv[3]]
sys.exit(main.main(["dashboard", "--runs", sys.argv[1], "--port", sys.argv[2]]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sigint", ["handled", "ignored"])
@pytest.mark.parametrize("stop", ["ctrl-c", "ctrl-c seen after the server is gone", "sigterm"])
def test_a_stopped_dashboard_says_so_last_and_leaves_no_server(tmp_path, stop, sigint):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or `kill PID` (SIGTERM to
    the CLI alone) stops the server and the CLI, which says "cskd dashboard: stopped" as its last
    line and exits 0 -- also when the CLI inherited SIGINT ignored, where Python raises no
    KeyboardInterrupt: the CLI used to return Streamlit's 0 there without the line."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), str(port), FAKE_SERVER, sigint],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=env)
    try:
        assert proc.stdout.readline().startswith(f"cskd dashboard: http://127.0.0.1:{port}")
        server = int(proc.stdout.readline())
        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        elif stop == "sigterm":
            os.kill(proc.pid, signal.SIGTERM)
        else:  # the CLI gets to its pending Ctrl-C only after the server has exited on its own
            os.kill(proc.pid, signal.SIGSTOP)
            os.killpg(proc.pid, signal.SIGINT)
            for _ in range(600):
                if Path(f"/proc/{server}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    break
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    assert err.splitlines()[-1:] == ["cskd dashboard: stopped"], err
    with pytest.raises(ProcessLookupError):  # reaped by the CLI, not left running
        os.kill(server, 0)


def test_launch(monkeypatch, tmp_path, capsys):
    import socket

    from cskd.cli import dashboard
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
    assert cmd[1].endswith(os.path.join("app", "serve.py")) and cmd[2] == "run"
    assert cmd[3].endswith(os.path.join("app", "main.py"))
    for flag, value in (("--server.address", "127.0.0.1"), ("--server.headless", "true"),
                        ("--browser.gatherUsageStats", "false"), ("--client.toolbarMode", "minimal")):
        assert cmd[cmd.index(flag) + 1] == value
    assert cmd[-3:] == ["--", "--runs", str(tmp_path.resolve())]
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().out
