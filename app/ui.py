"""Pieces every page uses: the shared context, per-run error cards, the compute-predictions
button, figure downloads and widget state that survives page switches."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import streamlit as st

from app import data, paths
from cskd.errors import UserError

ROOT_KEY, RUNS_KEY, PICKED_KEY = "_cskd_root", "_cskd_runs", "picked"


@dataclass
class Context:
    root: Path  # resolved runs folder
    runs: list  # every run name found under it
    picked: list  # the runs picked in the sidebar, in the sidebar's order


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
    st.info(f"No runs in `{root}` yet. A run folder holds a `config.json`; create some with\n\n"
            f"```\ncskd demo --runs {root}\n```\n"
            f"(cross-entropy and CS-KD on the embedded digits data set, about half a minute), or\n\n"
            f"```\ncskd train --method cskd --epochs 3 --out {root}/my-run\n```\n"
            "then reload this page.")


def error_card(name: str, err: Exception) -> None:
    """One run's problem, naming the file (UserError messages do); the page goes on."""
    if isinstance(err, UserError):
        st.error(f"**{name}**: {err}")
    else:  # a bug or an unexpected file: keep the type so it can be reported
        st.error(f"**{name}**: {type(err).__name__}: {err}")


def files_of(ctx: Context, name: str) -> paths.RunFiles | None:
    """The run's file keys, or None after showing an error card (e.g. a symlink leaving the folder)."""
    try:
        files = paths.run_files(ctx.root, name, ctx.runs)
    except Exception as e:  # noqa: BLE001 -- one bad run must not take the page down
        error_card(name, e)
        return None
    if files.val and not data.made_by_run(str(files.path), files.val, files.config):
        files = replace(files, val=None)  # another run's validation predictions: never fit a temperature on them
    return files


def compute_predictions(ctx: Context, name: str, *, where: str, verb: str = "Compute") -> None:
    """A button that writes the run's test and validation predictions and its t-SNE cache (each
    only when missing or older than best.pt), with a progress bar; reruns the app when done."""
    if not st.button(f"{verb} predictions of {name}", key=f"predict:{where}:{name}",
                     help="cskd predict (test and validation splits) and the t-SNE cache; "
                          "reads best.pt and the data set"):
        return
    from cskd.analyze import prepare_run

    run = paths.run_dir(ctx.root, name, ctx.runs)
    bar = st.progress(0.0, text=f"{name}: predicting the test split")
    try:
        prepare_run(run, progress=False, on_step=lambda fraction, text: bar.progress(fraction, text=f"{name}: {text}"))
    except Exception as e:  # noqa: BLE001 -- shown on the card; the rest of the page stays
        bar.empty()
        error_card(name, e)
        return
    st.rerun()


def with_predictions(ctx: Context, names, *, where: str) -> list[paths.RunFiles]:
    """The runs among `names` whose test predictions load; for the others an error card or a
    compute button is shown instead."""
    ready = []
    for name in names:
        files = files_of(ctx, name)
        if files is None:
            continue
        if files.test is None:
            st.warning(f"**{name}** has no predictions yet (`predictions-test.npz`).")
            compute_predictions(ctx, name, where=where)
            continue
        try:
            data.predictions(files.test)
        except Exception as e:  # noqa: BLE001
            error_card(name, e)
            continue
        if files.stale:
            st.caption(f"{name}: best.pt is newer than its predictions; they show an earlier model.")
            compute_predictions(ctx, name, where=where, verb="Recompute")
        elif not data.made_by_run(str(files.path), files.test, files.config):
            st.caption(f"{name}: its predictions were not made from this run's best.pt (copied from another run, "
                       f"or from before it was trained again); they may show another model.")
            compute_predictions(ctx, name, where=where, verb="Recompute")
        ready.append(files)
    return ready


def need_picks(ctx: Context, at_least: int = 1) -> list:
    """The picked runs, or a hint to pick some and a stop."""
    if len(ctx.picked) < at_least:
        st.info(f"Pick {'a run' if at_least == 1 else f'at least {at_least} runs'} in the sidebar.")
        st.stop()
    return ctx.picked


def downloads(stem: str, png, pdf, *, key: str) -> None:
    """PNG and PDF download buttons in a row. Each file is bytes or a function drawing it when
    the button is pressed. Neither reruns the page (on_click="ignore")."""
    row = st.container(horizontal=True)
    row.download_button("PNG", png, file_name=f"{stem}.png", mime="image/png", key=f"png:{key}",
                        on_click="ignore", icon=":material/download:")
    row.download_button("PDF", pdf, file_name=f"{stem}.pdf", mime="application/pdf",
                        key=f"pdf:{key}", on_click="ignore", icon=":material/download:")


def kept(key: str, default):
    """Initial value for the widget `key`, restored from a copy because Streamlit forgets a
    widget's value once its page is left. Call `keep(key)` after creating the widget."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(f"_kept:{key}", default)


def keep(key: str) -> None:
    st.session_state[f"_kept:{key}"] = st.session_state[key]
