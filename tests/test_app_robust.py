"""The dashboard on damaged, hostile, locked and stale run folders: a bad file becomes an error card
naming it while the other runs and pages keep working, names are shown literally, and app/paths.py
keeps every read inside the runs folder."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from app_helpers import app, charts, jobs_held, open_page, settle, texts
from conftest import hold_lock
from synthetic_runs import write_synthetic_run

from cskd.errors import UserError
from cskd.runfolder import RunFolder, read_config, read_predictions, save_checkpoint, write_predictions

PAGES = ("runs", "calibration", "misclassified", "confusion", "embeddings", "hierarchy")


def damage_keeping_times(path: Path) -> None:
    """Break a zip's first local header in place, keeping size and times: the manifest still says
    the file is cskd's, so it is found damaged rather than foreign."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.write(b"XXXX")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken-runs")
    tiny = dict(n=60, n_val=30, stats=True, coarse=True)
    write_synthetic_run(root / "good", **tiny)
    damage_keeping_times(write_synthetic_run(root / "damaged", **tiny) / "predictions-test.npz")
    loop = write_synthetic_run(root / "loop", predictions=False)
    (loop / "predictions-test.npz").symlink_to("predictions-test.npz")  # points at itself
    outside = write_synthetic_run(tmp_path_factory.mktemp("elsewhere") / "secret", **tiny)
    escape = write_synthetic_run(root / "escape", predictions=False)
    (escape / "predictions-test.npz").symlink_to(outside / "predictions-test.npz")
    fifo = write_synthetic_run(root / "fifo", predictions=False)
    os.mkfifo(fifo / "predictions-test.npz")  # reading it would block forever
    nulls = write_synthetic_run(root / "null-test-acc", select_on="test", **tiny)
    (nulls / "summary.json").write_text('{"format": 2, "test_acc": null, "best_acc": 0.5, "selected_on": "test"}')
    bad = write_synthetic_run(root / "bad-summary", **tiny)
    (bad / "summary.json").write_text('{"format": 2, "test_acc": "high"}')
    stats = write_synthetic_run(root / "bad-stats", **tiny)
    damage_keeping_times(stats / "stats-test.npz")
    (root / "linked-run").symlink_to(outside, target_is_directory=True)  # a whole run elsewhere
    return root


@pytest.mark.slow
def test_every_page_shows_error_cards_for_bad_files_and_the_good_run(monkeypatch, broken):
    picks = ["damaged", "loop", "escape", "fifo", "null-test-acc", "good"]
    for page in PAGES:
        at = open_page(app(monkeypatch, broken, picks), page)
        errors = texts(at.error)
        assert "damaged/predictions-test.npz" in errors and "damaged header" in errors, page
        assert "loop/predictions-test.npz is a symlink loop" in errors, page
        assert "escape/predictions-test.npz is outside the runs folder" in errors, page
        assert "fifo/predictions-test.npz is not a regular file" in errors, page
        if page != "runs":
            assert charts(at), page  # the good runs are still drawn
    at = open_page(app(monkeypatch, broken, picks), "runs")
    table = at.dataframe[0].value.set_index("run")
    assert "linked-run" not in table.index  # a symlinked run outside the folder is not listed
    assert table.loc["null-test-acc", "selected on"] == "test" and table.loc["null-test-acc", "state"] == "metrics"
    assert "bad-summary/summary.json: test_acc is 'high', not a number" in texts(at.error)


def test_a_damaged_stats_cache_is_named_and_computed_again(monkeypatch, broken, tmp_path):
    """The error card is shown while the cache is computed again (the job is held until the first
    render was read: see app_helpers.jobs_held), and is gone once it was."""
    from cskd.app import jobs

    root = tmp_path / "runs"
    shutil.copytree(broken / "bad-stats", root / "bad-stats", copy_function=shutil.copy2)
    with jobs_held(monkeypatch):
        at = open_page(app(monkeypatch, root, ["bad-stats"]), "runs")
        assert "bad-stats/stats-test.npz is damaged" in texts(at.error)
        assert [j.task for j in jobs.active() if j.name == "bad-stats"] == ["stats"]  # picked: computed again
    settle(at)
    assert not at.error
    at.switch_page("views/calibration.py").run()
    assert not at.error and charts(at)


