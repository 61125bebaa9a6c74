"""The Ethereum source keeps the event loop free while it builds a large set."""

from __future__ import annotations

import threading
from typing import Any

import aiohttp
import pytest

from quorumwatch.chains.ethereum import attribution, source, status
from quorumwatch.config import ChainSettings
from quorumwatch.endpoints import EndpointPool
from quorumwatch.simulator.ethereum import start_ethereum_simulator


async def test_the_set_is_built_and_attributed_off_the_event_loop(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The set's columns and their attribution are made in a worker thread: for 1.1M
    validators that takes a second, during which /metrics and other chains would wait."""
    threads: list[threading.Thread] = []
    classify, attribute = status.classify, attribution.attribute

    def recorded_classify(*args: Any) -> Any:
        threads.append(threading.current_thread())
        return classify(*args)

    def recorded_attribute(*args: Any) -> Any:
        threads.append(threading.current_thread())
        return attribute(*args)

    monkeypatch.setattr(source, "classify", recorded_classify)
    monkeypatch.setattr(attribution, "attribute", recorded_attribute)
    async with await start_ethereum_simulator(validators=200) as simulator:
        settings = ChainSettings.model_validate(
            {
                "name": "ethereum",
                "kind": "ethereum",
                "endpoints": [{"name": "sim", "url": simulator.base_url}],
            }
        )
        pool = EndpointPool(
            settings.endpoints, session, max_response_bytes=settings.max_response_bytes
        )
        result = await source.EthereumSource(pool, settings).fetch()
    assert result.validator_set is not None, result.failures
    assert len(threads) == 2
    assert threading.main_thread() not in threads
