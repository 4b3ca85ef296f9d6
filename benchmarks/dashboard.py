"""The dashboard's speed and memory in Chromium, at two scales of synthetic runs
(tests/synthetic_runs.py, written through cskd.runfolder):

  cifar     4 runs x 10,000 test samples x 100 classes, 512-d features, 32x32 thumbnails, 20 coarse
            groups, 5,000 validation samples
  imagenet  2 runs x 50,000 x 1,000 classes, 2,048-d features, 64x64 thumbnails, 10,000 validation

For each scale, `cskd dashboard` is started fresh and driven by Playwright in /usr/bin/chromium
(never `playwright install`):
  cold      (--cold) the two picked runs have no stats cache (nothing run `cskd analyze` on them):
            first useful paint (the Runs table), then the time until their metrics are computed in
            the background, from the server's log (with the worker's peak memory)
  warm      the stats caches are there (as `cskd analyze` leaves them), the server is new: first
            useful paint, first visit of every page, warm page switches (worst of three rounds),
            control changes, a run added (its caches opened for the first time) and removed
  memory    peak resident memory (VmHWM) of the server process, and of the background workers
Targets: first paint <= 2 s, warm switches and controls <= 1 s, a run added <= 1.5 s, server
memory <= 1.5 GiB at the ImageNet scale. Prints a Markdown table per scale and writes the figures
to test-artifacts/benchmarks/dashboard-<scale>.json.

Run: python benchmarks/dashboard.py [--scale cifar imagenet] [--data /tmp/cskd-bench] [--cold]
(the runs are written once under --data and reused: about 3 GB and 5 minutes for the ImageNet scale).

--before TREE measures an older version the same way (first paint, first visits, warm switches,
peak memory) on runs in its own format: TREE is a checkout exported without touching this one
(`git archive REV | tar -x -C TREE`) whose tests/test_browser.py has write_synthetic_run, e.g.
REV = ddf6f52, the dashboard before the run-folder restructuring.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from synthetic_runs import write_synthetic_run, write_tsne  # noqa: E402
from test_browser import (  # noqa: E402
    add_run,
    click_segment,
    dashboard,
    goto,
    launch_browser,
    remove_run,
    rerun_number,
    select_grid_row,
    wait_ready,
)

from cskd.runfolder import RunFolder  # noqa: E402

SCALES = {
    "cifar": dict(runs=(("cifar-ce-s0", "ce", 0, 4.0, 0.72), ("cifar-cskd-s0", "cskd", 0, 2.6, 0.76),
                        ("cifar-ce-s1", "ce", 1, 4.0, 0.71), ("cifar-cskd-s1", "cskd", 1, 2.6, 0.75)),
                  n=10_000, n_val=5_000, n_classes=100, dim=512, image_shape=(32, 32, 3), coarse=True,
                  dataset="cifar100"),
    "imagenet": dict(runs=(("imagenet-ce-s0", "ce", 0, 3.0, 0.76), ("imagenet-cskd-s0", "cskd", 0, 2.4, 0.77)),
                     n=50_000, n_val=10_000, n_classes=1000, dim=2048, image_shape=(64, 64, 3), coarse=False,
                     dataset="imagenet"),
}
PAGES = ("Runs", "Calibration", "Misclassified", "Confusion", "Embeddings", "Hierarchy")
OUT = ROOT / "test-artifacts" / "benchmarks"
JOB_LINE = re.compile(r"cskd dashboard: (.+?) of (\S+): done in ([\d.]+) s(?:, peak memory (\d+) MiB)?")


def prepare(scale: str, data: Path) -> Path:
    """The scale's runs under `data` (written once), with their t-SNE caches; stats computed for
    every run but the two picked by default (the cold scenario computes those)."""
    spec = SCALES[scale]
    root = data / scale
    for name, method, seed, sharp, acc in spec["runs"]:
        folder = root / name
        if not (folder / ".complete").is_file():
            t0 = time.perf_counter()
            write_synthetic_run(folder, method=method, seed=seed, sharpness=sharp, accuracy=acc, n=spec["n"],
                                n_val=spec["n_val"], n_classes=spec["n_classes"], dim=spec["dim"],
                                image_shape=spec["image_shape"], coarse=spec["coarse"], dataset=spec["dataset"],
                                epochs=200, tsne=False)
            write_tsne(RunFolder(folder))
            (folder / ".complete").write_text("")
            print(f"wrote {folder} in {time.perf_counter() - t0:.1f} s", flush=True)
    return root


def ensure_all_stats(root: Path, names) -> None:
    from cskd.evaluation.stats_compute import ensure_stats

    for name in names:
        t0 = time.perf_counter()
        ensure_stats(root / name)
        print(f"stats of {name}: {time.perf_counter() - t0:.1f} s", flush=True)


def server_pid(dashboard_pid: int) -> int | None:
    """The Streamlit server: the child process of `cskd dashboard`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == dashboard_pid:
            return int(stat.parent.name)
    return None


