"""AsyncStore: any store function through `call`, every statement on one worker thread that is
not the event loop's."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from quorumwatch.alerting.model import AlertStatus
from quorumwatch.jails.events import EventKind
from quorumwatch.store import AsyncStore, Store, StoreError
from quorumwatch.store import alerts as alert_store
from quorumwatch.store import jails as jail_store
from tests.builders import alert_event
from tests.store_builders import (
    CHAIN,
    T0,
    alert_state,
    event,
    state,
    tracked,
)

# --- AsyncStore --------------------------------------------------------------------------


async def test_async_store_runs_all_sqlite_on_one_worker_thread(db: Path) -> None:
    """Every jail function works through `call` from the loop, and every SQL statement (open,
    migrate, reads, writes, close) runs on one single thread that is not the event loop's."""
    threads: set[int] = set()
    statements = 0

    def trace(_sql: str) -> None:
        nonlocal statements
        statements += 1
        threads.add(threading.get_ident())

    class TracedStore(Store):
        def _connect(self) -> sqlite3.Connection:
            conn = super()._connect()
            conn.set_trace_callback(trace)
            return conn

    class TracedAsyncStore(AsyncStore):
        store_class = TracedStore

    store = await TracedAsyncStore.open(db)
    async with store:
        polls = [
            store.call(
                jail_store.commit_poll,
                CHAIN,
                state(T0 + i, tracked(1)),
                [event(f"j{i}", observed_at=T0 + i)],
            )
            for i in range(20)
        ]
        assert [len(inserted) for inserted in await asyncio.gather(*polls)] == [1] * 20
        assert (await store.call(jail_store.counters, CHAIN)).jails == 20
        assert await store.call(jail_store.count_events, CHAIN, EventKind.JAILED, T0 + 10) == 10
        assert (
            len(await store.call(jail_store.events, CHAIN, since=T0 + 15, kinds={EventKind.JAILED}))
            == 5
        )
        assert await store.call(jail_store.prune, T0 + 5) == 5
        assert await store.call(jail_store.chains) == [CHAIN]
        loaded = await store.call(jail_store.load_state, CHAIN)
        assert loaded is not None
        assert loaded.observed_at >= T0
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.call(jail_store.chains)

    assert statements > 30
    assert len(threads) == 1
    assert threading.get_ident() not in threads

    threads.clear()
    reader = await TracedAsyncStore.open(db, read_only=True)
    assert (await reader.call(jail_store.counters, CHAIN)).jails == 20
    await reader.close()
    assert len(threads) == 1  # its own worker, again not the loop's thread
    assert threading.get_ident() not in threads


async def test_async_open_failure_raises_store_error(tmp_path: Path) -> None:
    """AsyncStore.open on a missing database in read_only mode raises StoreError."""
    with pytest.raises(StoreError, match="no such database file"):
        await AsyncStore.open(tmp_path / "none.db", read_only=True)


async def test_async_store_alert_methods(db: Path) -> None:
    """Every alert and outbox function returns through `call` what it returns directly."""
    async with await AsyncStore.open(db) as store:
        await store.call(
            alert_store.commit_alerts,
            CHAIN,
            [alert_state(), alert_state(entity="e2", firing=False)],
            [alert_event("f1")],
        )
        assert len(await store.call(alert_store.load_alert_state, CHAIN)) == 2
        assert await store.call(alert_store.firing, CHAIN) == [alert_state()]
        assert await store.call(alert_store.alert_chains) == [CHAIN]
        entries = await store.call(alert_store.outbox_peek, 10)
        assert [e.event_id for e in entries] == ["f1"]
        assert (await store.call(alert_store.outbox_stats, time.time()))[0] == 1
        assert await store.call(alert_store.events_generated) == {
            ("EntityCanHalt", AlertStatus.FIRING): 1
        }
        await store.call(alert_store.outbox_delete, entries[0].id)
        assert await store.call(alert_store.outbox_peek, 10) == []


async def test_async_store_passes_the_bound_and_reads_the_drop_count(db: Path) -> None:
    """AsyncStore.open(max_outbox_events=...) bounds the outbox; commit_alerts returns the
    number dropped and outbox_dropped the total."""
    async with await AsyncStore.open(db, max_outbox_events=1) as store:
        assert await store.call(alert_store.commit_alerts, CHAIN, [], [alert_event("a1")]) == 0
        assert (
            await store.call(alert_store.commit_alerts, CHAIN, [], [alert_event("a2", entity="e2")])
            == 1
        )
        assert await store.call(alert_store.outbox_dropped) == 1
        assert [e.event_id for e in await store.call(alert_store.outbox_peek, 10)] == ["a2"]
