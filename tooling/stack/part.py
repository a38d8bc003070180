"""What every part of the local stack offers to ``hub stack up | down | status``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

State = Literal["running", "stopped"]
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class PartStatus:
    name: str
    state: State
    pid: int | None
    address: str
    version: str = ""
    detail: str = ""


class Part(Protocol):
    name: str

    def status(self) -> PartStatus:
        """Read-only: pidfile, liveness and address. Never starts or installs anything."""
        ...

    def up(self, say: Say) -> PartStatus:
        """Install what is missing, start if stopped, wait until it serves.

        Idempotent: a running part is left alone. Raises StackError with a one-line reason.
        """
        ...

    def down(self, say: Say) -> PartStatus:
        """Stop the process this part started (by its pidfile), and nothing else."""
        ...

    def outdated(self) -> bool:
        """Running with a configuration other than the one ``up`` writes now (an upgrade)."""
        ...
