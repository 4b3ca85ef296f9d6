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
from pathlib import Path

from cskd.errors import UserError

STOP_WAIT_S = 10  # after Ctrl-C, how long Streamlit gets to shut down before it is killed


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
    # `kill PID` of this process must not leave Streamlit running without it.
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # The terminal sent SIGINT to Streamlit too; give it time to close its sessions.
        _stop(proc)
        print("cskd dashboard: stopped", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:  # any other way out of here
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Wait for Streamlit to exit after Ctrl-C; terminate, then kill it if it does not."""
    for step in (None, proc.terminate, proc.kill):
        if step is not None:
            step()
        try:
            proc.wait(timeout=STOP_WAIT_S)
            return
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting politely
            continue
