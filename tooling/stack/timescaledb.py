"""TimescaleDB: the machine's PostgreSQL 15 running a private cluster in ``$HUB_HOME``.

Debian 12 has no timescaledb package, so when the extension is missing it is built from
Debian 13's source package (Apache-licensed part only). apt is pointed at a trixie
``deb-src`` entry by options and a private lists directory: the system's apt sources are
never written.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

from hub.settings import Settings
from tooling.stack import prereqs
from tooling.stack.errors import StackError
from tooling.stack.part import PartStatus, Say
from tooling.stack.process import owned_pid, port_in_use, tail, wait_until

PG_SHAREDIR = Path(f"/usr/share/postgresql/{prereqs.PG_MAJOR}")
PG_LIBDIR = Path(f"/usr/lib/postgresql/{prereqs.PG_MAJOR}/lib")
CONTROL = PG_SHAREDIR / "extension" / "timescaledb.control"
TRIXIE_SOURCES = "deb-src http://deb.debian.org/debian trixie main\n"
BOOTSTRAP_SQL = """
SELECT format('CREATE ROLE %I LOGIN', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \\gexec
ALTER ROLE :"user" WITH LOGIN CREATEDB PASSWORD :'password';
SELECT 'CREATE ROLE hub_readonly NOLOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hub_readonly') \\gexec
GRANT hub_readonly TO :"user";
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec
\\c :"db"
CREATE EXTENSION IF NOT EXISTS timescaledb;
\\c template1
CREATE EXTENSION IF NOT EXISTS timescaledb;
"""


def blocking_directory(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first existing directory on the way to ``path`` that the user ``uid`` (in groups
    ``gids``) may not enter, or None. PostgreSQL runs as its own user: a checkout in a home
    directory only root may enter (``/root``) cannot hold its cluster."""
    for directory in [*reversed(path.parents), path]:
        try:
            info = directory.stat()
        except FileNotFoundError:
            break
        if uid == 0:
            continue
        if info.st_uid == uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in gids:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return directory
    return None


def check_reachable(directory: Path, os_user: str) -> None:
    """Fail with the fix, not initdb's "could not change directory ...: Permission denied"."""
    entry = pwd.getpwnam(os_user)
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if os_user in g.gr_mem}
    blocked = blocking_directory(directory, entry.pw_uid, gids)
    if blocked is not None:
        mode = stat.filemode(blocked.stat().st_mode)
        raise StackError(
            f"timescaledb: PostgreSQL runs as the user {os_user}, who may not enter "
            f"{blocked} ({mode}): set HUB_HOME to a directory it can reach (e.g. "
            f"HUB_HOME=/var/lib/testbed-hub), or `chmod o+x {blocked}`, or clone elsewhere"
        )


def extension_version() -> str:
    try:
        match = re.search(r"default_version\s*=\s*'([^']+)'", CONTROL.read_text())
    except OSError:
        return ""
    return match.group(1) if match else ""


