"""`hub worker` with a fault: it exits like a killed process (no flush, no clean stop) right
after the state of its Nth batch of accepted records reached the local store, before Faust's
producer sent it to the changelog. The seam is the checkpoint's step 3; the product has no
fault setting.

    python -m tests.reliability.faulty_worker N hub-worker-arguments...
"""

from __future__ import annotations

import logging
import os
import sys

from hub.cli import main
from streams.checkpoint import Checkpoint
from streams.processor import BatchResult

EXIT_CODE = 86


def launcher(batches: int) -> tuple[str, ...]:
    """What runs this module in place of ``python -m hub``."""
    return ("-m", __name__, str(batches))


def exit_after(batches: int) -> None:
    """Make the Nth accepting batch's ``write_state`` the process's last act."""
    original = Checkpoint.write_state
    seen = 0

    def write_state(self: Checkpoint, result: BatchResult) -> None:
        nonlocal seen
        original(self, result)
        if not result.counts.accepted:
            return
        seen += 1
        if seen >= batches:
            logging.getLogger(__name__).warning(
                "fault injection: exiting after batch %d's state writes", seen
            )
            logging.shutdown()
            os._exit(EXIT_CODE)

    Checkpoint.write_state = write_state  # type: ignore[method-assign]


if __name__ == "__main__":
    exit_after(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
