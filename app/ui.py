"""Pieces every page uses: the shared context, literal text, per-run error cards, the runs a page can
show (with what is missing computed in the background, or a button for it), the progress of those
computations, figure downloads and colours.

Text that comes from outside the code (run and class names from the folder, the URL or a
config, error messages quoting them) is shown literally: through `literal()` wherever Streamlit
would read Markdown (st.markdown, st.caption, st.error, st.warning, st.info, labels, captions,
progress texts), and as plain cells or chart text elsewhere. Nothing from a run folder can make
the page render a link or fetch an image.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from cskd.analysis.figures import run_color
from cskd.app import data, jobs, paths
from cskd.errors import UserError

ROOT_KEY, RUNS_KEY, PICKED_KEY = "_cskd_root", "_cskd_runs", "picked"
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character: CommonMark can escape each
# GitHub-flavoured Markdown links bare addresses ("http://...", "www....", "a@b.c") whatever the
# escapes: an invisible WORD JOINER after ":" and "@" and inside "www." leaves none to find.
_AUTOLINK = re.compile(r"(?i)(:|@|(?<![a-z0-9])www)")
_JOINER = "\u2060"


def literal(text) -> str:
    """`text` as Markdown that renders exactly as written: every ASCII punctuation character
    backslash-escaped (no link, image, emphasis, HTML, math, :icon: or :color[] survives), bare
    addresses kept from being linked (an invisible joiner, see _AUTOLINK), line breaks as spaces."""
    text = _AUTOLINK.sub(lambda m: m.group(1) + _JOINER, " ".join(str(text).splitlines()))
    return _PUNCTUATION.sub(r"\\\1", text)


@dataclass
class Context:
    root: Path  # resolved runs folder
    runs: list  # every run name found under it
    picked: list  # the runs picked in the sidebar, in the sidebar's order

    def color(self, name: str) -> str:
        """The run's colour: by its place among the picked runs, the same on every page."""
        return run_color(self.picked.index(name)) if name in self.picked else "#7f7f7f"


def context() -> Context:
    """What app/main.py found this rerun; stops the page with instructions when there is no run."""
    root = st.session_state.get(ROOT_KEY)
    if root is None:  # a page opened without the entry script (should not happen)
        st.error("The dashboard was not started through app/main.py; run `cskd dashboard`.")
        st.stop()
    ctx = Context(Path(root), list(st.session_state.get(RUNS_KEY, [])),
                  list(st.session_state.get(PICKED_KEY, [])))
    if not ctx.runs:
        empty_message(ctx.root)
        st.stop()
    return ctx


def empty_message(root: Path) -> None:
    st.info("No runs in this folder yet. A run folder holds a `config.json`; create some with the commands "
            "below (the first trains cross-entropy and CS-KD on the embedded digits data set in about half a "
            "minute; `cskd import` brings in predictions of a model trained elsewhere), then reload this page.")
    st.code(f"cskd demo --runs {root}\ncskd train --method cskd --epochs 3 --out {root}/my-run\n"
            f"cskd import {root}/my-model --logits logits.npy --labels labels.npy", language="text")


def error_card(name: str, err) -> None:
    """One run's problem, naming the file (UserError messages do); the page goes on."""
    text = str(err) if isinstance(err, (UserError, str)) else f"{type(err).__name__}: {err}"
    st.error(f"**{literal(name)}**: {literal(text)}", icon=":material/error:")


@contextlib.contextmanager
def card_on_error(name: str, what: str):
    """Run a block drawing one run (or the picked runs together); a problem in what it reads (a
    value out of range in a file, a file that changed under the reader) becomes an error card
    naming the run and `what` it was reading, and the page goes on."""
    try:
        yield
    except UserError as e:
        error_card(name, e)
    except (ValueError, TypeError, KeyError, IndexError, OSError) as e:
        error_card(name, f"{what}: {type(e).__name__}: {e}")


def need_picks(ctx: Context, at_least: int = 1) -> list:
    """The picked runs, or a hint to pick some and a stop."""
    if len(ctx.picked) < at_least:
        st.info(f"Pick {'a run' if at_least == 1 else f'at least {at_least} runs'} in the sidebar.")
        st.stop()
    return ctx.picked


def run_files(ctx: Context, name: str) -> paths.RunFiles | None:
    try:
        return paths.run_files(ctx.root, name, ctx.runs)
    except UserError as e:
        error_card(name, e)
        return None


@dataclass
class Ready:
    """A picked run whose test predictions are fresh and whose stats cache is there."""

    name: str
    files: paths.RunFiles
    record: dict
    preds: object  # cskd.runfolder.Predictions
    stats: object  # cskd.evaluation.stats_cache.Stats
    color: str


def colors(ready) -> dict:
    """{run: its dashboard colour} of these ready runs, for a display's `colors` (charts and
    downloads then colour each run as the rest of the dashboard does)."""
    return {r.name: r.color for r in ready}


def stats_estimate(preds, *, search: bool = False) -> float | None:
    """Seconds the metrics (or, with `search`, the neighbour search) of these predictions take."""
    from cskd.evaluation.stats_compute import estimate_seconds

    try:
        n, c, feats = preds.num_samples, preds.num_classes, preds.features
        first = estimate_seconds(n, c, None)
        return estimate_seconds(n, c, None if feats is None else feats.shape[1]) - first if search else first
    except (OSError, ValueError, KeyError):
        return None


def ask(files: paths.RunFiles, task: str, *, estimate_s=None, retry: bool = False) -> jobs.Job:
    return jobs.submit(files.path, files.name, task, stamp=files.key, root=files.root, estimate_s=estimate_s,
                       retry=retry)


