"""Reliability tests each run a hub of their own (``tests.isolated``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.settings import Settings
from tests.conftest import registry_dir_with_test_demo
from tests.isolated import IsolatedHub, start_hub, stop_hub
from tests.support import scratch_database


@pytest.fixture
async def registry_dir(tmp_path: Path) -> Path:
    return registry_dir_with_test_demo(tmp_path / "registry")


@pytest.fixture
async def database(stack: Settings, registry_dir: Path) -> AsyncIterator[str]:
    """An empty database with the schema and the test registry."""
    async with scratch_database(stack, registry_dir) as url:
        yield url


@pytest.fixture
async def hub(stack: Settings, database: str, tmp_path: Path) -> AsyncIterator[IsolatedHub]:
    isolated = await start_hub(stack, database, tmp_path, None)
    try:
        yield isolated
    finally:
        await stop_hub(isolated)