def peak_mib(pid: int | None) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return None
    return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024


def first_paint(page, url: str, picked) -> float:
    """Seconds from navigation until the Runs table is drawn (with what the caches hold)."""
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function("""(picked) => {
      const f = document.querySelector('.st-key-cskd-footer');
      const t = document.querySelector('.st-key-runs-table canvas');
      return f && f.textContent.trim() === 'Runs picked: ' + picked && t; }""", arg=", ".join(picked),
                           polling="raf", timeout=120_000)
    return time.perf_counter() - t0


def cold(root: Path, picked, log: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from cskd.runfolder import RunFolder, stats_name

    for name in picked:  # through cskd's writer: the manifest forgets the file too
        folder = RunFolder(root / name)
        with folder.writing():
            if folder.file(stats_name("test")).exists():
                folder.remove(stats_name("test"))
    result = {}
    with dashboard(root, log) as (url, proc), sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        result["first_paint_s"] = first_paint(page, url, picked)
        t0 = time.perf_counter()
        page.get_by_text("Computing in the background").wait_for(timeout=30_000)
        main = "document.querySelector('[data-testid=\"stMain\"]').innerText"
        page.wait_for_function(f"() => !{main}.includes('computing its metrics')", polling=250, timeout=900_000)
        result["first_metrics_shown_s"] = time.perf_counter() - t0 + result["first_paint_s"]
        page.wait_for_function("() => !document.body.innerText.includes('Computing in the background')",
                               polling=500, timeout=900_000)
        wait_ready(page, "Runs", picked)
        result["metrics_shown_s"] = time.perf_counter() - t0 + result["first_paint_s"]
        result["server_peak_mib"] = peak_mib(server_pid(proc.pid))
        browser.close()
    jobs = [m.groups() for m in map(JOB_LINE.search, log.read_text().splitlines()) if m]
    result["jobs"] = [{"task": t, "run": r, "seconds": float(s), "worker_peak_mib": p and int(p)}
                      for t, r, s, p in jobs]
    return result


def warm(root: Path, spec: dict, log: Path) -> dict:
    from playwright.sync_api import sync_playwright

    names = [r[0] for r in spec["runs"]]
    two = names[:2]
    result = {"first_visit_s": {}, "page_switch_s": {}, "controls_s": {}, "add_run_s": {}, "remove_run_s": {}}
    with dashboard(root, log) as (url, proc), sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.set_default_timeout(120_000)
        result["first_paint_s"] = first_paint(page, url, two)
        wait_ready(page, "Runs", two)
        for title in PAGES[1:]:
            result["first_visit_s"][title] = goto(page, title, two)
        rounds = {title: [] for title in PAGES}
        for _ in range(3):
            for title in PAGES:
                rounds[title].append(goto(page, title, two))
        result["page_switch_rounds_s"] = rounds
        result["page_switch_s"] = {title: max(times) for title, times in rounds.items()}
        result["controls_s"] = controls(page, two, spec)
        if len(names) > 2:  # a run the server never opened, added on every page, then removed
            for title in PAGES:
                goto(page, title, two)
                result["add_run_s"][title] = add_run(page, title, names[2], names[:3])
                result["remove_run_s"][title] = remove_run(page, title, names[2], two)
        result["server_peak_mib"] = peak_mib(server_pid(proc.pid))
        browser.close()
    if len(names) == 2:  # the second run added on a fresh server that has only shown the first
        with dashboard(root, log.with_name(log.stem + "-add.log")) as (url, proc), sync_playwright() as pw:
            browser = launch_browser(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(f"{url}/embeddings?run={names[0]}")
            wait_ready(page, "Embeddings", names[:1])
            for title in ("Embeddings", *PAGES[:4], "Hierarchy"):  # the first add opens the run's caches
                goto(page, title, names[:1])
                result["add_run_s"][title] = add_run(page, title, names[1], two)
                result["remove_run_s"][title] = remove_run(page, title, names[1], names[:1])
            result["server_peak_mib_add"] = peak_mib(server_pid(proc.pid))
            browser.close()
    return result


def controls(page, picked, spec) -> dict:
    """Seconds from a control change until the page is drawn again."""
    out = {}

    def timed(name, title, act):
        before, t0 = rerun_number(page), time.perf_counter()
        act()
        wait_ready(page, title, picked, after=before)
        out[name] = time.perf_counter() - t0

    goto(page, "Calibration", picked)
    out["calibration: side by side"] = click_segment(page, "Calibration", "side by side", picked)
    out["calibration: equal-mass bins"] = click_segment(page, "Calibration", "equal-mass", picked)
    timed("calibration: temperature scaling", "Calibration", lambda: page.get_by_text("Temperature-scaled").click())
    goto(page, "Misclassified", picked)
    out["misclassified: any run wrong"] = click_segment(page, "Misclassified", "any run wrong", picked)
    timed("misclassified: next gallery page", "Misclassified",
          lambda: page.locator(".st-key-mis_page button").last.click())
    timed("misclassified: inspect a sample", "Misclassified", lambda: select_grid_row(page, "mis_gallery", 2))
    goto(page, "Confusion", picked)
    timed("confusion: choose a pair", "Confusion", lambda: select_grid_row(page, "conf_pairs", 0, 35))
    if spec["coarse"]:
        goto(page, "Embeddings", picked)
        out["embeddings: colour by group"] = click_segment(page, "Embeddings", "coarse group", picked)
    return out


def table(scale: str, figures: dict) -> str:
    def worst(d):
        return f"{max(d.values()):.2f} s ({max(d, key=d.get)})" if d else "—"

    w, c = figures.get("warm", {}), figures.get("cold", {})
    rows = [("first useful paint, stats cached (target 2 s)", f"{w.get('first_paint_s', 0):.2f} s"),
            ("first visit of a page (worst)", worst(w.get("first_visit_s", {}))),
            ("warm page switch (worst; target 1 s)", worst(w.get("page_switch_s", {}))),
            ("control change (worst; target 1 s)", worst(w.get("controls_s", {}))),
            ("run added (worst; target 1.5 s)", worst(w.get("add_run_s", {}))),
            ("run removed (worst)", worst(w.get("remove_run_s", {}))),
            ("server peak memory (target 1.5 GiB)",
             f"{max(v for k, v in w.items() if k.startswith('server_peak') and v):.0f} MiB" if w else "—")]
    if c:
        rows += [("first useful paint, no stats cache", f"{c['first_paint_s']:.2f} s"),
                 ("until the picked runs' metrics are shown (all but R@1)", f"{c['first_metrics_shown_s']:.1f} s"),
                 ("until their Recall@1 is shown too", f"{c['metrics_shown_s']:.1f} s"),
                 ("server peak memory, computing", f"{c['server_peak_mib']:.0f} MiB")]
        rows += [(f"background {j['task']} of {j['run']}",
                  f"{j['seconds']:.1f} s, worker peak {j['worker_peak_mib']} MiB") for j in c["jobs"]]
    return "\n".join([f"### {scale}", "", "| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])


def before(tree: Path, scale: str, data: Path) -> dict:
    """First paint, page visits and peak memory of the dashboard in `tree`, on runs written by its
    own tests/test_browser.write_synthetic_run (its run format), picked through the URL."""
    import subprocess

    from playwright.sync_api import sync_playwright

    spec = SCALES[scale]
    root = data / f"before-{scale}"
    env = {"PYTHONPATH": str(tree)}
    for name, method, seed, sharp, acc in spec["runs"]:
        if not (root / name / "predictions-test.npz").is_file():  # written by that version's code, in its process
            options = dict(method=method, seed=seed, sharpness=sharp, accuracy=acc, n=spec["n"], n_val=spec["n_val"],
                           n_classes=spec["n_classes"], dim=spec["dim"], image_shape=spec["image_shape"],
                           coarse=spec["coarse"], epochs=200)
            subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'tests'); "
                            "from test_browser import write_synthetic_run as w; "
                            f"w({str(root / name)!r}, **{options!r})"], cwd=tree, env={**os.environ, **env}, check=True)
    names = [r[0] for r in spec["runs"]]
    two, result = names[:2], {"first_visit_s": {}, "page_switch_s": {}}
    command = [sys.executable, "-m", "cskd", "dashboard", "--runs", str(root), "--port"]
    log = OUT / f"server-{scale}-before.log"
    pages = [p for p in PAGES if p != "Confusion"]  # that version had no Confusion page
    with dashboard(root, log, command=command, env=env, cwd=tree) as (url, proc), sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.set_default_timeout(900_000)
        t0 = time.perf_counter()
        page.goto(f"{url}/?run={two[0]}&run={two[1]}")
        wait_ready(page, "Runs", two, timeout_s=900)
        result["first_paint_s"] = time.perf_counter() - t0
        for title in pages[1:]:
            t0 = time.perf_counter()
            page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
            wait_ready(page, title, two, timeout_s=900)
            result["first_visit_s"][title] = time.perf_counter() - t0
        for _ in range(2):
            for title in pages:
                result["page_switch_s"][title] = max(result["page_switch_s"].get(title, 0), goto(page, title, two))
        result["server_peak_mib"] = peak_mib(server_pid(proc.pid))
        browser.close()
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", nargs="+", choices=tuple(SCALES), default=list(SCALES))
    p.add_argument("--data", type=Path, default=Path("/tmp/cskd-bench"), help="where the runs are written once")
    p.add_argument("--cold", action="store_true", help="also measure the picked runs without a stats cache")
    p.add_argument("--before", type=Path, metavar="TREE", help="measure an older checkout instead (see above)")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.before:
        for scale in args.scale:
            figures = before(args.before.resolve(), scale, args.data)
            (OUT / f"dashboard-{scale}-before.json").write_text(json.dumps(figures, indent=2))
            print(f"### {scale}, before\n\n{json.dumps(figures, indent=2)}", flush=True)
        return 0
    for scale in args.scale:
        spec = SCALES[scale]
        root = prepare(scale, args.data)
        names = [r[0] for r in spec["runs"]]
        ensure_all_stats(root, names[2:])
        figures = {}
        if args.cold:
            figures["cold"] = cold(root, names[:2], OUT / f"server-{scale}-cold.log")
        ensure_all_stats(root, names[:2])
        figures["warm"] = warm(root, spec, OUT / f"server-{scale}-warm.log")
        (OUT / f"dashboard-{scale}.json").write_text(json.dumps(figures, indent=2))
        print(table(scale, figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
