"""The dashboard in a real browser: Debian's Chromium driven by Playwright, on three synthetic runs of
10,000 test samples (100 classes, 20 coarse groups, 32x32 colour images) whose stats caches are
there (as `cskd analyze` leaves them), plus one with a hostile name.

Starts `python -m cskd dashboard` on a free localhost port, opens every page, changes a few
controls (bins, layout, temperature scaling; a gallery row; a t-SNE point hovered and clicked; a
run added and removed), checks that names from the folder and the URL never become links or
images and that the browser fetches nothing from outside, saves screenshots and timings under
test-artifacts/browser/ (timings are recorded, never asserted: benchmarks/dashboard.py measures
them); with CSKD_UPDATE_DOCS=1 it also regenerates docs/calibration.png and docs/misclassified.png
(never by default: a test run leaves the tracked files alone). Skipped when
/usr/bin/chromium or the playwright package is absent (never `playwright install`).

The driver functions here are shared with benchmarks/dashboard.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
PAGES = ("Runs", "Calibration", "Misclassified", "Confusion", "Embeddings", "Hierarchy")
RUNS = ("cifar-ce-s0", "cifar-cskd-s0", "cifar-cskd-s1")
HOSTILE = "[click](http:evil.example) ![t](http:evil.example) <img src=x>"  # a folder name: no "/"
URL_HOSTILE = "[click](http://evil.example) ![t](http://evil.example/t.png)"
IMPORTED = "imported-elsewhere"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install playwright; "
                                                       "never `playwright install`: /usr/bin/chromium is used)"),
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is absent (apt-get install chromium)"),
]

# True once the page titled `title` finished a rerun whose footer lists `picked`, and everything
# it shows is drawn: no stale element left, every image decoded, every chart on its canvas (a
# chart whose spec Vega refused has none, so a broken chart is never "ready").
READY_JS = """([title, picked, after]) => {
  const main = document.querySelector('[data-testid="stMain"]');
  const h1 = main && main.querySelector('h1');
  if (!h1 || !h1.textContent.includes(title)) return false;
  const footer = document.querySelector('.st-key-cskd-footer');
  // ui.literal's invisible joiners (U+2060) keep addresses in names from being linked: not part of the name
  if (!footer || footer.textContent.replace(/\u2060/g, '').trim() !== 'Runs picked: ' + picked) return false;
  const rerun = footer.querySelector('[class*="st-key-cskd-rerun-"]');
  const n = rerun ? parseInt(rerun.className.match(/st-key-cskd-rerun-(\\d+)/)[1]) : 0;
  if (n <= after) return false;
  if (document.querySelector('[data-stale="true"]')) return false;
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  if (status && /Running|Stop/.test(status.textContent)) return false;
  for (const img of main.querySelectorAll('img')) if (!img.complete || img.naturalWidth === 0) return false;
  for (const c of main.querySelectorAll('[data-testid="stVegaLiteChart"]'))
    if (!c.querySelector('canvas, svg')) return false;
  return true;
}"""


# What READY_JS is waiting for, for the failure message.
WHY_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const h1 = main && main.querySelector('h1');
  const footer = document.querySelector('.st-key-cskd-footer');
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  return {h1: h1 && h1.textContent, footer: footer && footer.textContent,
          stale: document.querySelectorAll('[data-stale="true"]').length, status: status && status.textContent,
          images: [...main.querySelectorAll('img')].filter(i => !i.complete || i.naturalWidth === 0).length,
          charts: [...main.querySelectorAll('[data-testid="stVegaLiteChart"]')].filter(
            c => !c.querySelector('canvas, svg')).length};
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def dashboard(runs_dir: Path, log_path: Path, command=None, env=None, cwd=ROOT):
    """`python -m cskd dashboard` (or `command` + port, run in `cwd`) on a free port, in its own
    process group; yields (url, process) and stops it as Ctrl-C in a terminal would (SIGINT to the
    group), killing it if it lingers."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = (command or [sys.executable, "-m", "cskd", "dashboard", "--runs", str(runs_dir), "--port"]) + [str(port)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd,
                                env={**{k: v for k, v in os.environ.items() if k != "CSKD_DASHBOARD_JOBS"},
                                     **(env or {})})  # the server's own job runner: a process per job
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not healthy(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dashboard did not come up (exit {proc.poll()}); see {log_path}")
                time.sleep(0.2)
            yield url, proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def launch_browser(pw):
    return pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)


def rerun_number(page) -> int:
    """The number of the last rerun drawn (app/main.py names the footer's container after it)."""
    return page.evaluate("""() => { const r = document.querySelector('[class*="st-key-cskd-rerun-"]');
      return r ? parseInt(r.className.match(/st-key-cskd-rerun-(\\d+)/)[1]) : 0; }""")


