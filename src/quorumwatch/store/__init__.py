"""The embedded store (SQLite): one database, one repository per subsystem.

- `database`: `Store`, the connection (open, pragmas, migrations, read-only mode,
  transactions, `StoreError` and `NewerSchemaError`, close); `migrations`: the schema, append
  only.
- `jails`: tracked validator state, validator events and jail counters.
- `alerts`: alert state and the alert-event outbox.
- `counters`: typed keys of the shared `counters` table, and adding to and reading them.
- `asynchronous`: `AsyncStore`, which runs any repository function on the store's one worker
  thread: `await store.call(jails.commit_poll, chain, state, events)`.

Repository functions take the `Store` first and are called directly where blocking is fine
(the `jails` CLI): `jails.events(store, chain)`.
"""

from quorumwatch.store.alerts import OutboxEntry
from quorumwatch.store.asynchronous import AsyncStore
from quorumwatch.store.database import NewerSchemaError, Store, StoreError

__all__ = ["AsyncStore", "NewerSchemaError", "OutboxEntry", "Store", "StoreError"]
