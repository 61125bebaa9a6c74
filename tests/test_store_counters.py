"""Counters: the typed keys map to exactly the (address, name) strings stored since schema 1,
a database written by the previous release reads back the same, and increments add up."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumwatch.alerting.model import AlertStatus
from quorumwatch.jails.events import EventKind
from quorumwatch.jails.statistics import UNJAIL_DELAY_BUCKETS, JailCounters
from quorumwatch.store import Store, counters, migrations
from quorumwatch.store import alerts as alert_store
from quorumwatch.store import jails as jail_store
from quorumwatch.store.counters import (
    AlertEvents,
    ChainJails,
    CounterKey,
    OutboxDropped,
    UnjailDelayBucket,
    UnjailDelayCount,
    UnjailDelaySum,
    ValidatorJails,
)
from tests.store_builders import event, raw, state

# Every (address, name) form the store has ever written, spelled out.
STORED: list[tuple[CounterKey, tuple[str, str]]] = [
    (ChainJails(), ("", "jails")),
    (ValidatorJails("0xab"), ("0xab", "jails")),
    (UnjailDelayBucket(0), ("", "unjail_delay_le_0")),
    (UnjailDelayBucket(60), ("", "unjail_delay_le_60")),
    (UnjailDelayBucket(300), ("", "unjail_delay_le_300")),
    (UnjailDelayBucket(900), ("", "unjail_delay_le_900")),
    (UnjailDelayBucket(1800), ("", "unjail_delay_le_1800")),
    (UnjailDelayBucket(3600), ("", "unjail_delay_le_3600")),
    (UnjailDelayBucket(7200), ("", "unjail_delay_le_7200")),
    (UnjailDelayBucket(21600), ("", "unjail_delay_le_21600")),
    (UnjailDelayBucket(86400), ("", "unjail_delay_le_86400")),
    (UnjailDelaySum(), ("", "unjail_delay_sum")),
    (UnjailDelayCount(), ("", "unjail_delay_count")),
    (AlertEvents("EntityCanHalt", AlertStatus.FIRING), ("", "events_EntityCanHalt_firing")),
    (
        AlertEvents("Alert_With_Underscore", AlertStatus.RESOLVED),
        ("", "events_Alert_With_Underscore_resolved"),
    ),
    (OutboxDropped(), ("", "outbox_dropped")),
]


@pytest.mark.parametrize(("key", "stored"), STORED, ids=[str(s) for _, s in STORED])
def test_keys_round_trip_to_the_stored_strings(key: CounterKey, stored: tuple[str, str]) -> None:
    """Each key is stored as exactly today's (address, name) and parses back to itself."""
    assert key.stored() == stored
    assert counters.parse(*stored) == key


def test_every_histogram_bucket_has_its_stored_name() -> None:
    """The buckets of UNJAIL_DELAY_BUCKETS are the nine stored bucket names, in order."""
    assert [UnjailDelayBucket(bound).stored()[1] for bound in UNJAIL_DELAY_BUCKETS] == [
        name for key, (_, name) in STORED if isinstance(key, UnjailDelayBucket)
    ]


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("", "unknown"),
        ("0xab", "unjail_delay_sum"),
        ("0xab", "events_EntityCanHalt_firing"),
        ("", "unjail_delay_le_60.0"),  # not the name bound 60 is stored as
        ("", "unjail_delay_le_sixty"),
        ("", "events__firing"),
        ("", "events_EntityCanHalt_pending"),
        ("", "events_EntityCanHalt"),
    ],
)
def test_rows_no_key_writes_parse_to_none(address: str, name: str) -> None:
    """A row no key writes is not read as any counter."""
    assert counters.parse(address, name) is None


def test_keys_that_would_not_survive_their_row_are_refused() -> None:
    """A validator counter needs an address; a bucket bound must read back from its name."""
    with pytest.raises(ValueError, match="address"):
        ValidatorJails("")
    with pytest.raises(ValueError, match="does not survive"):
        UnjailDelayBucket(1234567)  # `:g` keeps six digits


def _previous_release_database(path: Path) -> None:
    """A schema-2 database as the previous release wrote it: the migrations' SQL, then counter
    rows with the names and value types it stored."""
    with raw(path) as conn:
        for migration in migrations.MIGRATIONS[:2]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute("INSERT INTO chain_state VALUES ('hl', 1000.0)")
        conn.executemany(
            "INSERT INTO counters (chain, address, name, value) VALUES (?, ?, ?, ?)",
            [
                ("hl", "", "jails", 3),
                ("hl", "0xa", "jails", 2),
                ("hl", "0xb", "jails", 1),
                # Delays 0.5, 300 and 10**6: cumulative buckets (none yet at 0), a REAL sum.
                ("hl", "", "unjail_delay_le_60", 1),
                ("hl", "", "unjail_delay_le_300", 2),
                ("hl", "", "unjail_delay_le_900", 2),
                ("hl", "", "unjail_delay_le_1800", 2),
                ("hl", "", "unjail_delay_le_3600", 2),
                ("hl", "", "unjail_delay_le_7200", 2),
                ("hl", "", "unjail_delay_le_21600", 2),
                ("hl", "", "unjail_delay_le_86400", 2),
                ("hl", "", "unjail_delay_sum", 1000300.5),
                ("hl", "", "unjail_delay_count", 3),
                ("hl", "", "events_EntityCanHalt_firing", 4),
                ("hl", "", "events_Alert_With_Underscore_resolved", 2),
                ("other", "", "events_EntityCanHalt_firing", 1),
                ("other", "0xc", "jails", 7),
                ("hl", "", "outbox_dropped", 5),
                ("other", "", "outbox_dropped", 1),
            ],
        )