@pytest.mark.slow  # draws several pages: 1.3-2.8 s
def test_a_grouping_that_does_not_fit_its_names_is_a_card_on_the_pages_that_use_it(monkeypatch, tmp_path):
    import numpy as np

    run = write_synthetic_run(tmp_path / "odd", n=60, n_val=0, coarse=True)
    write_synthetic_run(tmp_path / "fine", n=60, n_val=0, coarse=True, method="ce", stats=True)
    folder = RunFolder(run)
    p = read_predictions(folder, "test")
    arrays = {k: np.array(p.npz.array(k)) for k in p.npz.names()}
    meta = {k: p.meta[k] for k in ("checkpoint", "checkpoint_sha256", "epoch", "dataset", "class_names", "config")}
    with folder.writing():  # two groups in the mapping, one name
        write_predictions(folder, "test", arrays, {**meta, "coarse_names": ["only one"]})
    for page in ("hierarchy", "embeddings"):
        at = open_page(app(monkeypatch, tmp_path, ["odd", "fine"]), page)
        settle(at)
        if page == "embeddings":
            at.segmented_control(key="emb_color").set_value("coarse group").run()
        assert "odd" in texts(at.error) and charts(at), page


HOSTILE = "[click](http://evil.example) ![t](http://evil.example/t.png) <img src=x> **b** :red[r] $x$"
UNESCAPED = re.compile(r"(?<!\\)(\]\(|<img|!\[|:red\[|\$x)")
# what GitHub-flavoured Markdown links even when every character is escaped: a bare address
AUTOLINKABLE = re.compile(r"(?i)(https?://|(?<![a-z0-9])www\.|[a-z0-9]@[a-z0-9-]+\.[a-z0-9])")


def linkable(markdown: str) -> bool:
    return bool(AUTOLINKABLE.search(re.sub(r"\\(.)", r"\1", markdown)))


@pytest.mark.slow
def test_names_from_folders_classes_and_the_url_are_shown_literally(monkeypatch, tmp_path):
    name = HOSTILE.replace("/", "_")  # a folder name cannot hold "/"
    classes = [HOSTILE] + [f"c{i}" for i in range(1, 10)]
    write_synthetic_run(tmp_path / name, n=80, n_val=40, dataset=HOSTILE, class_names=classes, coarse=True,
                        stats=True, accuracy=0.3)
    write_synthetic_run(tmp_path / "plain", n=80, n_val=40, dataset=HOSTILE, class_names=classes, coarse=True,
                        stats=True, accuracy=0.3, method="ce")
    for page in PAGES:
        at = open_page(app(monkeypatch, tmp_path, [name, "plain", HOSTILE]), page)
        shown = []
        for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "header", "subheader"):
            shown += [str(e.value) for e in at.get(kind)]
        for element in _all_elements(at):
            label = getattr(element, "label", None)
            if isinstance(label, str):
                shown.append(label)
            shown += [c for c in (getattr(element, "captions", None) or []) if isinstance(c, str)]
            shown += _help_texts(element)  # tooltips render Markdown too (a dataframe's column config)
        bad = [s for s in shown if UNESCAPED.search(s) or linkable(s)]
        assert not bad, (page, bad)
    from cskd.app.ui import literal

    first = app(monkeypatch, tmp_path, [name, HOSTILE]).run()
    warning = [w.value for w in first.warning][0]
    assert f"Ignored run {literal(repr(HOSTILE))} from the URL" in warning and not linkable(warning)
    assert not linkable(literal("see www.evil.example, http://evil.example or me@evil.example"))
    assert first.session_state["picked"] == [name]


def _help_texts(element) -> list[str]:
    """An element's tooltip and those of its dataframe columns (JSON strings in its proto)."""
    found = [element.help] if isinstance(getattr(element, "help", None), str) else []

    def walk(value):
        if isinstance(value, dict):
            found.extend(v for k, v in value.items() if k == "help" and isinstance(v, str))
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    proto = getattr(element, "proto", None)
    for _, value in (proto.ListFields() if hasattr(proto, "ListFields") else []):
        if isinstance(value, str) and value.startswith("{"):
            with contextlib.suppress(ValueError):
                walk(json.loads(value))
    return found


def _all_elements(at):
    def walk(node):
        for child in getattr(node, "children", {}).values():
            yield child
            yield from walk(child)
    return list(walk(at._tree))


@pytest.mark.slow
def test_a_locked_folder_gives_an_error_card(monkeypatch, tmp_path):
    run = write_synthetic_run(tmp_path / "busy", n=60, n_val=30)  # predictions, no stats yet
    holder = hold_lock(run, "cskd predict (a test holding the lock)")
    try:
        at = open_page(app(monkeypatch, tmp_path, ["busy"]), "calibration")
        settle(at)
        assert "is being written by PID" in texts(at.error) and "a test holding the lock" in texts(at.error)
    finally:
        holder.kill()
        holder.wait()
    assert not (run / "stats-test.npz").exists()


