"""`cskd dashboard`: start the Streamlit app in app/ on a runs folder.

The app runs in a child process (`python app/serve.py run app/main.py ... -- --runs DIR`: Streamlit's
own command line, after importing the libraries the pages use, so the first page is not slowed by
them), so Streamlit's signal handling and threads stay out of the CLI process.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cskd.errors import UserError

STOP_WAIT_S = 10  # after Ctrl-C, how long Streamlit gets to shut down before it is terminated, then killed
STOPPED = "cskd dashboard: stopped"  # the last line after a Ctrl-C or SIGTERM (the browser test looks for it)


def app_script() -> Path:
    """main.py of the dashboard package cskd.app (the repository's app/ folder, installed under
    cskd's name: in a source checkout installed in editable mode it is app/main.py itself)."""
    import importlib.util

    spec = importlib.util.find_spec("cskd.app")
    return Path(next(iter(spec.submodule_search_locations))) / "main.py"


def url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _check_port(host: str, port: int) -> None:
    """A one-line error now instead of Streamlit's traceback later when the port is taken."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be between 1 and 65535; got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, port))
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); "
                        "pick another port with --port or another address with --host") from None


def command(runs_dir: Path, port: int, host: str) -> list[str]:
    return [sys.executable, str(app_script().with_name("serve.py")), "run", str(app_script()),
            "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            # No Deploy button (the runs stay on this machine), no file watcher (nothing is edited).
            "--client.toolbarMode", "minimal", "--server.fileWatcherType", "none",
            # The browser keeps large elements (thumbnail tables, 10,000-point charts) for this many
            # reruns instead of 2, so going back to a page does not send them again.
            "--global.maxCachedMessageAge", "50",
            "--", "--runs", str(runs_dir)]


def launch(runs_dir: str, port: int = 8501, host: str = "127.0.0.1") -> int:
    """Serve the dashboard over `runs_dir` until Ctrl-C; returns Streamlit's exit status (0 after
    Ctrl-C or SIGTERM, with "cskd dashboard: stopped" last on stderr). Binds 127.0.0.1 by default:
    only this machine can connect."""
    root = Path(runs_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"runs folder {runs_dir} does not exist or is not a folder; "
                        f"create runs with `cskd demo --runs {runs_dir}`")
    if not app_script().is_file():
        raise UserError(f"the dashboard app is missing ({app_script()}); reinstall cskd")
    _check_port(host, port)
    print(f"cskd dashboard: {url(host, port)}  (runs: {root.resolve()}; Ctrl-C stops it)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"cskd dashboard: listening on {host}: other machines can reach it", flush=True)
    # Handlers from before Streamlit starts: no window where a Ctrl-C raises KeyboardInterrupt here
    # (Streamlit starts with the default dispositions: an exec resets caught signals).
    stops: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stops.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        proc = subprocess.Popen(command(root.resolve(), port, host))
        try:
            return _serve(proc, stops)
        finally:
            if proc.poll() is None:  # any other way out of here
                proc.kill()
                proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(proc: subprocess.Popen, stops: list) -> int:
    """Wait for Streamlit; on Ctrl-C (SIGINT, which the terminal sends Streamlit too) or `kill PID` of
    this process (SIGTERM, passed on: Streamlit must not outlive it), stop it, say so last, and
    return 0; otherwise return Streamlit's own exit status.

    The handlers only note the signal in `stops` (no KeyboardInterrupt: raised wherever the process
    happens to be, it could miss the "stopped" line), and replace an inherited SIG_IGN: a shell
    without job control starts background commands with SIGINT ignored, and Streamlit, which
    installs its own handler, would stop on a Ctrl-C the CLI never saw. When Streamlit's exit is
    seen, a Ctrl-C sent to both is already noted: the kernel queues it for this process before
    Streamlit can act on it, and its handler runs before the wait returns here."""
    while not stops:
        try:
            status = proc.wait(timeout=0.5)  # short waits: the handlers run between them
        except subprocess.TimeoutExpired:
            continue
        if not stops:
            return status  # Streamlit exited on its own
    if signal.SIGTERM in stops:
        proc.terminate()
    _stop(proc, stops)
    print(STOPPED, file=sys.stderr, flush=True)  # flushed: the process may be gone right after
    return 0


def _stop(proc: subprocess.Popen, stops: list) -> None:
    """Wait for Streamlit to exit after a stop signal: STOP_WAIT_S, then terminate, then kill. A
    further Ctrl-C (or SIGTERM) while waiting skips to the next step."""
    for step in (None, proc.terminate, proc.kill):
        if step is not None:
            step()
        seen, deadline = len(stops), time.monotonic() + STOP_WAIT_S
        while len(stops) == seen and time.monotonic() < deadline:
            try:
                proc.wait(timeout=0.1)
                return
            except subprocess.TimeoutExpired:
                continue
    proc.wait()