def _rows(path: Path) -> list[tuple[object, ...]]:
    with raw(path) as conn:
        return conn.execute(
            "SELECT chain, address, name, value, typeof(value) FROM counters ORDER BY 1, 2, 3"
        ).fetchall()


@pytest.mark.parametrize("read_only", [True, False])
def test_a_database_of_the_previous_release_reads_the_same(db: Path, read_only: bool) -> None:
    """Counters written by the previous release read back as the same jail counters, event
    counts and drop count, read-only (once migrated) or not, and opening leaves every row as
    it was."""
    _previous_release_database(db)
    if read_only:
        Store(db).close()  # a read-only store never migrates
    before = _rows(db)
    with Store(db, read_only=read_only) as store:
        assert jail_store.counters(store, "hl") == JailCounters(
            jails=3,
            validator_jails={"0xa": 2, "0xb": 1},
            unjail_delay_bucket_counts=(0, 1, 2, 2, 2, 2, 2, 2, 2),
            unjail_delay_sum=1000300.5,
            unjail_delay_count=3,
        )
        assert dict(jail_store.counters(store, "other").validator_jails) == {"0xc": 7}
        assert alert_store.events_generated(store) == {
            ("Alert_With_Underscore", AlertStatus.RESOLVED): 2,
            ("EntityCanHalt", AlertStatus.FIRING): 5,
        }
        assert alert_store.outbox_dropped(store) == 6
        assert alert_store.alert_chains(store) == ["hl", "other"]
    assert _rows(db) == before


def test_new_counts_add_to_the_previous_release_rows(db: Path) -> None:
    """A poll committed on a database of the previous release adds to its rows in place,
    under the same names: counts stay INTEGER and the delay sum REAL."""
    _previous_release_database(db)
    before = {row[:3]: row[3:] for row in _rows(db)}
    poll = [
        event("j", chain="hl", address="0xa"),
        event("u", EventKind.UNJAILED, chain="hl", address="0xb", unjail_delay_seconds=120.0),
    ]
    with Store(db) as store:
        jail_store.commit_poll(store, "hl", state(2000.0), poll)
    after = {row[:3]: row[3:] for row in _rows(db)}
    assert after.keys() == before.keys()
    changed = {key: value for key, value in after.items() if before[key] != value}
    assert changed == {
        ("hl", "", "jails"): (4, "integer"),
        ("hl", "0xa", "jails"): (3, "integer"),
        **{
            ("hl", "", f"unjail_delay_le_{bound}"): (3, "integer")
            for bound in (300, 900, 1800, 3600, 7200, 21600, 86400)
        },
        ("hl", "", "unjail_delay_sum"): (1000420.5, "real"),
        ("hl", "", "unjail_delay_count"): (4, "integer"),
    }


def test_add_read_chain_and_totals(db: Path) -> None:
    """`add` sums increments into rows per chain; `read_chain` gives one chain's counters by
    key; `totals` sums one kind over chains, leaving other kinds out."""
    firing = AlertEvents("A", AlertStatus.FIRING)
    with Store(db) as store:
        with store.transaction("add") as conn:
            counters.add(conn, "hl", {ChainJails(): 2, firing: 1, UnjailDelaySum(): 0.5})
            counters.add(conn, "other", {firing: 3, OutboxDropped(): 1})
        with store.transaction("add again") as conn:
            counters.add(conn, "hl", {ChainJails(): 1, ValidatorJails("0xa"): 1})
        with store.reading("read") as conn:
            assert counters.read_chain(conn, "hl") == {
                ChainJails(): 3,
                ValidatorJails("0xa"): 1,
                firing: 1,
                UnjailDelaySum(): 0.5,
            }
            assert counters.read_chain(conn, "never") == {}
            assert counters.totals(conn, AlertEvents) == {firing: 4}
            assert counters.totals(conn, ChainJails) == {ChainJails(): 3}
            assert counters.totals(conn, ValidatorJails) == {ValidatorJails("0xa"): 1}
            assert counters.totals(conn, UnjailDelayBucket) == {}
