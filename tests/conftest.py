"""Shared fixtures: one local stack per test run, brought up (idempotently) by the real CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from hub.settings import Settings


def run_hub(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The installed ``hub`` command, as a user runs it, bounded in time."""
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


async def run_hub_async(
    *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    """``run_hub`` for async tests: the event loop (and the clients on it) keeps running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return subprocess.CompletedProcess(list(args), proc.returncode, out.decode(), err.decode())


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The real Kafka, TimescaleDB and Prometheus, up for the whole session."""
    result = run_hub("stack", "up")
    assert result.returncode == 0, f"hub stack up failed:\n{result.stdout}\n{result.stderr}"
    return settings


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def loaded_registry(stack: Settings) -> Settings:
    """The repository's registry, loaded into the stack's database, every device with its test
    signing key (``tests.support.test_key``)."""
    from tests.support import install_test_keys

    result = run_hub("registry", "load")
    assert result.returncode == 0, f"hub registry load failed:\n{result.stderr}"
    asyncio.run(install_test_keys(stack.database_url))
    return stack


# -- stream-processing workers ------------------------------------------------------------------

# Small windows of time so tests see windows close in seconds, not minutes: 5 s of lateness, and
# events dated up to 5 minutes ahead of their arrival move event time (the pipeline tests date
# their events in the next minute and close them with a record dated past it). The tests of
# hostile clocks and of faults at the hub's defaults run without these.
FAST_WORKER_ENV = {
    "HUB_ALLOWED_LATENESS": "5",
    "HUB_CLOCK_TOLERANCE": "300",
    "HUB_DEDUP_HORIZON": "420",
    "HUB_IDLE_TIMEOUT": "3",
    "HUB_TICK_INTERVAL": "1",
    "HUB_REGISTRY_REFRESH": "1",
    "HUB_WORKER_WEB_PORT": "16066",
    # A killed worker's partitions move after 10 s, not 30 s: a restarted one waits that long.
    "HUB_SESSION_TIMEOUT": "10",
}
TEST_DEMO = "DEMO-T01"


# The hub's defaults for what FAST_WORKER_ENV shortens: for the tests that must hold at them.
DEFAULT_WORKER_ENV = {
    "HUB_ALLOWED_LATENESS": "120",
    "HUB_DEDUP_HORIZON": "600",
    "HUB_CLOCK_TOLERANCE": "5",
    "HUB_IDLE_TIMEOUT": "30",
    "HUB_TICK_INTERVAL": "5",
    "HUB_REGISTRY_REFRESH": "5",
}


class WorkerProcess:
    """A real `hub worker` subprocess; stopped by its pid, never by name. It runs with
    FAST_WORKER_ENV under ``env``; pass DEFAULT_WORKER_ENV in ``env`` for the hub's defaults."""

    def __init__(
        self,
        index: int,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        launcher: Sequence[str] = ("-m", "hub"),
    ) -> None:
        """``launcher``: what runs `hub worker` (``tests.reliability.faulty_worker``: one that
        crashes)."""
        self.index = index
        self.launcher = tuple(launcher)
        self.env = {**os.environ, **FAST_WORKER_ENV, **(env or {})}
        self.port = int(self.env["HUB_WORKER_WEB_PORT"]) + index
        self.log = log_dir / f"worker-{index}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, *self.launcher, "worker", "--index", str(self.index)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        return self

    def metrics(self) -> dict[str, float]:
        """This worker's hub_* samples (labels folded into the name), {} if it does not answer."""
        from tooling.localrun import scrape

        return scrape(self.port)

    def resident_bytes(self) -> float:
        """This worker's resident memory, as it reports it (0 if it does not answer)."""
        from tooling.localrun import scrape

        return scrape(self.port, ("process_resident_memory_bytes",)).get(
            "process_resident_memory_bytes", 0.0
        )

    def wait_ready(self, timeout_s: float = 90) -> None:
        """Until it serves metrics and owns at least one partition (or died: fail with its log)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.index} exited:\n{self.log.read_text()[-3000:]}")
            if self.metrics().get("hub_partitions_assigned", 0) > 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"worker {self.index} not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def registry_dir_with_test_demo(directory: Path) -> Path:
    """The repository's registry plus DEMO-T01, a test demonstration with 1-minute KPIs and a
    test device at every site, on metrics no real device reports."""
    import shutil

    from hub.registry.files import DATA_DIR

    shutil.copytree(DATA_DIR, directory, dirs_exist_ok=True)
    with (directory / "demonstrations.yaml").open("a") as out:
        out.write(
            f"- demonstration_id: {TEST_DEMO}\n"
            "  company: Test Co\n"
            "  title: Pipeline test demonstration\n"
            "  technology: test\n"
            "  starts_on: '2026-01-01'\n"
            "  ends_on: '2027-12-31'\n"
            "  metrics: [test_push]\n"
            "  kpis:\n"
            "  - {kpi_id: latency_p50, title: t, metric: test_latency_ms, aggregation: p50,\n"
            "     op: '<=', threshold: 120, window: 1m, min_samples: 5}\n"
            "  - {kpi_id: events, title: t, metric: test_online, aggregation: count,\n"
            "     op: '>=', threshold: 3, window: 1m, min_samples: 1}\n"
        )
    with (directory / "devices.csv").open("a") as out:
        for site in sorted(t01_sites()):
            out.write(f"{site}-TST1,{site},{TEST_DEMO},test\n")
    return directory


def t01_sites(partitions: int = 12) -> set[str]:
    """The sites DEMO-T01 has a test device at: on every partition, the first 24 site ids, and
    of each region the first 12 in the registry's order. Not every site: the hub judges every
    KPI at every site of a demonstration each window, reporting or not, and DEMO-T01's windows
    are a minute."""
    from hub.registry.files import read_registry
    from tests.support import partition_of

    chosen: set[str] = set()
    by_partition: dict[int, list[str]] = {}
    by_region: dict[tuple[int, str], list[str]] = {}
    for site in read_registry().sites:
        p = partition_of(site.site_id, partitions)
        by_partition.setdefault(p, []).append(site.site_id)
        by_region.setdefault((p, site.region), []).append(site.site_id)
    for ids in by_partition.values():
        chosen.update(sorted(ids)[:24])
    for ids in by_region.values():
        chosen.update(ids[:12])
    return chosen


@pytest.fixture(scope="session")
def registry_with_test_demo(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """Loaded for the stream tests, and removed afterwards."""
    from tests.support import install_test_keys, remove_demonstration

    directory = registry_dir_with_test_demo(tmp_path_factory.mktemp("registry"))
    result = run_hub("registry", "load", "--dir", str(directory))
    assert result.returncode == 0, result.stderr
    asyncio.run(install_test_keys(stack.database_url))
    yield stack
    asyncio.run(remove_demonstration(stack.database_url, TEST_DEMO))


@pytest.fixture(scope="session")
def worker_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workers")


@pytest.fixture(scope="session")
def worker(registry_with_test_demo: Settings, worker_logs: Path) -> Iterator[WorkerProcess]:
    """One real worker for the session (tests that need more start their own, with its env).

    A hub of its own (HUB_APP_ID), reading from the topic's end: no backlog and no event time
    left by earlier runs or by the benchmark's records."""
    from tooling.localrun import drop_hub_topics, fresh_hub

    settings = registry_with_test_demo
    app_id = f"test-{uuid.uuid4().hex[:8]}"
    asyncio.run(fresh_hub(settings, app_id))
    process = WorkerProcess(0, worker_logs, {"HUB_APP_ID": app_id}).start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
        asyncio.run(drop_hub_topics(settings, app_id))
