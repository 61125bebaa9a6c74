"""The embedded store (SQLite)."""

from quorumwatch.store.database import AsyncStore, JailCounters, OutboxEntry, Store, StoreError

__all__ = ["AsyncStore", "JailCounters", "OutboxEntry", "Store", "StoreError"]