def ready_runs(ctx: Context, names, *, where: str) -> list[Ready]:
    """The runs among `names` a page can show. For the others: an error card naming the bad file,
    the progress of their metrics (computed in the background for picked runs), or a button that
    computes their predictions."""
    ready = []
    for name in names:
        files = run_files(ctx, name)
        if files is None:
            continue
        try:
            record = data.record(files)
        except UserError as e:
            error_card(name, e)
            continue
        state, reason = data.status(files)
        if state != "fresh":
            missing_predictions(ctx, files, record, state, reason, where=where)
            continue
        try:
            preds = data.predictions(files)
            stats = data.stats(files)
        except UserError as e:
            error_card(name, e)
            job = jobs.get(files.path, "stats")
            if not files.problems and (job is None or job.stamp != files.key):
                ask(files, "stats")  # a damaged cache: computed again (never from files that lead outside)
            continue
        if stats is None or not stats.complete:
            job = (ask(files, "stats", estimate_s=stats_estimate(preds)) if stats is None else
                   ask(files, "search", estimate_s=stats_estimate(preds, search=True)))
            if stats is None:
                job_caption(job)
                if job.state == "failed" and st.button(f"Retry computing the metrics of {literal(name)}",
                                                       key=f"retry:{where}:{name}"):
                    ask(files, "stats", retry=True)
                    st.rerun()
                continue
            if job.state == "failed":  # the page shows the rest; Recall@1 and neighbours stay missing
                error_card(name, job.error)
                if st.button(f"Retry the neighbour search of {literal(name)}", key=f"retry-search:{where}:{name}"):
                    ask(files, "search", retry=True)
                    st.rerun()
        ready.append(Ready(name, files, record, preds, stats, ctx.color(name)))
    return ready


def ready_runs_on_same_samples(ctx: Context, *, where: str) -> list[Ready]:
    """The picked runs a page that compares samples across runs can show; empty (with an error card)
    when they were not evaluated on the same samples."""
    ready = ready_runs(ctx, need_picks(ctx), where=where)
    if not ready:
        return []
    try:
        data.same_samples(ready)
    except UserError as e:
        error_card("picked runs", e)
        return []
    return ready


def missing_predictions(ctx: Context, files, record: dict, state: str, reason: str, *, where: str) -> None:
    name = files.name
    if state in ("damaged", "foreign"):
        error_card(name, reason if state == "damaged" else
                   f"{files.path / 'predictions-test.npz'}: {reason}; cskd never replaces it: move it away")
        if state == "foreign":
            return
    elif record["kind"] == "imported":
        st.warning(f"**{literal(name)}** is an imported run without test predictions: import them with "
                   f"`cskd import RUN --split test ...`.")
        return
    else:
        st.warning(f"**{literal(name)}**: {'no test predictions yet' if state == 'missing' else literal(reason)}.")
    if record["kind"] == "imported":
        return
    if files.problems:  # the worker would read what the page refuses to: no button
        problem = next(iter(files.problems.values()))
        if problem != reason:
            error_card(name, problem)
        return
    job = jobs.get(files.path, "predict")
    if job is not None and job.active:
        job_caption(job)
        return
    if job is not None and job.state == "failed" and job.stamp == files.key:
        error_card(name, job.error)
    label = "Compute" if state == "missing" else "Recompute"
    if st.button(f"{label} predictions of {literal(name)}", key=f"predict:{where}:{name}",
                 help="cskd predict (test and validation splits), then the metrics; reads best.pt "
                      "and the data set"):
        ask(files, "predict", retry=True)
        st.rerun()


def job_caption(job: jobs.Job) -> None:
    """One line on where the run's background computation stands."""
    what = jobs.TASKS[job.task]
    if job.state == "failed":
        error_card(job.name, job.error)
    elif job.active:
        left = job.remaining_s()
        eta = f", about {left:.0f} s left" if left is not None else ""
        st.caption(f":material/hourglass_top: {literal(job.name)}: computing its {what} "
                   f"({100 * job.fraction:.0f} %{eta}); the page updates when it is done.")


@st.fragment(run_every=1.0)
def _progress_live(seen: int) -> None:
    if jobs.changes() != seen:
        st.rerun(scope="app")  # a computation wrote a result: every page shows it
    for job in jobs.active():
        left = job.remaining_s()
        eta = f" · about {left:.0f} s left" if left is not None else ""
        st.progress(job.fraction, text=f"{literal(job.name)}: {literal(jobs.TASKS[job.task])} · "
                                       f"{literal(job.text)}{eta}")


def progress_panel(seen: int) -> None:
    """In the sidebar: the background computations, refreshed every second while there are any.
    `seen`: jobs.changes() when this rerun started — a job that ended while the page was drawn
    (after the page read its files) reruns the app too."""
    if jobs.active():
        st.caption("Computing in the background")
    if jobs.active() or jobs.changes() != seen:
        _progress_live(seen)


def downloads(stem: str, draw, *, key: str) -> None:
    """PNG and PDF download buttons in a row; `draw()` returns the matplotlib Figure (from the
    page's Display objects), called only when a button is pressed."""
    import io

    def render(fmt: str):
        def write() -> bytes:
            buf = io.BytesIO()
            draw().savefig(buf, format=fmt, dpi=150, bbox_inches="tight")
            return buf.getvalue()
        return write

    row = st.container(horizontal=True)
    row.download_button("PNG", render("png"), file_name=f"{stem}.png", mime="image/png", key=f"png:{key}",
                        on_click="ignore", icon=":material/download:")
    row.download_button("PDF", render("pdf"), file_name=f"{stem}.pdf", mime="application/pdf", key=f"pdf:{key}",
                        on_click="ignore", icon=":material/download:")


