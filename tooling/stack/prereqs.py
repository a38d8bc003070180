"""Tools the local stack needs, and installing the missing ones from Debian's packages.

Only missing tools are installed, so a warm machine never touches apt. Without root (or
passwordless sudo) nothing is installed: the error names the packages to install by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tooling.stack.errors import StackError

PG_MAJOR = 15
PG_BINDIR = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")


@dataclass(frozen=True, slots=True)
class Tool:
    """Something the stack runs, how to tell it is there, and the Debian package providing it."""

    name: str
    package: str
    present: Callable[[], bool]


def on_path(command: str) -> Callable[[], bool]:
    return lambda: shutil.which(command) is not None


def exists(path: Path) -> Callable[[], bool]:
    return path.exists


JAVA = Tool("java (17)", "openjdk-17-jre-headless", on_path("java"))
MAVEN = Tool("mvn", "maven", on_path("mvn"))
POSTGRES = Tool(f"PostgreSQL {PG_MAJOR}", f"postgresql-{PG_MAJOR}", exists(PG_BINDIR / "postgres"))
PG_SERVER_DEV = Tool(
    f"PostgreSQL {PG_MAJOR} server headers",
    f"postgresql-server-dev-{PG_MAJOR}",
    exists(Path(f"/usr/include/postgresql/{PG_MAJOR}/server/postgres.h")),
)
PROMETHEUS = Tool("prometheus", "prometheus", on_path("prometheus"))
ALERTMANAGER = Tool(
    "prometheus-alertmanager", "prometheus-alertmanager", on_path("prometheus-alertmanager")
)
CMAKE = Tool("cmake", "cmake", on_path("cmake"))
COMPILER = Tool("cc", "build-essential", on_path("cc"))
DPKG_SOURCE = Tool("dpkg-source", "dpkg-dev", on_path("dpkg-source"))
# Only the browser test of the web page needs it.
CHROMIUM = Tool("chromium", "chromium", on_path("chromium"))
# ...and, for the public page's Korean, a Korean font (the smallest Debian packages).
KOREAN_FONT = Tool(
    "a Korean font", "fonts-nanum", exists(Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf"))
)


def _privileged(argv: list[str]) -> list[str] | None:
    if os.geteuid() == 0:
        return argv
    if (
        shutil.which("sudo")
        and subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False).returncode == 0
    ):
        return ["sudo", "-n", *argv]
    return None


def run_privileged(argv: list[str], *, what: str) -> None:
    """Run a command as root (directly or by passwordless sudo); StackError with its last line."""
    command = _privileged(argv)
    if command is None:
        raise StackError(f"{what} needs root: run `sudo {' '.join(argv)}` and try again")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StackError(f"{what} failed ({' '.join(argv[:3])} ...): {last[0]}")


def ensure(tools: Iterable[Tool], say: Callable[[str], None]) -> None:
    """Install the packages of the tools that are missing; re-reading apt's lists once if needed."""
    missing = [tool for tool in tools if not tool.present()]
    if not missing:
        return
    packages = sorted({tool.package for tool in missing})
    names = ", ".join(tool.name for tool in missing)
    if shutil.which("apt-get") is None:
        raise StackError(
            f"missing {names}: install the packages {' '.join(packages)} and try again"
        )
    say(f"installing {' '.join(packages)} (missing: {names})")
    install = [
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        *packages,
    ]
    try:
        run_privileged(install, what=f"installing {' '.join(packages)}")
    except StackError:
        run_privileged(["apt-get", "update", "-q"], what="apt-get update")
        run_privileged(install, what=f"installing {' '.join(packages)}")
    still = [tool.name for tool in missing if not tool.present()]
    if still:
        raise StackError(f"installed {' '.join(packages)} but still missing: {', '.join(still)}")
