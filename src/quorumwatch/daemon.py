"""Wiring: one asyncio process polling every chain and serving /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import structlog
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from quorumwatch import __version__
from quorumwatch.alerting.evaluator import AlertListener, ChainAlerts
from quorumwatch.alerting.sinks.alertmanager import AlertmanagerPusher
from quorumwatch.alerting.sinks.mqtt import MqttPublisher
from quorumwatch.alerting.sinks.status import SinkStatusKeeper
from quorumwatch.config import ConfigError, lists_subnets
from quorumwatch.endpoints import http_session
from quorumwatch.exporter.collector import QuorumwatchCollector
from quorumwatch.exporter.server import start_metrics_server
from quorumwatch.exporter.state import state_document
from quorumwatch.jails.tracker import JailTracker
from quorumwatch.memory import return_large_blocks_to_the_system
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ReportBoard
from quorumwatch.store import AsyncStore, StoreError

if TYPE_CHECKING:
    from quorumwatch.chains.bittensor.subnets import SubnetWatch
    from quorumwatch.config import ChainSettings, Settings

log = structlog.get_logger(__name__)


def _metrics_tls(settings: Settings) -> ssl.SSLContext | None:
    metrics = settings.metrics
    if metrics.tls_cert_file is None or metrics.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(metrics.tls_cert_file, metrics.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"metrics.tls_cert_file/tls_key_file: {exc}") from None
    return context


def _metrics_credentials(settings: Settings) -> tuple[str, str] | None:
    metrics = settings.metrics
    if metrics.basic_auth_username is None or metrics.basic_auth_password is None:
        return None
    return metrics.basic_auth_username, metrics.basic_auth_password.get_secret_value()


GIL_SWITCH_INTERVAL_SECONDS = 0.001


def share_the_gil_finely() -> None:
    """Let a thread waiting for the GIL have it after 1 ms instead of 5 ms.

    While a worker thread computes (a poll's decoding and analysis, a /metrics rendering), the
    event loop waits for the GIL each time it wakes: at 5 ms a wait, answering a scrape took
    several of them."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)


def freeze_startup_heap() -> None:
    """Exempt everything created at start-up from future garbage collections.

    Imports leave hundreds of thousands of long-lived objects; without this, every full
    collection re-traverses them and stalls the event loop for 20-30 ms.
    """
    gc.collect()
    gc.freeze()


class WatchedChains:
    """The chains the daemon polls, for what renders them: the status document reads `settings`
    at each request, the collector `max_series` and `without_validator_series` at each
    scrape. Subnets of a chain of "all" subnets come and go while the daemon runs."""

    def __init__(self, configured: Sequence[ChainSettings]) -> None:
        self._configured = {chain.name: index for index, chain in enumerate(configured)}
        # Where each watched chain goes in `settings`: configuration order, each subnet of a
        # chain of "all" subnets in its chain's place, by netuid.
        self._places: dict[str, tuple[int, int]] = {}
        self._chains: dict[str, ChainSettings] = {}
        self.settings: tuple[ChainSettings, ...] = ()
        # Per chain ever watched, never shrinking: the collector renders only the chains on
        # the board, and a scrape in flight may still hold the last report of one just gone.
        self.max_series: dict[str, int] = {}
        self.without_validator_series: set[str] = set()

    def add(self, chain: ChainSettings, listed_by: ChainSettings | None = None) -> None:
        """Watch `chain`: one configured, or one of the subnets `listed_by` lists."""
        if listed_by is None:
            self._places[chain.name] = (self._configured[chain.name], 0)
        else:
            assert chain.bittensor is not None
            assert chain.bittensor.netuids != "all"
            self._places[chain.name] = (
                self._configured[listed_by.name],
                chain.bittensor.netuids[0],
            )
        self._chains[chain.name] = chain
        self.max_series[chain.name] = chain.max_validator_series
        if not chain.validator_series:
            self.without_validator_series.add(chain.name)
        self._order()

    def remove(self, name: str) -> None:
        del self._chains[name], self._places[name]
        self._order()

    def _order(self) -> None:
        self.settings = tuple(sorted(self._chains.values(), key=lambda c: self._places[c.name]))


def build_registry(board: ReportBoard, chains: WatchedChains) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        QuorumwatchCollector(
            board, chains.max_series, without_validator_series=chains.without_validator_series
        )
    )
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