def wait_ready(page, title: str, picked, timeout_s: float = 120, after: int = -1) -> None:
    """Wait until `title` is drawn with `picked` (by a rerun numbered above `after`)."""
    try:
        page.wait_for_function(READY_JS, arg=[title, ", ".join(picked), after], polling="raf",
                               timeout=timeout_s * 1000)
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"not-ready-{title.lower()}.png"), full_page=True)
        raise AssertionError(f"{title} never got ready: {page.evaluate(WHY_JS)}") from None
    assert page.locator('[data-testid="stException"]').count() == 0, f"exception shown on {title}"


def goto(page, title: str, picked) -> float:
    """Click the navigation link of `title`; seconds until its content is visible."""
    t0 = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    wait_ready(page, title, picked)
    return time.perf_counter() - t0


def add_run(page, title: str, name: str, picked) -> float:
    box = page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"] input')
    box.click()
    box.fill(name)
    t0 = time.perf_counter()
    box.press("Enter")
    wait_ready(page, title, picked)
    elapsed = time.perf_counter() - t0
    box.press("Escape")
    return elapsed


def remove_run(page, title: str, name: str, picked) -> float:
    t0 = time.perf_counter()
    page.get_by_role("button", name=f"Remove {name}").click()
    wait_ready(page, title, picked)
    return time.perf_counter() - t0


def click_segment(page, title: str, option: str, picked) -> float:
    """Choose `option` (a segmented control's option, unique on the page); seconds until the page
    is drawn again."""
    before = rerun_number(page)
    t0 = time.perf_counter()
    page.locator('[data-testid="stMain"]').get_by_role("radio", name=option, exact=True).click()
    wait_ready(page, title, picked, after=before)
    return time.perf_counter() - t0


def select_grid_row(page, key: str, row: int, row_height: int = 56) -> None:
    """Click the selection box of `row` in the st.dataframe with `key` (the grid is a canvas)."""
    box = page.locator(f".st-key-{key} canvas").first.bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + 35 + row_height * row + row_height / 2)


def hover_a_point(page, chart) -> bool:
    """Move over a t-SNE chart until the tooltip shows (points sit on a grid of class blobs)."""
    box = chart.locator("canvas").first.bounding_box()
    for fx in (0.5, 0.06, 0.94, 0.28, 0.72):
        for fy in (0.06, 0.5, 0.28, 0.72, 0.94):
            page.mouse.move(box["x"] + 5 + fx * (box["width"] - 10), box["y"] + 5 + fy * 440)
            page.wait_for_timeout(120)
            tip = page.locator("#vg-tooltip-element")
            if tip.count() and tip.is_visible():
                return True
    return False


