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
    """app/main.py next to this package (a source checkout and an installed wheel both put the
    `app` and `cskd` packages side by side)."""
    return Path(__file__).resolve().parents[2] / "app" / "main.py"


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
    Ctrl-C). Binds 127.0.0.1 by default: only this machine can connect."""
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
    proc = subprocess.Popen(command(root.resolve(), port, host))
    try:
        return _serve(proc)
    except KeyboardInterrupt:  # Ctrl-C before _serve blocked it
        _stop(proc)
        print(STOPPED, file=sys.stderr, flush=True)
        return 0


def _serve(proc: subprocess.Popen) -> int:
    """Wait for Streamlit; on Ctrl-C (SIGINT, which the terminal sends Streamlit too) or `kill PID` of
    this process (SIGTERM, passed on: Streamlit must not outlive it), stop it and say so, then return 0.

    The stop signals and SIGCHLD are blocked and taken with sigwait instead of being handled: with a
    handler, a Streamlit that exits on Ctrl-C before this process is scheduled makes the wait return
    normally while the SIGINT is still to be handled, and the KeyboardInterrupt then lands anywhere
    (or nowhere), so the "stopped" line could be missing. Blocked, a Ctrl-C is still pending when
    Streamlit's exit is seen (the terminal signals both at once) and is found with sigpending."""
    watched = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, watched)  # after Popen: the child keeps its own mask
    try:
        stop = None
        while stop is None and proc.poll() is None:  # a SIGCHLD from here on stays pending
            got = signal.sigwait(watched)
            if got != signal.SIGCHLD:
                stop = got
        if stop is None:  # Streamlit exited: on its own, or on a Ctrl-C this process has pending
            pending = signal.sigpending() & {signal.SIGINT, signal.SIGTERM}
            if not pending:
                return proc.wait()
            stop = min(pending)
        if stop == signal.SIGTERM:
            proc.terminate()
        _stop(proc)
        _drain({signal.SIGINT, signal.SIGTERM})  # a second Ctrl-C must not fire once unblocked
        print(STOPPED, file=sys.stderr, flush=True)  # flushed: the process may be gone right after
        return 0
    finally:
        if proc.poll() is None:  # any other way out of here
            proc.kill()
            proc.wait()
        _drain({signal.SIGCHLD})
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _drain(signals: set) -> None:
    """Take the pending (blocked) `signals`, so that none fires when they are unblocked."""
    while signal.sigpending() & signals:
        signal.sigtimedwait(signals, 0)


def _stop(proc: subprocess.Popen) -> None:
    """Wait for Streamlit to exit after a stop signal: STOP_WAIT_S, then terminate, then kill. A
    second Ctrl-C (or SIGTERM) while waiting skips to the next step."""
    for step in (None, proc.terminate, proc.kill):
        if step is not None:
            step()
        deadline = time.monotonic() + STOP_WAIT_S
        while proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got = _wait_signal({signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}, min(left, 0.5))
            if got in (signal.SIGINT, signal.SIGTERM):
                break
        if proc.poll() is not None:
            return
    proc.wait()


def _wait_signal(signals: set, timeout_s: float):
    """The number of one of the blocked `signals` that came within `timeout_s`, or None. Only
    when they are blocked (inside _serve); otherwise a plain sleep."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    if not signals <= blocked:
        try:
            time.sleep(timeout_s)
        except KeyboardInterrupt:
            return signal.SIGINT
        return None
    info = signal.sigtimedwait(signals, timeout_s)
    return None if info is None else info.si_signo
