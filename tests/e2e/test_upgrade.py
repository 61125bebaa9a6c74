"""An upgrade end to end: this daemon continues the store 0.1.0 left
(tests/fixtures/store-0.1.0.sqlite) on the same chains, as if it had replaced the release in
place, and loses nothing of it."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import AsyncExitStack
from pathlib import Path

from quorumwatch.alerting.model import ALERT_NAMES
from quorumwatch.config import load_settings
from quorumwatch.simulator import parse_scenario, start_simulator
from tests.services import BrokerFactory, eventually, running_daemon, subscribed
from tests.store_builders import RELEASE_0_1_0_DESCRIPTION, raw, release_0_1_0_copy

PREFIX = "quorumwatch"
# Alerts this release judges that 0.1.0 did not: they may begin on the first polls.
NEW_SINCE_0_1_0 = frozenset(ALERT_NAMES) - {
    # 0.1.0's catalogue: ALERT_NAMES in src/quorumwatch/alert_events.py at 3e455e5.
    *("EntityCanControl", "EntityCanHalt", "ChainHalted", "LivenessMarginLow"),
    *("NakamotoCoefficientDropped", "ValidatorJailed", "JailStorm", "EndpointDown"),
    *("AllEndpointsDown", "SingleEndpoint", "DataStale"),
}


def _rows(path: Path, query: str) -> list[tuple[object, ...]]:
    with raw(path) as conn:
        return sorted(conn.execute(query).fetchall())


def _polled_since(path: Path, moment: float) -> bool:
    """Every chain's state was committed after `moment`, read without disturbing the daemon."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        observed = [at for (at,) in conn.execute("SELECT observed_at FROM chain_state")]
    finally:
        conn.close()
    return bool(observed) and min(observed) > moment


async def test_the_daemon_continues_a_0_1_0_store_losing_nothing(
    tmp_path: Path, broker_factory: BrokerFactory
) -> None:
    """Polling the chains 0.1.0 watched, now holding still on their last set, the daemon
    records no jail event (it resumed from the tracked validators), generates no event for an
    alert 0.1.0 judged (the firing alerts stay firing with their start, the pending ones
    pending since when 0.1.0 saw them begin), keeps every event and counter row, and delivers
    the 100 events 0.1.0 left in the outbox over MQTT, byte for byte and in order."""
    broker = broker_factory()
    store = release_0_1_0_copy(tmp_path / "quorumwatch.db")
    events = _rows(store, "SELECT * FROM events")
    counters = _rows(store, "SELECT * FROM counters")
    alerts_query = "SELECT chain, fingerprint, alert, pending_since, starts_at FROM alert_state"
    alerts = _rows(store, alerts_query)
    outbox = [payload for (_, payload) in _rows(store, "SELECT id, payload FROM outbox")]
    async with AsyncExitStack() as stack:
        chains = []
        for chain in RELEASE_0_1_0_DESCRIPTION["chains"]:
            last_set = RELEASE_0_1_0_DESCRIPTION["scenarios"][chain["name"]]["steps"][-1]
            scenario = parse_scenario({"name": chain["name"], "steps": [last_set]})
            simulator = await stack.enter_async_context(await start_simulator(scenario))
            endpoints = [{"name": "simulator", "url": simulator.base_url}]
            chains.append({**chain, "poll_interval_seconds": 0.2, "endpoints": endpoints})
        settings = load_settings(
            None,
            metrics={"listen": "127.0.0.1:0"},
            # The events are as old as the fixture: no retention may prune them, ever.
            storage={"path": str(store), "retention_days": 100 * 365},
            mqtt={"enabled": True, "host": "127.0.0.1", "port": broker.port},
            chains=chains,
        )
        live = await stack.enter_async_context(subscribed(broker.port, f"{PREFIX}/+/alerts/#"))
        started = time.time()
        async with running_daemon(settings):
            await live.wait(lambda s: len(s.messages) >= len(outbox), "the 0.1.0 outbox")
            # Polls 0.6 s in: each chain's earlier polls have had their alerts evaluated.
            await eventually(lambda: _polled_since(store, started + 0.6), "three polls")
    delivered = [m.payload for m in live.messages]
    assert delivered[: len(outbox)] == outbox
    # Beyond them, only alerts 0.1.0 did not have may begin: it judged all the others already.
    later = {json.loads(payload)["alert"] for payload in delivered[len(outbox) :]}
    assert later <= NEW_SINCE_0_1_0
    assert _rows(store, "SELECT * FROM outbox") == []
    # Migrations add columns (events' total_stake), empty for the rows 0.1.0 wrote.
    width = len(events[0])
    after = _rows(store, "SELECT * FROM events")
    assert [row[:width] for row in after] == events
    assert {value for row in after for value in row[width:]} == {None}
    kept = [
        row
        for row in _rows(store, "SELECT * FROM counters")
        if not any(f"events_{alert}_" in str(row[2]) for alert in NEW_SINCE_0_1_0)
    ]
    assert kept == counters
    assert [row for row in _rows(store, alerts_query) if row[2] not in NEW_SINCE_0_1_0] == alerts
