"""`AsyncStore`: a `Store` used from the event loop, every call on its one worker thread.

Any store function (a repository function whose first parameter is the `Store`) runs through
`call`, type-checked against the function's own parameters:

    inserted = await store.call(jails.commit_poll, chain, state, events)

so blocking SQLite never runs on the event loop, and the connection is only ever used from
the thread that opened it. Calls run one at a time, in the order they were made.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Concatenate, ParamSpec, Self, TypeVar

from quorumwatch.store.database import DEFAULT_MAX_OUTBOX_EVENTS, Store, StoreError

__all__ = ["AsyncStore"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class AsyncStore:
    """Runs every call on one dedicated worker thread (a ThreadPoolExecutor(max_workers=1))."""

    store_class: ClassVar[type[Store]] = Store

    def __init__(self, store: Store, executor: ThreadPoolExecutor) -> None:
        """Use `AsyncStore.open`: `store` must have been opened on `executor`'s thread."""
        self._store = store
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        read_only: bool = False,
        max_outbox_events: int = DEFAULT_MAX_OUTBOX_EVENTS,
    ) -> Self:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quorumwatch-store")
        loop = asyncio.get_running_loop()
        opener = functools.partial(
            cls.store_class, path, read_only=read_only, max_outbox_events=max_outbox_events
        )
        try:
            store = await loop.run_in_executor(executor, opener)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(store, executor)

    @property
    def path(self) -> Path:
        return self._store.path

    async def call(
        self, fn: Callable[Concatenate[Store, _P], _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """`fn(store, *args, **kwargs)` on the worker thread; StoreError once closed."""
        if self._closed:
            raise StoreError(f"{self._store.path}: the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(fn, self._store, *args, **kwargs)
        )

    async def close(self) -> None:
        """Close after the calls already queued have run; idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._store.close)
        finally:
            self._executor.shutdown(wait=False)  # the worker is idle: it exits on its own

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
