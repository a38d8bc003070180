"""`hub demo`, the main job, end to end as a user runs it (into a database of its own): it exits 0,
its accounting line says exact, every district is printed, and nothing is left listening."""

from __future__ import annotations

import re
import socket

from hub.registry.files import read_registry
from hub.settings import Settings
from tests.conftest import run_hub_async
from tests.support import scratch_database


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_a_short_demo_accounts_exactly_and_leaves_nothing_running(stack: Settings) -> None:
    ports = [stack.api_port, stack.worker_web_port, stack.worker_web_port + 1]
    assert not any(listening(p) for p in ports), "a process already holds the demo's ports"
    async with scratch_database(stack) as url:
        result = await run_hub_async(
            "demo", "--duration", "10", env={"HUB_DATABASE_URL": url}, timeout_s=600
        )
    out = result.stdout
    assert result.returncode == 0, result.stderr[-3000:] + out[-3000:]
    # Nothing but the demo's own lines: client-library messages go to .hub/demo/clients.log.
    assert result.stderr == "", result.stderr[-3000:]
    accounting = re.search(r"accounting: ([\d,]+) records accepted by the workers, ([\d,]+)", out)
    assert accounting is not None, out[-3000:]
    assert accounting.group(1) == accounting.group(2)
    assert int(accounting.group(1).replace(",", "")) > 0
    assert "exact" in out
    # No record of a registered, correctly signing device is refused: the simulator issues its
    # devices' keys just before they publish, and workers judge them without waiting to reload.
    others = re.search(r"window closed; other: ([\d,]+)", out)
    assert others is not None, out[-3000:]
    assert others.group(1) == "0", out[-3000:]
    districts = {(s.region, s.district) for s in read_registry().sites}
    printed = {
        tuple(line.split()[:2])
        for line in out.splitlines()
        if line.startswith(("gwangju ", "jeonnam "))
    }
    assert len(printed) == len(districts) == 27, sorted(printed)
    # Each table says what it counts: the districts' the last 24 h, the demonstrations' this run.
    assert "KPI windows of the last 24 h" in out
    assert "KPI windows judged during this run, per demonstration" in out
    assert not any(listening(p) for p in ports), "the demo left a process listening"
