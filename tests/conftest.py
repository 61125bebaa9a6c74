"""Shared test isolation: logging configuration is process-wide state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _default_structlog() -> Iterator[None]:
    """Every test starts and ends with structlog's defaults and no bound context: a test that
    configures logging onto a captured stream must not leave later tests writing to it."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