def shot(page, name: str, *, docs: bool = False) -> None:
    """A screenshot under test-artifacts/browser/; with `docs`, taller, and copied into docs/ when
    CSKD_UPDATE_DOCS=1."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    if docs:
        page.set_viewport_size({"width": size["width"], "height": 1900})
        page.wait_for_timeout(500)  # the charts re-layout to the taller window
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    if docs:
        if os.environ.get("CSKD_UPDATE_DOCS") == "1":
            shutil.copy(ARTIFACTS / f"{name}.png", ROOT / "docs" / f"{name}.png")
        page.set_viewport_size(size)


# ------------------------------------------------------------------------------------------ the test

@pytest.fixture(scope="module")
def big_runs(tmp_path_factory):
    from synthetic_runs import write_synthetic_run

    root = tmp_path_factory.mktemp("big-runs")
    # CE over-confident (sharper logits), CS-KD better calibrated, as in the paper's Fig. 5.
    for name, method, seed, sharp, acc in (("cifar-ce-s0", "ce", 0, 4.0, 0.72), ("cifar-cskd-s0", "cskd", 0, 2.6, 0.76),
                                           ("cifar-cskd-s1", "cskd", 1, 2.6, 0.75)):
        write_synthetic_run(root / name, method=method, seed=seed, n=10_000, n_val=1000, n_classes=100,
                            accuracy=acc, sharpness=sharp, image_shape=(32, 32, 3), coarse=True, dim=128, epochs=200,
                            dataset="cifar100", stats=True)
    write_synthetic_run(root / HOSTILE, n=200, n_val=0, dataset="other", stats=True,
                        class_names=[URL_HOSTILE, "quote \" and \\\\ backslash's"] + [f"c{i}" for i in range(2, 10)])
    imported(root / IMPORTED, tmp_path_factory.mktemp("import-inputs"))
    return root


def imported(run: Path, scratch: Path) -> None:
    """A model trained elsewhere: `cskd import` of synthetic 1,000 x 10 test logits and labels (and
    300 validation ones, for temperature scaling), then `cskd analyze` on it, as a user would."""
    import numpy as np
    from conftest import cli

    for split, n, seed in (("test", 1000, 0), ("val", 300, 1)):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 10, n)
        logits = rng.normal(size=(n, 10)).astype(np.float32)
        logits[np.arange(n), labels] += 2.5
        np.save(scratch / f"{split}-logits.npy", logits)
        np.save(scratch / f"{split}-labels.npy", labels)
        assert cli("import", run, "--logits", scratch / f"{split}-logits.npy", "--labels",
                   scratch / f"{split}-labels.npy", "--split", split) == 0
    assert cli("analyze", run, "--out", scratch / "report", "--no-progress") == 0


def test_dashboard_in_chromium(big_runs):
    log = ARTIFACTS / "server.log"
    with dashboard(big_runs, log) as (url, proc):
        timings = drive(url)
    assert proc.returncode == 0, f"Ctrl-C did not stop the dashboard cleanly; see {log}"
    assert "cskd dashboard: stopped" in log.read_text()
    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2))
    print(json.dumps(timings, indent=2))


def drive(url: str) -> dict:
    """Every page, a few interactions, the hostile names, the screenshots; returns timings."""
    two, three = list(RUNS[:2]), list(RUNS)
    timings: dict = {"first_paint_s": None, "first_visit_s": {}, "page_switch_s": {}, "add_run_s": {},
                     "remove_run_s": {}, "controls_s": {}}
    outside: list = []
    with sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(60_000)
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((url, "data:", "blob:"))
                    else None)
            t0 = time.perf_counter()
            page.goto(url)
            wait_ready(page, "Runs", two)
            timings["first_paint_s"] = time.perf_counter() - t0
            query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
            assert query.get("run") == two, page.url  # the URL names the default picks from the first render
            assert page.get_by_text("Deploy").count() == 0  # no Deploy button
            for title in PAGES[1:]:
                timings["first_visit_s"][title] = goto(page, title, two)
            for title in PAGES:
                timings["page_switch_s"][title] = goto(page, title, two)

            goto(page, "Calibration", two)
            shot(page, "calibration", docs=True)
            timings["controls_s"]["calibration layout"] = click_segment(page, "Calibration", "side by side", two)
            shot(page, "calibration-side-by-side")
            before, t1 = rerun_number(page), time.perf_counter()
            page.get_by_text("Temperature-scaled").click()
            wait_ready(page, "Calibration", two, after=before)
            timings["controls_s"]["temperature scaling"] = time.perf_counter() - t1
            click_segment(page, "Calibration", "overlaid", two)

            goto(page, "Misclassified", two)
            first = page.locator(".st-key-inspect").inner_text().split("·")[0]
            before, t1 = rerun_number(page), time.perf_counter()
            select_grid_row(page, "mis_gallery", 2)
            wait_ready(page, "Misclassified", two, after=before)
            assert not page.locator(".st-key-inspect").inner_text().startswith(first), "the inspected sample changed"
            timings["controls_s"]["inspect a sample"] = time.perf_counter() - t1
            assert page.locator('.st-key-distributions [data-testid="stVegaLiteChart"]').count() == 1
            shot(page, "misclassified", docs=True)
            timings["controls_s"]["misclassified set"] = click_segment(page, "Misclassified", "any run wrong", two)

            goto(page, "Embeddings", two)
            chart = page.locator('[data-testid="stVegaLiteChart"]').first
            assert hover_a_point(page, chart), "no tooltip on the t-SNE points"
            assert page.locator("#vg-tooltip-element img").count() == 1, "the tooltip shows the image"
            page.mouse.down()
            page.mouse.up()
            page.get_by_text("Chosen sample and its nearest neighbours").wait_for()
            wait_ready(page, "Embeddings", two)
            shot(page, "embeddings")

            for title in PAGES:  # a third run added (its caches read for the first time), then removed
                goto(page, title, two)
                timings["add_run_s"][title] = add_run(page, title, RUNS[2], three)
                timings["remove_run_s"][title] = remove_run(page, title, RUNS[2], two)
                shot(page, title.lower())

            hostile(page, url)
            page.goto(f"{url}/?run={IMPORTED}")  # every page on an import: no features, no images
            wait_ready(page, "Runs", [IMPORTED])
            for title in PAGES:
                goto(page, title, [IMPORTED])
        finally:
            browser.close()
    assert not outside, f"the page fetched from outside: {outside[:5]}"
    return timings


def hostile(page, url: str) -> None:
    """Names from the folder (and its class names) and from the URL render as plain text."""
    query = urllib.parse.urlencode([("run", HOSTILE), ("run", URL_HOSTILE)])
    page.goto(f"{url}/?{query}")
    wait_ready(page, "Runs", [HOSTILE])
    hostile_elements = 'a[href*="evil.example"], img[src*="evil.example"], img[src="x"]'
    assert page.locator(hostile_elements).count() == 0  # the first render names the URL's unknown run
    for title in PAGES:
        goto(page, title, [HOSTILE])
        assert page.locator(hostile_elements).count() == 0, title
    goto(page, "Runs", [HOSTILE])
    shot(page, "hostile-names")
