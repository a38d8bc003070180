"""This worker's hold on a partition, kept by the runtime beside the partition's processor.

The processor holds the partition's data (windows, KPI states, its progress record), all of it
rebuilt from the state table. What only this worker knows stays here: the fence its writes carry,
when it last proved it, and what a previous owner already sent to the DLQ. Both are made when
the partition is first used after an assignment and dropped together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streams.processor import PartitionProcessor
from streams.rows import Fence

# How long a worker's claim on a partition counts as proven after a fenced write or a check: a
# worker loses a partition only after missing its group's session timeout (6 s at least).
FENCE_FRESH_S = 3.0


@dataclass(slots=True)
class Owned:
    """A partition this worker owns now."""

    processor: PartitionProcessor
    fence: Fence
    # When the fence was last proven (a fenced write or a check; monotonic seconds).
    confirmed: float = field(default_factory=time.monotonic)
    # Whether the DLQ was read for what a previous owner rejected from ``next_offset`` on (once
    # per ownership, before the first batch), and those offsets: skipped once each.
    read_back: bool = False
    rejected_before: set[int] = field(default_factory=set)

    @property
    def partition(self) -> int:
        return self.processor.partition

    def proven(self) -> None:
        self.confirmed = time.monotonic()

    def needs_proof(self) -> bool:
        """A while since the claim was last proven (a stuck worker, say): prove it before the
        partition's outputs and state go out."""
        return time.monotonic() - self.confirmed > FENCE_FRESH_S
