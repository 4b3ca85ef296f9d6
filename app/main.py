"""Entry script of the dashboard: `cskd dashboard`, or
`streamlit run app/main.py -- --runs checkpoints`.

Each rerun it resolves the runs folder, lists the runs in it, draws the shared run picker in the
sidebar (st.session_state["picked"], seeded once from `?run=NAME&run=NAME` or, without it, with
runs that compare something) and keeps `?run=` equal to the picked runs from the first render on,
shows the background computations, and hands over to the page chosen in the navigation.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import streamlit as st

# The dashboard's modules are imported as the installed package cskd.app (app/ is installed under
# cskd's name, editable or not), never through this script's own folder.
from cskd.app import data, jobs, paths, ui
from cskd.errors import UserError
from cskd.runfolder.run_names import DEFAULT_RUNS_ROOT

# Not "pages/": a folder of that name turns on Streamlit's older, file-based navigation.
PAGES = Path(__file__).resolve().parent / "views"
KEPT = "_kept:picked"


def runs_dir_argument() -> str:
    """--runs after `--` on the streamlit command line, else $CSKD_RUNS_DIR, else DEFAULT_RUNS_ROOT."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.runs or os.environ.get("CSKD_RUNS_DIR") or DEFAULT_RUNS_ROOT


def describe(root: Path, runs: list, name: str) -> dict | None:
    """(dataset, seed, method, has fresh predictions) of a run, or None when it cannot be read."""
    try:
        files = paths.run_files(root, name, runs)
        cfg = data.record(files)["config"]
        return {"dataset": cfg.get("dataset"), "seed": cfg.get("seed"), "method": cfg.get("method"),
                "ready": data.status(files)[0] == "fresh"}
    except UserError:
        return None


def default_picks(root: Path, runs: list) -> list:
    """Two runs that compare something: one of each of the first two methods (in name order) on the
    same data set with the same seed, runs with predictions preferred; else the first two runs
    (those with predictions first)."""
    info = {r: describe(root, runs, r) for r in runs}
    readable = [r for r in runs if info[r] is not None]
    ranked = sorted(readable, key=lambda r: not info[r]["ready"])  # stable: keeps name order
    for first in ranked:
        a = info[first]
        for other in ranked:
            b = info[other]
            if (b["dataset"], b["seed"]) == (a["dataset"], a["seed"]) and b["method"] != a["method"]:
                return [first, other] if runs.index(first) < runs.index(other) else [other, first]
    return (ranked + [r for r in runs if r not in ranked])[:2]


def first_picks(root: Path, runs: list) -> list:
    """The runs named in the URL (`?run=`) that exist under the runs folder, else default_picks.
    Anything else in the URL (`../../etc`, absolute paths, Markdown) is refused with a warning
    that shows it literally."""
    asked = st.query_params.get_all("run")
    if not asked:
        return default_picks(root, runs)
    for bad in (r for r in asked if r not in runs):
        st.warning(f"Ignored run {ui.literal(repr(bad))} from the URL: it is not a run folder under the runs folder.")
    return list(dict.fromkeys(r for r in asked if r in runs))


def sidebar(root: Path, runs: list) -> None:
    state = st.session_state
    # The picker keeps its value across pages (persist_state); a plain copy covers a session whose
    # widget states were reset all the same.
    if KEPT not in state:
        state[KEPT] = first_picks(root, runs)
    if ui.PICKED_KEY not in state:
        state[ui.PICKED_KEY] = state[KEPT]
    if any(r not in runs for r in state[ui.PICKED_KEY]):  # runs deleted since the last rerun
        state[ui.PICKED_KEY] = [r for r in state[ui.PICKED_KEY] if r in runs]
    with st.sidebar:
        st.multiselect("Runs to compare", runs, key=ui.PICKED_KEY, persist_state="session",
                       help="Every page shows the runs picked here, each in its own colour.")
        st.caption(f"{len(runs)} run(s) in {ui.literal(root)}")
    state[KEPT] = state[ui.PICKED_KEY]
    if st.query_params.get_all("run") != state[ui.PICKED_KEY]:
        st.query_params["run"] = state[ui.PICKED_KEY]  # from the first render on: a reload shows the same runs


def favicon():
    """A 32x32 tile in the first run colour, drawn in memory."""
    import numpy as np
    from PIL import Image

    tile = np.full((32, 32, 3), (31, 119, 180), np.uint8)
    tile[8:24, 8:24] = (255, 127, 14)
    return Image.fromarray(tile)


def main() -> None:
    # A favicon made here: without it the page's :material/...: icon becomes the favicon, which the
    # browser fetches from fonts.gstatic.com; the dashboard fetches nothing from outside.
    st.set_page_config(page_title="cskd dashboard", page_icon=favicon(), layout="wide")
    seen = jobs.changes()  # before any file is read: a job ending after this reruns the page
    try:
        root = paths.resolve_root(runs_dir_argument())
    except UserError as e:
        st.error(ui.literal(e))
        st.stop()
    runs = paths.discover_runs(root)
    st.session_state[ui.ROOT_KEY] = str(root)
    st.session_state[ui.RUNS_KEY] = runs
    if runs:
        sidebar(root, runs)
    pages = [
        st.Page(PAGES / "runs.py", title="Runs", icon=":material/table:", default=True),
        st.Page(PAGES / "calibration.py", title="Calibration", icon=":material/bar_chart:"),
        st.Page(PAGES / "misclassified.py", title="Misclassified", icon=":material/image_search:"),
        st.Page(PAGES / "confusion.py", title="Confusion", icon=":material/grid_on:"),
        st.Page(PAGES / "embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
        st.Page(PAGES / "hierarchy.py", title="Hierarchy", icon=":material/account_tree:"),
    ]
    try:
        st.navigation(pages).run()
    finally:  # also after a page's st.stop()
        with st.sidebar:  # after the page: it may have just started computing something
            ui.progress_panel(seen)
        footer()


def footer() -> None:
    """Last element of every page: the picked runs, in a container named after the rerun's number.
    The browser test waits for it to know a rerun has finished."""
    reruns = st.session_state["_reruns"] = st.session_state.get("_reruns", 0) + 1
    with st.container(key="cskd-footer"), st.container(key=f"cskd-rerun-{reruns}"):
        picked = ", ".join(st.session_state.get(ui.PICKED_KEY, [])) or "none"
        st.caption(f"Runs picked: {ui.literal(picked)}")


main()
