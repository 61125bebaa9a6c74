"""Shared fixtures: logging isolation, an HTTP client session, real Mosquitto and
Alertmanager processes on free loopback ports, the Prometheus binary and a webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import structlog

from tests.services import (
    AM_CONFIG,
    AlertmanagerNode,
    Broker,
    BrokerFactory,
    Webhook,
    alertmanager_binary,
    mosquitto_binary,
    webhook_receiver,
)
from tests.tools import free_port, require_binary

E2E = Path(__file__).parent / "e2e"
# Fixtures that start a heavy real component: a test using one is slow.
SLOW_FIXTURES = frozenset({"alertmanager", "prometheus_binary"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e/ is e2e; every test starting Alertmanager or Prometheus is
    slow. (Other slow tests carry @pytest.mark.slow themselves.)"""
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.e2e)
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _default_structlog() -> Iterator[None]:
    """Every test starts and ends with structlog's defaults and no bound context: a test that
    configures logging onto a captured stream must not leave later tests writing to it."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client session with aiohttp's defaults, closed after the test."""
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where a test's store file goes (created by whoever opens it)."""
    return tmp_path / "quorumwatch.db"


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    binary = mosquitto_binary()
    brokers: list[Broker] = []

    def make(*settings: str) -> Broker:
        """A started broker with extra config lines; `{dir}` is its own directory."""
        directory = tmp_path / f"broker{len(brokers)}"
        directory.mkdir()
        broker = Broker(binary, directory, free_port(), list(settings))
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.kill()


@pytest.fixture
def am_config(tmp_path: Path) -> Path:
    path = tmp_path / "alertmanager.yml"
    path.write_text(AM_CONFIG)
    return path


@pytest.fixture
def alertmanager(tmp_path: Path, am_config: Path) -> Iterator[str]:
    """A real Alertmanager on a free loopback port, clustering off; yields its base URL."""
    node = AlertmanagerNode(alertmanager_binary(), tmp_path / "alertmanager", am_config)
    try:
        node.start()
        yield node.url
    finally:
        node.stop()


@pytest.fixture
def prometheus_binary() -> str:
    return require_binary("prometheus")


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    async with webhook_receiver() as receiver:
        yield receiver