async def run_daemon(
    settings: Settings,
    stop: asyncio.Event,
    *,
    on_listening: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.time,
    listen_name: str = "metrics.listen",
) -> None:
    """Poll every chain on its own schedule and serve /metrics and the status page until
    `stop` is set. The subnets of a chain of `netuids = "all"` are listed first (a chain
    whose subnets cannot be listed raises SubnetListError before anything starts), then
    again while the daemon runs.

    `listen_name` is what the user gave the listen address as, for the error when it is taken.
    """
    async with http_session() as session:
        listed = {
            chain.name: await _list_subnets(chain, session)
            for chain in settings.chains
            if lists_subnets(chain)
        }
        board = ReportBoard()
        watched = WatchedChains(settings.chains)
        host, port = settings.metrics.host_port
        try:
            runner, bound_port = await start_metrics_server(
                build_registry(board, watched),
                host,
                port,
                state=lambda: state_document(board, watched.settings, clock()),
                version=lambda: (board.reports, board.sinks, board.firing, board.subnet_listings),
                ssl_context=_metrics_tls(settings),
                credentials=_metrics_credentials(settings),
            )
        except OSError as exc:
            raise ConfigError(f"{listen_name} {settings.metrics.listen}: {exc.strerror}") from None
        # The port alone: metrics.listen names the host, and no log line carries a host:port.
        polled = sum(len(listed[c.name]) if c.name in listed else 1 for c in settings.chains)
        log.info("serving metrics", port=bound_port, chains=polled)
        if on_listening is not None:
            on_listening(bound_port)
        try:
            store = await AsyncStore.open(
                settings.storage.path, max_outbox_events=settings.mqtt.max_outbox_events
            )
        except StoreError as exc:
            await runner.cleanup()
            raise ConfigError(f"storage.path: {exc}") from None  # the message names the file
        return_large_blocks_to_the_system()
        share_the_gil_finely()
        freeze_startup_heap()
        try:
            sinks = _Sinks(settings, store, session, board, clock)
            polls = _Polls(
                settings,
                watched,
                store,
                session,
                board=board,
                listeners=sinks.listeners,
                clock=clock,
            )
            watches = []
            for chain in settings.chains:
                if chain.name in listed:
                    watch = polls.subnet_watch(chain, listed[chain.name])
                    for subnet in watch.chains:
                        polls.start(subnet, listed_by=chain)
                    watches.append(asyncio.create_task(watch.run(), name=f"subnets:{chain.name}"))
                else:
                    polls.start(chain)
            sinks.start()
            try:
                await stop.wait()
            finally:
                # Subnet watches first, so no poll starts or stops meanwhile; then polls, so
                # no event is generated after the sinks' last delivery.
                await _cancel(watches)
                await polls.close()
                await sinks.close(settings.mqtt.shutdown_flush_seconds)
        finally:
            await store.close()  # last: the sinks' flush reads and deletes outbox rows
            await runner.cleanup()
            log.info("stopped")


async def _list_subnets(chain: ChainSettings, session: aiohttp.ClientSession) -> list[int]:
    # Imported only for a chain of "all" subnets: the Bittensor decoder is heavy to load.
    from quorumwatch.chains.bittensor.subnets import list_subnets

    return await list_subnets(chain, session)


