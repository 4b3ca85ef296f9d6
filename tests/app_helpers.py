"""Helpers of the dashboard's AppTest tests (test_app*.py, test_import.py): tiny synthetic runs,
an AppTest on them, and the readers of what a page drew."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path

from synthetic_runs import write_synthetic_run

from cskd.runfolder import RunFolder, read_predictions

APP = Path(__file__).resolve().parents[1] / "app" / "main.py"

CE, CSKD0, CSKD1, FLAT, TEST_SEL = "cifar-ce-s0", "sweep/cifar-cskd-s0", "sweep/cifar-cskd-s1", "flat", "authors-s0"
TINY = dict(n=240, n_val=120, n_classes=10, coarse=True, dataset="cifar-like")


def tiny_runs(root: Path) -> Path:
    """Tiny runs with their stats caches: three with a coarse grouping (one seed group of two,
    nested one folder down), one without, one trained with --select-on test, one without
    predictions, and one with a broken config."""
    write_synthetic_run(root / CE, method="ce", seed=0, sharpness=3.0, accuracy=0.7, stats=True, **TINY)
    write_synthetic_run(root / CSKD0, method="cskd", seed=0, sharpness=1.5, accuracy=0.75, stats=True, **TINY)
    write_synthetic_run(root / CSKD1, method="cskd", seed=1, sharpness=1.5, accuracy=0.74, stats=True, **TINY)
    write_synthetic_run(root / FLAT, method="ce", n=240, dataset="flatset", tsne=False, stats=True)
    write_synthetic_run(root / TEST_SEL, method="cskd", select_on="test", protocol="authors", stats=True, **TINY)
    write_synthetic_run(root / "no-predictions", predictions=False)
    (root / "bad-config").mkdir()
    (root / "bad-config" / "config.json").write_text("{ not json")
    return root


def app(monkeypatch, root, picks=None):
    """An AppTest of app/main.py on the runs folder `root`, with `picks` as ?run= query values."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CSKD_RUNS_DIR", str(root))
    monkeypatch.setenv("CSKD_DASHBOARD_JOBS", "thread")  # no interpreter start per background job here
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


@contextlib.contextmanager
def jobs_held(monkeypatch):
    """Background jobs (threads here) started inside the block wait until it ends, so what a page
    shows while its jobs are still to run can be read. Left alone, a job can end before the page
    is drawn (jobs of tiny runs take 0.0 s, and a loaded machine draws slowly), and the rerun it
    causes then rightly shows the result instead."""
    from cskd.app import worker

    real_task, release = worker.run_task, threading.Event()

    def held_task(*args, **kwargs):
        assert release.wait(60), "a held job was never released"
        return real_task(*args, **kwargs)

    monkeypatch.setattr(worker, "run_task", held_task)
    try:
        yield
    finally:
        release.set()


def settle(at):
    """Wait for the background jobs the last run started, then run again (what the page's
    progress fragment does in a browser), until a run starts none (the metrics, then the
    neighbour search)."""
    from cskd.app import jobs

    for _ in range(6):
        assert jobs.wait_idle(120)
        ended = jobs.changes()
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        # Settled when this run started no job and none ended while it drew: a job that ends
        # within the run (a failing search takes 0.0 s) must still be shown by one more run.
        if not jobs.active() and jobs.changes() == ended:
            return at
    raise AssertionError("the page kept starting or finishing background jobs")


def texts(elements) -> str:
    """The elements' text as shown: ui.literal's Markdown escapes and invisible joiners removed."""
    shown = "\n".join(str(e.value) for e in elements).replace("**", "").replace("\u2060", "")
    return re.sub(r"\\(.)", r"\1", shown)


def url_runs(at) -> list:
    value = at.query_params.get("run", [])
    return [value] if isinstance(value, str) else list(value)


def charts(at):
    return at.get("vega_lite_chart")


def row_of(df, run):
    return df[df["run"] == run].iloc[0]


def preds(root, name, split="test"):
    return read_predictions(RunFolder(Path(root) / name), split)
