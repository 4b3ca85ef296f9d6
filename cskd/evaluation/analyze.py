"""`cskd analyze`: gather runs' data (cskd.evaluation.run_data: predictions, predicting where needed,
stats cache, t-SNE) and hand it to `analysis.report.analyze_runs`, which writes metrics, tables and
figures.

The report folder is replaced as a whole: the report is written into a new hidden folder next to
`--out`, which then takes the place of the old report, so after a call `--out` holds exactly that
call's report, and a failure midway leaves the previous report as it was. `--out` must be a new
folder, an empty one, or a report cskd wrote (marked by REPORT_MARK); anything else is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from cskd.analysis.calibration import N_BINS
from cskd.analysis.embedding import TSNE_MAX_POINTS  # points of a t-SNE cache (it records them)
from cskd.config import NOT_EXPERIMENT
from cskd.errors import UserError
from cskd.evaluation.run_data import run_arrays
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.layout import DEFAULT_SPLIT
from cskd.runfolder.run_config import read_config_dict
from cskd.runfolder.store import replaced_as_a_whole

REPORT_MARK = ".cskd-report.json"


def _report_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()
                  and p.name != REPORT_MARK)


def _check_report_folder(out: Path) -> None:
    """--out must be new, empty, or a report cskd wrote that holds nothing else (its mark lists every
    file), since the whole folder is replaced."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder; choose a folder for the report")
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        listed = set(json.loads((out / REPORT_MARK).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"--out {out} holds files that are not a cskd report; cskd replaces only its own reports: "
                        f"choose a new or empty folder") from None
    extra = [name for name in _report_files(out) if name not in listed]
    if extra:
        raise UserError(f"{out / extra[0]} is not part of the report cskd wrote in {out} (the whole folder is "
                        f"replaced): move it away, or choose another --out")


def analyze(runs: list[str], out: str, *, split: str = DEFAULT_SPLIT, n_bins: int = N_BINS,
            progress: bool | None = None,
            tsne_max_points: int = TSNE_MAX_POINTS) -> dict:
    """Analyse runs into `out` (metrics.json, table.md/.csv/.tex, figures/). Returns the metrics."""
    from cskd.analysis.report import analyze_runs

    if not 0 < n_bins <= 10_000:  # more bins than that hold almost no samples each (and cost memory)
        raise UserError(f"--bins must be an integer in [1, 10000]; got {n_bins}")
    out_dir = Path(out)
    _check_report_folder(out_dir)
    folders = [RunFolder(r) for r in runs]
    names = [f.path.name for f in folders]
    if len(set(names)) != len(names):
        raise UserError("two runs share a folder name; give runs with distinct names")
    configs = {f.path.name: read_config_dict(f) for f in folders}
    datasets = {cfg["dataset"] for cfg in configs.values()}
    if len(datasets) > 1:
        shown = ", ".join(f"{n}: {c['dataset']}" for n, c in configs.items())
        raise UserError(f"cannot compare runs made on different data sets ({shown}); analyse each data set apart")
    data = [run_arrays(f.path, split=split, progress=progress, tsne_max_points=tsne_max_points) for f in folders]
    with replaced_as_a_whole(out_dir) as new:
        try:
            metrics = analyze_runs(data, new, n_bins=n_bins, tsne_max_points=tsne_max_points, progress=progress,
                                   group_ignore=NOT_EXPERIMENT)
        except ValueError as e:
            raise UserError(str(e)) from None
        (new / REPORT_MARK).write_text(json.dumps({"format": 2, "runs": [str(f.path) for f in folders],
                                                   "split": split, "bins": n_bins, "files": _report_files(new)},
                                                  indent=2) + "\n")
    return metrics
