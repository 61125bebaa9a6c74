"""The `counters` table: typed keys for its rows, and one helper to add to and read them.

Counters are monotonic and kept across restarts and event pruning. A row is (chain, address,
name, value): `address` is a validator's for per-validator counters and "" for chain-level
ones. Each key class maps to exactly one (address, name) form, the strings written since
schema 1 (see `stored`), and back (`parse`); nothing else in the store spells a counter name.

| key | address | name |
| --- | --- | --- |
| `ChainJails()` | "" | `jails` |
| `ValidatorJails(address)` | the validator's | `jails` |
| `UnjailDelayBucket(bound)` | "" | `unjail_delay_le_<bound:g>` |
| `UnjailDelaySum()` | "" | `unjail_delay_sum` |
| `UnjailDelayCount()` | "" | `unjail_delay_count` |
| `AlertEvents(alert, status)` | "" | `events_<alert>_<status>` |
| `OutboxDropped()` | "" | `outbox_dropped` |

`value` has no declared type: integer counts stay INTEGER, the delay sum REAL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from quorumwatch.alerting.model import AlertStatus

__all__ = [
    "CHAIN_LEVEL",
    "AlertEvents",
    "ChainJails",
    "CounterKey",
    "OutboxDropped",
    "UnjailDelayBucket",
    "UnjailDelayCount",
    "UnjailDelaySum",
    "ValidatorJails",
    "add",
    "parse",
    "read_chain",
    "totals",
]

CHAIN_LEVEL = ""  # counters.address of chain-level counters


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern (ESCAPE '!') matching names that start with `prefix` literally."""
    return prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


@dataclass(frozen=True, slots=True)
class _Fixed:
    """A chain-level counter with one fixed name."""

    NAME: ClassVar[str]

    def stored(self) -> tuple[str, str]:
        """(address, name) as in the `counters` table."""
        return CHAIN_LEVEL, self.NAME

    @classmethod
    def match(cls) -> tuple[str, tuple[str, ...]]:
        """An SQL condition on `counters` selecting the rows of this kind, and its params."""
        return "address = ? AND name = ?", (CHAIN_LEVEL, cls.NAME)


@dataclass(frozen=True, slots=True)
class ChainJails(_Fixed):
    """Jail events of the chain, inferred included."""

    NAME: ClassVar[str] = "jails"


@dataclass(frozen=True, slots=True)
class UnjailDelaySum(_Fixed):
    """Sum of the unjail delays (seconds) of the chain's unjail events that had one."""

    NAME: ClassVar[str] = "unjail_delay_sum"


@dataclass(frozen=True, slots=True)
class UnjailDelayCount(_Fixed):
    """Number of the chain's unjail events with an unjail delay."""

    NAME: ClassVar[str] = "unjail_delay_count"


@dataclass(frozen=True, slots=True)
class OutboxDropped(_Fixed):
    """Alert events of the chain dropped from the full outbox."""

    NAME: ClassVar[str] = "outbox_dropped"


@dataclass(frozen=True, slots=True)
class ValidatorJails:
    """Jail events of one validator."""

    address: str

    def __post_init__(self) -> None:
        if self.address == CHAIN_LEVEL:
            raise ValueError("a validator's counter needs its address")

    def stored(self) -> tuple[str, str]:
        return self.address, ChainJails.NAME

    @classmethod
    def match(cls) -> tuple[str, tuple[str, ...]]:
        return "address != ? AND name = ?", (CHAIN_LEVEL, ChainJails.NAME)


@dataclass(frozen=True, slots=True)
class UnjailDelayBucket:
    """Unjail delays at most `bound` seconds: one cumulative histogram bucket."""

    bound: float
    PREFIX: ClassVar[str] = "unjail_delay_le_"

    def __post_init__(self) -> None:
        if float(f"{self.bound:g}") != self.bound:
            raise ValueError(f"bucket bound {self.bound!r} does not survive its name")

    def stored(self) -> tuple[str, str]:
        return CHAIN_LEVEL, f"{self.PREFIX}{self.bound:g}"

    @classmethod
    def match(cls) -> tuple[str, tuple[str, ...]]:
        return "address = ? AND name LIKE ? ESCAPE '!'", (CHAIN_LEVEL, _like_prefix(cls.PREFIX))


@dataclass(frozen=True, slots=True)
class AlertEvents:
    """Alert events generated (committed to the outbox) per alert and status."""

    alert: str
    status: AlertStatus
    PREFIX: ClassVar[str] = "events_"

    def stored(self) -> tuple[str, str]:
        # The status never contains "_", so the name splits back at its last "_".
        return CHAIN_LEVEL, f"{self.PREFIX}{self.alert}_{self.status}"

    @classmethod
    def match(cls) -> tuple[str, tuple[str, ...]]:
        return "address = ? AND name LIKE ? ESCAPE '!'", (CHAIN_LEVEL, _like_prefix(cls.PREFIX))


CounterKey = (
    ChainJails
    | ValidatorJails
    | UnjailDelayBucket
    | UnjailDelaySum
    | UnjailDelayCount
    | AlertEvents
    | OutboxDropped
)

_FIXED: Mapping[str, CounterKey] = {
    key.NAME: key for key in (ChainJails(), UnjailDelaySum(), UnjailDelayCount(), OutboxDropped())
}


def parse(address: str, name: str) -> CounterKey | None:
    """The key stored as exactly (address, name); None for a row no key writes."""
    key = _parse(address, name)
    return key if key is not None and key.stored() == (address, name) else None


def _parse(address: str, name: str) -> CounterKey | None:
    if address != CHAIN_LEVEL:
        return ValidatorJails(address) if name == ChainJails.NAME else None
    if name in _FIXED:
        return _FIXED[name]
    if name.startswith(UnjailDelayBucket.PREFIX):
        try:
            return UnjailDelayBucket(float(name.removeprefix(UnjailDelayBucket.PREFIX)))
        except ValueError:
            return None
    if name.startswith(AlertEvents.PREFIX):
        alert, _, status = name.removeprefix(AlertEvents.PREFIX).rpartition("_")
        if alert and status in AlertStatus.__members__.values():
            return AlertEvents(alert, AlertStatus(status))
    return None


def add(conn: sqlite3.Connection, chain: str, increments: Mapping[CounterKey, float]) -> None:
    """Add each increment to its counter of `chain`, inside the caller's transaction."""
    conn.executemany(
        "INSERT INTO counters (chain, address, name, value) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (chain, address, name) DO UPDATE SET value = value + excluded.value",
        [(chain, *key.stored(), amount) for key, amount in increments.items()],
    )


def read_chain(conn: sqlite3.Connection, chain: str) -> dict[CounterKey, float]:
    """Every counter of `chain` (those never incremented are absent)."""
    rows = conn.execute(
        "SELECT address, name, value FROM counters WHERE chain = ?", (chain,)
    ).fetchall()
    return {key: value for address, name, value in rows if (key := parse(address, name))}


def totals(conn: sqlite3.Connection, kind: type[CounterKey]) -> dict[CounterKey, float]:
    """The counters of one kind (a key class), each summed over all chains; those never
    incremented are absent."""
    condition, params = kind.match()
    rows = conn.execute(
        f"SELECT address, name, sum(value) FROM counters WHERE {condition} GROUP BY address, name",
        params,
    ).fetchall()
    summed: dict[CounterKey, float] = {}
    for address, name, total in rows:
        key = parse(address, name)
        if isinstance(key, kind):
            summed[key] = total
    return summed
