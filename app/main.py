"""Entry script of the dashboard: `cskd dashboard`, or
`streamlit run app/main.py -- --runs checkpoints`.

Each rerun it resolves the runs folder, lists the runs in it, draws the shared run picker in the
sidebar (kept in st.session_state["picked"], seeded once from `?run=NAME&run=NAME`) and hands
over to the page chosen in the navigation.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import streamlit as st

# `streamlit run app/main.py` puts app/ (not the repository) on sys.path; make `import app` work
# from a source checkout too.
_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from app import paths, ui  # noqa: E402
from cskd.errors import UserError  # noqa: E402

# Not "pages/": a folder of that name turns on Streamlit's older, file-based navigation.
PAGES = Path(__file__).resolve().parent / "views"
DEFAULT_PICKS = 2
KEPT = "_kept:picked"


def runs_dir_argument() -> str:
    """--runs after `--` on the streamlit command line, else $CSKD_RUNS_DIR, else checkpoints."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.runs or os.environ.get("CSKD_RUNS_DIR") or "checkpoints"


def has_predictions(root: Path, runs: list, name: str) -> bool:
    try:
        return paths.file_key(paths.run_file(root, name, "predictions-test.npz", runs)) is not None
    except UserError:
        return False


def first_picks(root: Path, runs: list) -> list:
    """The runs named in the URL (`?run=`) that exist under the runs folder, else the first two
    (those with predictions first). Anything else in the URL (`../../etc`, absolute paths) is
    refused with a warning."""
    asked = st.query_params.get_all("run")
    if not asked:
        ranked = sorted(runs, key=lambda r: not has_predictions(root, runs, r))  # stable: keeps name order
        return ranked[:DEFAULT_PICKS]
    good = [r for r in asked if r in runs]
    for bad in (r for r in asked if r not in runs):
        st.warning(f"Ignored run {bad!r} from the URL: it is not a run folder under the runs folder.")
    return good


def sync_url() -> None:
    st.query_params["run"] = st.session_state[ui.PICKED_KEY]


def sidebar(root: Path, runs: list) -> None:
    state = st.session_state
    # Streamlit may drop a widget's value when the page changes; a plain copy survives.
    if KEPT not in state:
        state[KEPT] = first_picks(root, runs)
    if ui.PICKED_KEY not in state:
        state[ui.PICKED_KEY] = state[KEPT]
    if any(r not in runs for r in state[ui.PICKED_KEY]):  # runs deleted since the last rerun
        state[ui.PICKED_KEY] = [r for r in state[ui.PICKED_KEY] if r in runs]
    with st.sidebar:
        st.multiselect("Runs to compare", runs, key=ui.PICKED_KEY, on_change=sync_url,
                       help="Every page shows the runs picked here.")
        st.caption(f"{len(runs)} run(s) in `{root}`")
    state[KEPT] = state[ui.PICKED_KEY]


def main() -> None:
    st.set_page_config(page_title="cskd dashboard", page_icon=":material/insights:", layout="wide")
    try:
        root = paths.resolve_root(runs_dir_argument())
    except UserError as e:
        st.error(str(e))
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
        st.Page(PAGES / "embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
        st.Page(PAGES / "hierarchy.py", title="Hierarchy", icon=":material/account_tree:"),
    ]
    st.navigation(pages).run()
    # Last element of every page: the picked runs. The browser test waits for it to know a
    # rerun has finished.
    with st.container(key="cskd-footer"):
        st.caption(f"Runs picked: {', '.join(st.session_state.get(ui.PICKED_KEY, [])) or 'none'}")


main()