def test_stale_and_foreign_predictions_are_flagged_not_used(monkeypatch, tmp_path):
    for name, seed in (("a", 0), ("b", 1), ("c", 2)):
        write_synthetic_run(tmp_path / name, seed=seed, n=60, n_val=30, stats=True)
    folder = RunFolder(tmp_path / "a")
    with folder.writing():  # trained further: a new best.pt
        save_checkpoint(folder, "best", {"model": {}, "config": read_config(folder).to_dict(), "epoch": 9,
                                         "best": {"acc": 0.9, "epoch": 10}})
    os.unlink(tmp_path / "b" / "predictions-test.npz")
    shutil.copy(tmp_path / "c" / "predictions-test.npz", tmp_path / "b" / "predictions-test.npz")
    at = open_page(app(monkeypatch, tmp_path, ["a", "b", "c"]), "calibration")
    assert "a: made from an earlier best.pt" in texts(at.warning)
    assert at.button(key="predict:calibration:a").label == "Recompute predictions of a"
    assert "b/predictions-test.npz: predictions-test.npz was not written by cskd" in texts(at.error)
    assert list(at.dataframe[0].value.columns) == ["c"]


@pytest.mark.slow
def test_compute_predictions_button_predicts_then_computes_metrics(monkeypatch, tmp_path, digits_runs):
    root = tmp_path / "runs"
    run = root / "digits-ce"
    shutil.copytree(digits_runs["ce"], run, copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns("predictions-*", "tsne-*", "stats-*"))
    at = open_page(app(monkeypatch, root, ["digits-ce"]), "calibration")
    assert "no test predictions yet" in texts(at.warning)
    at.button(key="predict:calibration:digits-ce").click().run()
    settle(at)
    for name in ("predictions-test.npz", "predictions-val.npz", "stats-test.npz"):
        assert (run / name).is_file(), name
    assert list(at.dataframe[0].value.columns) == ["digits-ce"]
    from cskd.evaluation.stats_cache import read_stats

    # the neighbour search ran as its own, later job; the t-SNE waits for the Embeddings page
    assert read_stats(run).complete and not (run / "tsne-test.npz").exists()


# ------------------------------------------------------------------------------------ app/paths.py

def test_paths_refuse_escapes_loops_and_special_files(tmp_path):
    from cskd.app import paths
    from cskd.errors import UserError

    root = tmp_path / "runs"
    outside = write_synthetic_run(tmp_path / "outside" / "secret")
    write_synthetic_run(root / "ok")
    (root / "linked-run").symlink_to(outside, target_is_directory=True)
    evil = write_synthetic_run(root / "evil", predictions=False)
    (evil / "predictions-test.npz").symlink_to(outside / "predictions-test.npz")
    (evil / "summary.json").unlink()
    (evil / "summary.json").symlink_to("summary.json")
    real = paths.resolve_root(root)
    known = paths.discover_runs(real)
    assert known == ["evil", "ok"]
    for name in ("../outside/secret", "../../etc", "/etc", "linked-run", "ok/..", ""):
        with pytest.raises(UserError):
            paths.run_dir(real, name, known)
    files = paths.run_files(real, "evil", known)
    assert "outside the runs folder" in files.problems["predictions-test.npz"]
    assert "symlink loop" in files.problems["summary.json"]
    assert "config.json" in files.stamps and not paths.run_files(real, "ok", known).problems
    with pytest.raises(UserError, match="symlink loop"):
        files.check("summary.json")


@pytest.mark.slow  # draws several pages: 1.3-2.8 s
def test_pages_comparing_samples_refuse_runs_of_different_samples(monkeypatch, tmp_path):
    tiny = dict(n_val=30, stats=True)
    write_synthetic_run(tmp_path / "a", n=60, **tiny)
    write_synthetic_run(tmp_path / "b", n=80, **tiny)
    for page in ("misclassified", "confusion"):
        at = open_page(app(monkeypatch, tmp_path, ["a", "b"]), page)
        settle(at)
        errors = texts(at.error)
        assert "hold predictions on different samples" in errors and "80 samples" in errors, page


