"""The per-chain evaluator: what it commits and tells its listeners, here when its chain is
watched no more."""

from __future__ import annotations

from pathlib import Path

from quorumwatch.alerting.evaluator import ChainAlerts
from quorumwatch.alerting.model import AlertCommit, AlertStatus
from quorumwatch.store import AsyncStore
from quorumwatch.store import alerts as alert_store
from tests.builders import FakeClock, chain_settings, report, validator


async def test_retiring_a_chain_resolves_its_firing_alerts_and_drops_pending_ones(
    tmp_path: Path,
) -> None:
    """After a poll that fires EntityCanHalt (twice) and EntityHasMajority and leaves
    EndpointDown and SingleEndpoint pending, retiring the chain commits an empty state and one
    resolved event per firing alert (after the firing ones in the outbox), and tells the
    listeners so."""
    settings = chain_settings(endpoints=2)
    commits: list[AlertCommit] = []
    clock = FakeClock(1000.0)
    async with await AsyncStore.open(tmp_path / "q.db") as store:
        alerts = ChainAlerts(settings, store, [commits.append], clock=clock)
        polled = report(
            [validator(1, 600), validator(2, 400)], settings=settings, endpoints_up=(True, False)
        )
        fired = await alerts.evaluate(polled)
        (evaluated,) = commits
        assert {s.alert for s in evaluated.states if not s.firing} == {
            "EndpointDown",
            "SingleEndpoint",
        }
        clock.now = 1060.0
        resolved = await alerts.retire()
        left = await store.call(alert_store.load_alert_state, settings.name)
        outbox = await store.call(alert_store.outbox_peek, 100)
    firing = {(e.alert, e.fingerprint) for e in fired}
    assert sorted(alert for alert, _ in firing) == [
        "EntityCanHalt",
        "EntityCanHalt",
        "EntityHasMajority",
    ]
    assert {(e.alert, e.fingerprint) for e in resolved} == firing
    assert all(e.status is AlertStatus.RESOLVED and e.ends_at == 1060.0 for e in resolved)
    assert left == []
    assert [entry.event_id for entry in outbox] == [e.event_id for e in (*fired, *resolved)]
    assert commits[1] == AlertCommit(settings.name, (), tuple(resolved), 0)
