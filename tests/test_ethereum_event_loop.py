"""The Ethereum source keeps the event loop free while it builds a large set."""

from __future__ import annotations

import threading
from typing import Any

import aiohttp
import pytest

from quorumwatch.chains.ethereum import attribution, source
from quorumwatch.config import ChainSettings
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ReportBoard
from quorumwatch.simulator.ethereum import start_ethereum_simulator


async def test_the_set_is_built_and_attributed_off_the_event_loop(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validator objects and their attribution are made in a worker thread: for 1.1M
    validators that takes seconds, during which /metrics and other chains would wait."""
    threads: list[threading.Thread] = []
    build, attribute = source._validators, attribution.attribute

    def recorded_build(*args: Any) -> Any:
        threads.append(threading.current_thread())
        return build(*args)

    def recorded_attribute(*args: Any) -> Any:
        threads.append(threading.current_thread())
        return attribute(*args)

    monkeypatch.setattr(source, "_validators", recorded_build)
    monkeypatch.setattr(source, "attribute", recorded_attribute)
    async with await start_ethereum_simulator(validators=200) as simulator:
        settings = ChainSettings.model_validate(
            {
                "name": "ethereum",
                "kind": "ethereum",
                "endpoints": [{"name": "sim", "url": simulator.base_url}],
            }
        )
        report = await ChainMonitor(settings, session, ReportBoard()).poll_once()
    assert report.up, report.failures
    assert len(threads) == 2
    assert threading.main_thread() not in threads