def postgres_version() -> str:
    out = subprocess.run(
        [str(prereqs.PG_BINDIR / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"(\d+\.\d+)", out.stdout)
    return match.group(1) if match else "?"


class TimescaleDB:
    name = "timescaledb"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.target = settings.database
        self.dir = settings.home / "timescaledb"
        self.data = self.dir / "data"
        self.run_dir = self.dir / "run"
        self.log = self.dir / "postgresql.log"
        # PostgreSQL refuses to run as root: as root, its processes run as the postgres user.
        self.os_user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def address(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    def _pid(self) -> int | None:
        return owned_pid(self.data / "postmaster.pid", str(self.data))

    def status(self) -> PartStatus:
        pid = self._pid()
        version = ""
        if prereqs.POSTGRES.present():
            version = (
                f"PostgreSQL {postgres_version()}, TimescaleDB {extension_version() or 'missing'}"
            )
        return PartStatus(self.name, "running" if pid else "stopped", pid, self.address, version)

    def up(self, say: Say) -> PartStatus:
        if self._pid() is not None:
            return self.status()
        if port_in_use(self.target.host, self.target.port):
            raise StackError(
                f"timescaledb: port {self.address} is taken by another process; stop it, "
                "or choose another port in HUB_DATABASE_URL"
            )
        self._check_reachable()
        prereqs.ensure([prereqs.POSTGRES], say)
        if not CONTROL.exists() or not (PG_LIBDIR / "timescaledb.so").exists():
            self._build_extension(say)
        self._initdb(say)
        self._write_config()
        took = self._start()
        self._bootstrap()
        say(f"timescaledb: started PostgreSQL {postgres_version()} in {took:.1f} s")
        return self.status()

    def outdated(self) -> bool:
        return False  # nothing `up` writes for it changes under a running process

    def down(self, say: Say) -> PartStatus:
        pid = self._pid()
        if pid is not None:
            self._as_owner(
                [
                    str(prereqs.PG_BINDIR / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "60",
                    "stop",
                ],
                what="stopping PostgreSQL",
            )
            say(f"timescaledb: stopped pid {pid}")
        return self.status()

    # -- steps -------------------------------------------------------------------------

    def _as_owner(self, argv: list[str], *, what: str, stdin: str | None = None) -> str:
        command = ["runuser", "-u", self.os_user, "--", *argv] if os.geteuid() == 0 else argv
        result = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.dir,
            start_new_session=True,
        )
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StackError(f"timescaledb: {what} failed: {last[0][:300]}")
        return result.stdout

    def _own(self, *paths: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.os_user)
            for path in paths:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_reachable(self) -> None:
        if os.geteuid() == 0:  # otherwise PostgreSQL runs as the user who made the directory
            check_reachable(self.dir, self.os_user)

    def _initdb(self, say: Say) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        say(f"timescaledb: creating a PostgreSQL {prereqs.PG_MAJOR} cluster in {self.data}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        self._own(self.dir, self.run_dir)
        self._as_owner(
            [
                str(prereqs.PG_BINDIR / "initdb"),
                "-D",
                str(self.data),
                "--username=postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            what="initdb",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'hub.conf'\n")

    def _write_config(self) -> None:
        conf = self.data / "hub.conf"
        conf.write_text(
            "# Written by `hub stack up` on every start; edits are overwritten.\n"
            f"listen_addresses = '{self.target.host}'\n"
            f"port = {self.target.port}\n"
            f"unix_socket_directories = '{self.run_dir}'\n"
            "shared_preload_libraries = 'timescaledb'\n"
            "timescaledb.telemetry_level = off\n"
            "max_connections = 200\n"
            "shared_buffers = 512MB\n"
            "work_mem = 16MB\n"
            "maintenance_work_mem = 128MB\n"
            "max_wal_size = 2GB\n"
            "logging_collector = off\n"
        )
        self._own(conf)

    def _start(self) -> float:
        started = time.monotonic()
        self._as_owner(
            [
                str(prereqs.PG_BINDIR / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(int(self.settings.stack_start_timeout_s)),
                "start",
            ],
            what=f"starting PostgreSQL (see {self.log}: {' '.join(tail(self.log, 1))[:200]})",
        )
        wait_until(
            lambda: port_in_use(self.target.host, self.target.port),
            what="timescaledb",
            timeout_s=self.settings.stack_start_timeout_s,
            alive=lambda: self._pid() is not None,
            log=self.log,
        )
        return time.monotonic() - started

    def _bootstrap(self) -> None:
        """Role, database and extension: created when missing, left alone otherwise."""
        self._as_owner(
            [
                str(prereqs.PG_BINDIR / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.run_dir),
                "-p",
                str(self.target.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                f"user={self.target.user}",
                "-v",
                f"password={self.target.password}",
                "-v",
                f"db={self.target.dbname}",
            ],
            what="creating the hub role, database and timescaledb extension",
            stdin=BOOTSTRAP_SQL,
        )

    def _build_extension(self, say: Say) -> None:
        prereqs.ensure(
            [prereqs.PG_SERVER_DEV, prereqs.CMAKE, prereqs.COMPILER, prereqs.DPKG_SOURCE], say
        )
        work = self.settings.home / "build" / "timescaledb"
        shutil.rmtree(work, ignore_errors=True)
        (work / "lists" / "partial").mkdir(parents=True)
        (work / "cache" / "archives" / "partial").mkdir(parents=True)
        (work / "sources.list").write_text(TRIXIE_SOURCES)
        apt = [
            "apt-get",
            "-q",
            "-o",
            f"Dir::Etc::SourceList={work / 'sources.list'}",
            "-o",
            "Dir::Etc::SourceParts=/dev/null",
            "-o",
            f"Dir::State::Lists={work / 'lists'}",
            "-o",
            f"Dir::Cache={work / 'cache'}",
        ]
        say("timescaledb: extension missing; fetching Debian 13's timescaledb source package")
        _run([*apt, "update"], cwd=work, what="apt-get update (trixie deb-src)")
        _run([*apt, "source", "timescaledb"], cwd=work, what="apt-get source timescaledb")
        sources = [p for p in work.iterdir() if p.is_dir() and p.name.startswith("timescaledb-")]
        if not sources:
            raise StackError("timescaledb: apt-get source left no timescaledb-* directory")
        src = sources[0]
        say(f"timescaledb: building {src.name} (APACHE_ONLY) against PostgreSQL {prereqs.PG_MAJOR}")
        _run(
            [
                "cmake",
                "-S",
                str(src),
                "-B",
                str(src / "build"),
                "-DAPACHE_ONLY=ON",
                "-DREGRESS_CHECKS=OFF",
                "-DTAP_CHECKS=OFF",
                "-DWARNINGS_AS_ERRORS=OFF",
                "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                f"-DPG_CONFIG={prereqs.PG_BINDIR / 'pg_config'}",
            ],
            cwd=work,
            what="cmake (timescaledb)",
        )
        _run(
            ["make", "-C", str(src / "build"), f"-j{os.cpu_count() or 2}"],
            cwd=work,
            what="make (timescaledb)",
        )
        prereqs.run_privileged(
            ["make", "-C", str(src / "build"), "install"], what="installing timescaledb"
        )
        if not CONTROL.exists():
            raise StackError(f"timescaledb: built and installed, but {CONTROL} is still missing")
        say(f"timescaledb: installed TimescaleDB {extension_version()}")


def _run(argv: list[str], *, cwd: Path, what: str) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = (result.stderr + result.stdout).strip().splitlines()
        errors = [line for line in lines if "rror" in line] or lines[-1:] or ["no output"]
        raise StackError(f"timescaledb: {what} failed: {errors[0][:300]}")