async def _cancel(tasks: Collection[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass(frozen=True, slots=True)
class _Poll:
    task: asyncio.Task[None]  # the chain's ChainMonitor.run
    alerts: ChainAlerts


class _Polls:
    """Every watched chain's poll: its monitor, jail tracker and alert evaluator, started with
    the daemon or when its subnet is listed, and stopped with the daemon or when its subnet is
    no longer listed."""

    def __init__(
        self,
        settings: Settings,
        watched: WatchedChains,
        store: AsyncStore,
        session: aiohttp.ClientSession,
        *,
        board: ReportBoard,
        listeners: Sequence[AlertListener],
        clock: Callable[[], float],
    ) -> None:
        self._retention_days = settings.storage.retention_days
        self._watched = watched
        self._store = store
        self._session = session
        self._board = board
        self._listeners = listeners
        self._clock = clock
        self._polls: dict[str, _Poll] = {}

    def start(self, chain: ChainSettings, listed_by: ChainSettings | None = None) -> None:
        """Poll `chain` from now on (`listed_by`: the chain of "all" subnets it is one of)."""
        alerts = ChainAlerts(chain, self._store, self._listeners, clock=self._clock)
        monitor = ChainMonitor(
            chain,
            self._session,
            self._board,
            clock=self._clock,
            jails=JailTracker(chain, self._store, self._retention_days),
            on_report=alerts.evaluate,
        )
        self._watched.add(chain, listed_by)  # before its first report reaches the board
        task = asyncio.create_task(monitor.run(), name=f"poll:{chain.name}")
        self._polls[chain.name] = _Poll(task, alerts)

    async def stop(self, chain: ChainSettings) -> None:
        """Poll `chain` no more (its subnet is deregistered): its firing alerts resolve, and
        its report leaves the board. Its history stays in the store."""
        poll = self._polls[chain.name]
        poll.task.cancel()
        await asyncio.wait([poll.task])  # unlike awaiting it, lets a cancellation of ours through
        del self._polls[chain.name]
        try:
            await poll.alerts.retire()
        except StoreError as exc:  # the chain goes all the same; its alerts stay as stored
            log.error("alerts not resolved", chain=chain.name, error=str(exc))
        finally:
            self._board.withdraw(chain.name)
            self._watched.remove(chain.name)

    def subnet_watch(self, chain: ChainSettings, netuids: Sequence[int]) -> SubnetWatch:
        """The watch of a chain of "all" subnets, listed at start as `netuids`, that starts and
        stops their polls here."""
        from quorumwatch.chains.bittensor.subnets import SubnetWatch

        return SubnetWatch(
            chain,
            netuids,
            self._session,
            self._board,
            start=functools.partial(self.start, listed_by=chain),
            stop=self.stop,
            clock=self._clock,
        )

    async def close(self) -> None:
        """At shutdown: every poll cancelled; alert state stays as it is for the next start."""
        await _cancel([poll.task for poll in self._polls.values()])


class _Sinks:
    """The configured alert sinks and who tells whom: each evaluation's commit goes to the
    status keeper, the board (for the status page), the MQTT publisher and each
    Alertmanager's pusher; the publisher tells the keeper of its outbox reads, deletes and
    connection, the pushers of their failures; the keeper puts the status on the board.
    Nothing polls the store."""

    def __init__(
        self,
        settings: Settings,
        store: AsyncStore,
        session: aiohttp.ClientSession,
        board: ReportBoard,
        clock: Callable[[], float],
    ) -> None:
        self.status = SinkStatusKeeper(
            store,
            board,
            mqtt=settings.mqtt.enabled,
            alertmanager=bool(settings.alertmanager.targets),
        )
        self.mqtt = (
            MqttPublisher(settings.mqtt, store, version=__version__, status=self.status)
            if settings.mqtt.enabled
            else None
        )
        self.alertmanagers = [
            AlertmanagerPusher(
                url,
                settings.alertmanager,
                session,
                clock=clock,
                on_failure=self.status.alertmanager_failed,
                node=node,
            )
            for node, url in enumerate(settings.alertmanager.targets)
        ]
        self.listeners: list[AlertListener] = [self.status.committed, board.alerts_committed]
        self._loops: list[asyncio.Task[None]] = []  # cancelled first at shutdown
        self._mqtt_task: asyncio.Task[None] | None = None  # ends in MqttPublisher.shutdown()
        if self.mqtt is not None:
            self.listeners.append(self.mqtt.committed)
        self.listeners += [pusher.committed for pusher in self.alertmanagers]

    def start(self) -> None:
        self._loops.append(asyncio.create_task(self.status.load(), name="sink-status"))
        if self.mqtt is not None:
            self._mqtt_task = asyncio.create_task(self.mqtt.run(), name="mqtt")
        self._loops += [
            asyncio.create_task(pusher.run(), name="alertmanager") for pusher in self.alertmanagers
        ]

    async def close(self, flush_seconds: float) -> None:
        """Deliver what the last polls generated, within `flush_seconds`, then stop.

        MQTT and Alertmanager flush side by side, so the budget is spent once."""
        await _cancel(self._loops)
        flushes: list[Awaitable[object]] = []
        if self.mqtt is not None:
            # It says "offline" itself when closing: a clean exit discards the Will.
            flushes.append(self.mqtt.shutdown(flush_seconds))
        flushes += [pusher.flush(flush_seconds) for pusher in self.alertmanagers]
        try:
            await asyncio.gather(*flushes)
        finally:
            if self._mqtt_task is not None:  # done already, unless shutdown() failed
                await _cancel([self._mqtt_task])
            await self.status.close()
