"""Start, find and stop the stack's daemons by pidfile, never by name.

A part counts as ours only while its pidfile names a live process whose command line
mentions our ``HUB_HOME``: a stale pidfile whose pid was reused by something else is
never signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tooling.stack.errors import StackError


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes: it answers kill(0) but serves nothing.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def read_pid(pidfile: Path) -> int | None:
    try:
        first = pidfile.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    return int(first) if first.isdigit() else None


def owned_pid(pidfile: Path, marker: str) -> int | None:
    """The pid in ``pidfile`` if that process is alive and its command line contains ``marker``."""
    pid = read_pid(pidfile)
    if pid is None or not is_alive(pid):
        return None
    return pid if marker in cmdline(pid) else None


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def spawn(argv: Sequence[str], log: Path, pidfile: Path, env: dict[str, str] | None = None) -> int:
    """Start a daemon in its own session, its output in ``log``, its pid in ``pidfile``.

    The child never holds our stdout/stderr, so a caller piping our output (CI) is not kept
    waiting for a daemon to exit.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout_s: float,
    alive: Callable[[], bool] | None = None,
    log: Path | None = None,
    interval_s: float = 0.25,
) -> float:
    """Poll ``ready`` until it holds; fail early if the process died, late if the deadline passed.

    Returns the seconds it took.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    while True:
        if ready():
            return time.monotonic() - start
        if alive is not None and not alive():
            raise StackError(f"{what} exited during start-up{_log_hint(log)}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout_s:.0f} s{_log_hint(log)}")
        time.sleep(interval_s)


def _log_hint(log: Path | None) -> str:
    if log is None:
        return ""
    last = tail(log, 1)
    return f"; see {log}" + (f" (last line: {last[0][:200]})" if last else "")


def tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def terminate(pid: int, *, timeout_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``: the daemon gets its chance to flush."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
