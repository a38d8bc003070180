"""A worker's local copy of its state (Faust's RocksDB), trusted only after a clean stop.

A batch's state reaches RocksDB at once and the changelog topic a moment later (Faust's
producer sends it in the background). A worker killed in between restarts with local state the
changelog never got: it would skip the batch's re-delivered records as done, and whoever takes
the partition next restores from the changelog without them. So the local store is kept only
when the last stop was clean (the producer flushed, a marker written); after any other stop it
is dropped, and the worker restores from the changelog, which Faust flushes before every offset
commit: the records it lacks are re-delivered and processed again.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "stopped-cleanly"


def open_local_state(datadir: Path) -> bool:
    """Prepare ``datadir`` before Faust opens it; True if local state was dropped."""
    marker = datadir / MARKER
    dropped = False
    held = datadir.is_dir() and any(p.name != MARKER for p in datadir.iterdir())
    if held and not marker.exists():
        log.warning(
            "%s: the last stop was not clean; local state dropped, restoring from the changelog",
            datadir,
        )
        shutil.rmtree(datadir)
        dropped = True
    datadir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # from now on, a crash is an unclean stop
    return dropped


def close_local_state(datadir: Path, *, stopped_cleanly: bool, delivered_everything: bool) -> bool:
    """After Faust has stopped (the checkpoint's step 6): the local state is marked as
    trustworthy only if the stop was clean *and* every table write reached the changelog (a
    last flush can fail, and Faust only logs that). True if marked."""
    if not (stopped_cleanly and delivered_everything):
        if stopped_cleanly:
            log.warning(
                "stopped, but not every state write reached the changelog: local state "
                "will be rebuilt from the changelog at the next start"
            )
        return False
    (datadir / MARKER).touch()
    return True
