"""The database: one SQLite connection, opened, configured, migrated, and used in transactions.

One database file at `[storage].path`, in WAL mode so that the `jails` CLI can read it while
the daemon writes. Every write is one transaction (`transaction`); `synchronous=FULL` makes a
committed transaction durable across kill -9 and power loss. A read-only `Store` never
migrates, refuses a schema other than the latest and creates no file. A schema newer than
this code knows (a downgrade) is refused before anything is written (`NewerSchemaError`).
Every SQLite or OS failure becomes a `StoreError` of one line naming the database and what
failed.

What is stored, and how, is the repositories' job (`store.jails`, `store.alerts`, over the
shared `store.counters`); this module knows no table but the schema version.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

from quorumwatch import __version__
from quorumwatch.store import migrations

__all__ = ["DEFAULT_MAX_OUTBOX_EVENTS", "NewerSchemaError", "Store", "StoreError"]

log = structlog.get_logger(__name__)

BUSY_TIMEOUT_MS = 5000
# The WAL file is truncated back to this size after a checkpoint that emptied it.
JOURNAL_SIZE_LIMIT_BYTES = 32 * 1024 * 1024
# The default outbox bound (`[mqtt].max_outbox_events`): ~50 MB of typical event JSON.
DEFAULT_MAX_OUTBOX_EVENTS = 100_000


class StoreError(Exception):
    """A storage failure, in one line naming the database and what failed."""


class NewerSchemaError(StoreError):
    """The database was written by a later release: its schema is newer than this code knows.
    Nothing was written to it."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _create_private_file(path: Path) -> None:
    """Create `path` (and its parent) with mode 0600 if missing; leave an existing file."""
    if not path.parent.is_dir():
        # Said aloud: a mistyped storage.path would otherwise start a history from nothing.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        log.info("storage directory created", directory=str(path.parent))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)  # umask-independent
    finally:
        os.close(fd)


class Store:
    """Synchronous; one connection; use from one thread at a time (AsyncStore does that).

    The connection is bound to the thread that opened it (sqlite3's `check_same_thread`).
    `max_outbox_events` bounds the alert outbox (`store.alerts.commit_alerts` enforces it).
    """

    def __init__(
        self,
        path: Path,
        *,
        read_only: bool = False,
        max_outbox_events: int = DEFAULT_MAX_OUTBOX_EVENTS,
    ) -> None:
        if max_outbox_events < 1:
            raise ValueError(f"max_outbox_events must be at least 1, got {max_outbox_events}")
        self.path = path
        self.read_only = read_only
        self.max_outbox_events = max_outbox_events
        # Outbox drops not logged yet, and when the next warning may be (time.monotonic()):
        # `store.alerts` logs the first drop at once and later ones summed once a minute.
        self.outbox_drops_not_logged = 0
        self.next_outbox_drop_warning = float("-inf")
        self._conn: sqlite3.Connection | None = None
        with self._errors("open"):
            if read_only and not path.is_file():
                raise StoreError(f"{path}: open failed: no such database file")
            if not read_only:
                _create_private_file(path)
            self._conn = self._connect()
            try:
                self._configure()
            except BaseException:
                self._conn.close()
                self._conn = None
                raise

    # --- using it -----------------------------------------------------------------------

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection; StoreError once closed."""
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    @contextmanager
    def reading(self, what: str) -> Iterator[sqlite3.Connection]:
        """The connection, outside any transaction; a failure is a StoreError saying `what`."""
        with self._errors(what):
            yield self.connection

    @contextmanager
    def snapshot(self, what: str) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same committed state."""
        with self._errors(what):
            conn = self.connection
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")  # nothing was written; ends the read snapshot

    @contextmanager
    def transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any exception; an
        SQLite failure is a StoreError saying `what`, any other exception propagates as is."""
        with self._errors(what), self._transaction() as conn:
            yield conn

    # --- opening ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """The one place a connection is made (tests subclass it to trace statements)."""
        if self.read_only:
            # No -wal file: no writer has the database open, and everything committed is in
            # the file itself. Read it as immutable then, which needs no -shm or -wal beside
            # it: a reader without write access to the directory can read, and nothing is
            # left there (owned by root, say) for the daemon to trip over.
            wal = self.path.with_name(self.path.name + "-wal")
            query = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
            target: str | Path = (
                "file:" + urllib.parse.quote(str(self.path.absolute())) + "?" + query
            )
        else:
            target = self.path
        # isolation_level=None: no implicit transactions; every write says BEGIN itself.
        return sqlite3.connect(
            target,
            uri=self.read_only,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )

    def _configure(self) -> None:
        conn = self.connection
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Before any pragma that writes (auto_vacuum, journal_mode): a newer schema is left
        # exactly as it is.
        version = self._user_version()
        self._check_known(version)
        if self.read_only:
            conn.execute("PRAGMA query_only = ON")
            if version != migrations.SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version}, this quorumwatch needs "
                    f"{migrations.SCHEMA_VERSION}; run the daemon once to migrate it"
                )
            return
        # auto_vacuum must be chosen before the first table exists (a no-op afterwards).
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: open failed: cannot enable WAL (mode {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
        self._migrate()

    def _user_version(self) -> int:
        version: int = self.connection.execute("PRAGMA user_version").fetchone()[0]
        return version

    def _check_known(self, version: int) -> None:
        if version > migrations.SCHEMA_VERSION:
            raise NewerSchemaError(
                f"{self.path}: schema version {version} is newer than "
                f"{migrations.SCHEMA_VERSION}, the latest quorumwatch {__version__} knows "
                "(a downgrade?); the file is left as it is: run the release that wrote it "
                "or a later one"
            )

    def _migrate(self) -> None:
        while True:
            with self._transaction() as conn:
                # Re-read inside the write lock: another process may have migrated meanwhile.
                version = self._user_version()
                self._check_known(version)
                if version == migrations.SCHEMA_VERSION:
                    return
                for statement in migrations.MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(_one_line(f"{self.path}: {what} failed: {exc}")) from exc
        except OSError as exc:
            raise StoreError(
                _one_line(f"{self.path}: {what} failed: {exc.strerror or exc}")
            ) from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.connection
        # IMMEDIATE: take the write lock up front, so busy_timeout applies at BEGIN and a
        # transaction never fails half-way on a lock upgrade.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # --- closing ------------------------------------------------------------------------

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with self._errors("close"):
            if not self.read_only:
                conn.execute("PRAGMA optimize")
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
