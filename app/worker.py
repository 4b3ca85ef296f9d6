"""One background computation of the dashboard (see app.jobs), in its own process:

    python -m cskd.app.worker --run RUN_DIR --task predict|stats|search|tsne [--root RUNS_DIR]

prints one JSON object per line: {"fraction", "text"} as it goes, then {"error": message} on
failure, and {"peak_mb": ...} (its peak resident memory) at the end; exit status 0, 2 for a
user-facing error (UserError, e.g. a folder locked by another writer), 1 for a bug.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys

from cskd.errors import UserError


def run_task(run, task: str, report, *, root=None) -> None:
    """Compute `task` for the run folder `run` through cskd; `report(fraction, text)`. With `root`
    (the dashboard's runs folder) nothing is done while one of the run's files leads outside it,
    loops or is not a regular file: the worker reads what the page would refuse to read."""
    from cskd.evaluation.stats_compute import ensure_stats
    from cskd.runfolder import RunFolder, read_predictions

    if root is not None:
        from pathlib import Path

        from cskd.app.paths import folder_files

        problems = folder_files(Path(root), Path(run)).problems
        if problems:
            raise UserError(next(iter(problems.values())))
    folder = RunFolder(run)
    if not folder.writable():  # the pages read only what is saved: a result kept in memory here would be lost
        raise UserError(f"{folder.path} is read-only: the dashboard cannot save its {task} results there; "
                        f"run `cskd analyze` on it for a report, or copy it into a writable runs folder")
    if task == "predict":  # test (and validation) predictions, then the quick metrics; the neighbour
        # search and the t-SNE are jobs of their own, asked for by the pages that show them
        from cskd.evaluation.run_data import prepare_run

        prepare_run(folder.path, progress=False, on_step=report, with_tsne=False, retrieval=False)
    elif task == "stats":  # everything but the exact neighbour search: seconds
        ensure_stats(folder, on_step=report, retrieval=False)
    elif task == "search":  # the rest: Recall@1 and the neighbours (minutes at the ImageNet scale)
        ensure_stats(folder, on_step=report)
    elif task == "tsne":
        from cskd.evaluation.run_data import cached_tsne

        preds = read_predictions(folder, "test")
        if preds.features is None:
            raise UserError(f"{folder.file('predictions-test.npz')} holds no features: there is nothing to embed")
        report(0.05, "t-SNE of the test features")
        cached_tsne(folder, "test", preds)
        report(1.0, "done")
    else:
        raise UserError(f"unknown task {task!r}")


def _die_with_parent() -> None:
    """Ask Linux to stop this process when the dashboard server that started it dies."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cskd.app.worker")
    parser.add_argument("--run", required=True)
    parser.add_argument("--task", required=True, choices=("predict", "stats", "search", "tsne"))
    parser.add_argument("--root", help="the dashboard's runs folder (the run's files must stay inside it)")
    args = parser.parse_args(argv)
    _die_with_parent()

    def say(**msg) -> None:
        print(json.dumps(msg), flush=True)

    status = 0
    try:
        run_task(args.run, args.task, lambda f, t: say(fraction=float(f), text=str(t)), root=args.root)
    except UserError as e:
        say(error=str(e))
        status = 2
    except Exception as e:  # noqa: BLE001 -- reported on the run's card; the traceback goes to the log
        import traceback

        traceback.print_exc(file=sys.stdout)
        say(error=f"{type(e).__name__}: {e}")
        status = 1
    say(peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return status


if __name__ == "__main__":
    sys.exit(main())