@pytest.mark.slow  # draws several pages: 1.3-2.8 s
def test_runs_named_like_table_columns_render(monkeypatch, tmp_path):
    tiny = dict(n=60, n_val=30, stats=True)
    for name in ("metric", "run", "index"):
        write_synthetic_run(tmp_path / name, **tiny)
    for page in PAGES:
        at = open_page(app(monkeypatch, tmp_path, ["metric", "run", "index"]), page)
        settle(at)
        assert not at.exception, (page, [e.value for e in at.exception])


def test_no_background_job_reads_a_file_that_leads_outside_the_runs_folder(monkeypatch, tmp_path):
    root, outside = tmp_path / "runs", tmp_path / "outside"
    outside.mkdir()
    run = write_synthetic_run(root / "r", n=60, n_val=30)  # no stats cache yet: the page would ask for one
    shutil.move(run / "predictions-val.npz", outside / "predictions-val.npz")
    (run / "predictions-val.npz").symlink_to(outside / "predictions-val.npz")
    at = open_page(app(monkeypatch, root, ["r"]), "calibration")
    settle(at)
    assert "outside the runs folder" in texts(at.error)
    assert not (run / "stats-test.npz").exists()  # nothing computed from the outside file
    from cskd.app.paths import resolve_root
    from cskd.app.worker import run_task

    with pytest.raises(UserError, match="predictions-val.npz is outside the runs folder"):
        run_task(run, "stats", lambda f, t: None, root=resolve_root(root))
    assert not (run / "stats-test.npz").exists()


def test_a_job_that_ends_while_the_page_is_drawn_still_updates_the_page(monkeypatch, tmp_path):
    import threading

    import cskd.app.ui as ui
    from cskd.app import jobs, worker

    write_synthetic_run(tmp_path / "r", n=60, n_val=30)  # no stats cache: the page asks for one
    drawn, real_task, release, seen = ui.job_caption, worker.run_task, threading.Event(), []

    def gated_task(*args, **kwargs):  # the job (a thread here) starts only once its caption is drawn
        assert release.wait(60)
        return real_task(*args, **kwargs)

    def caption_then_job_ends(job):  # ... and ends while the rest of the page is drawn
        drawn(job)
        seen.append(job.active)
        release.set()
        assert jobs.wait_idle(60)

    monkeypatch.setattr(worker, "run_task", gated_task)
    monkeypatch.setattr(ui, "job_caption", caption_then_job_ends)
    at = app(monkeypatch, tmp_path, ["r"]).run()
    assert jobs.wait_idle(60)
    assert seen and seen[0]  # the caption was drawn for a job still to run
    waiting = [c.value for c in at.caption if "computing its" in c.value]
    assert not waiting, waiting  # the ended job reran the page, which now shows the metrics


def test_a_failed_neighbour_search_is_shown_with_a_retry(monkeypatch, tmp_path):
    import cskd.evaluation.stats_compute

    def broken(*a, **k):
        raise UserError("the neighbour search ran out of memory (a test)")

    write_synthetic_run(tmp_path / "r", n=60, n_val=30)  # no stats cache: metrics, then the search
    monkeypatch.setattr(cskd.evaluation.stats_compute, "search_step", broken)
    at = open_page(app(monkeypatch, tmp_path, ["r"]), "runs")
    settle(at)
    assert "ran out of memory (a test)" in texts(at.error)
    assert any(b.key == "retry-search:runs:r" for b in at.button)


@pytest.mark.slow
def test_a_background_job_runs_in_a_child_process(monkeypatch, tmp_path):
    """The server's own runner (every other dashboard test runs jobs in a thread): `python -m
    app.worker` computes the stats cache, reports progress, and a failure comes back as the job's
    error with the child's last words."""
    from cskd.app import jobs
    from cskd.evaluation.stats_cache import read_stats

    monkeypatch.delenv("CSKD_DASHBOARD_JOBS", raising=False)
    monkeypatch.setattr(jobs, "START_DELAY_S", 0.0)
    write_synthetic_run(tmp_path / "r", n=60, n_val=30)
    job = jobs.submit(tmp_path / "r", "r", "stats", stamp=("a",), root=tmp_path)
    assert jobs.wait_idle(120)
    assert job.state == "done" and job.error is None and job.fraction == 1.0, job.error
    assert job.peak_mb is not None  # reported by the child process (a thread reports none)
    assert read_stats(tmp_path / "r", "test") is not None
    (tmp_path / "bad").mkdir()
    failed = jobs.submit(tmp_path / "bad", "bad", "stats", stamp=("b",), root=tmp_path)
    assert jobs.wait_idle(120)
    assert failed.state == "failed" and "bad" in failed.error
