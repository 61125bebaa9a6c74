"""Wiring: one asyncio process polling every chain and serving /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING

import aiohttp
import structlog
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from quorumwatch import __version__
from quorumwatch.alerting.evaluator import AlertListener, ChainAlerts
from quorumwatch.alerting.sinks.alertmanager import AlertmanagerPusher
from quorumwatch.alerting.sinks.mqtt import MqttPublisher
from quorumwatch.alerting.sinks.status import SinkStatusKeeper
from quorumwatch.config import ConfigError
from quorumwatch.endpoints import http_session
from quorumwatch.exporter.collector import QuorumwatchCollector
from quorumwatch.exporter.server import start_metrics_server
from quorumwatch.exporter.state import state_document
from quorumwatch.jails.tracker import JailTracker
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ReportBoard
from quorumwatch.store import AsyncStore, StoreError

if TYPE_CHECKING:
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


def freeze_startup_heap() -> None:
    """Exempt everything created at start-up from future garbage collections.

    Imports leave hundreds of thousands of long-lived objects; without this, every full
    collection re-traverses them and stalls the event loop for 20-30 ms.
    """
    gc.collect()
    gc.freeze()


def build_registry(board: ReportBoard, chains: Sequence[ChainSettings]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        QuorumwatchCollector(
            board,
            {c.name: c.max_validator_series for c in chains},
            without_validator_series={c.name for c in chains if not c.validator_series},
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
    `stop` is set.

    `listen_name` is what the user gave the listen address as, for the error when it is taken.
    """
    board = ReportBoard()
    host, port = settings.metrics.host_port
    try:
        runner, bound_port = await start_metrics_server(
            build_registry(board, settings.chains),
            host,
            port,
            state=lambda: state_document(board, settings.chains, clock()),
            version=lambda: (board.reports, board.sinks, board.firing),
            ssl_context=_metrics_tls(settings),
            credentials=_metrics_credentials(settings),
        )
    except OSError as exc:
        raise ConfigError(f"{listen_name} {settings.metrics.listen}: {exc.strerror}") from None
    # The port alone: metrics.listen names the host, and no log line carries a host:port.
    log.info("serving metrics", port=bound_port, chains=len(settings.chains))
    if on_listening is not None:
        on_listening(bound_port)
    try:
        store = await AsyncStore.open(
            settings.storage.path, max_outbox_events=settings.mqtt.max_outbox_events
        )
    except StoreError as exc:
        await runner.cleanup()
        raise ConfigError(f"storage.path: {exc}") from None  # the message names the file
    freeze_startup_heap()
    try:
        async with http_session() as session:
            sinks = _Sinks(settings, store, session, board, clock)
            tasks = [
                asyncio.create_task(
                    ChainMonitor(
                        chain,
                        session,
                        board,
                        clock=clock,
                        jails=JailTracker(chain, store, settings.storage.retention_days),
                        on_report=ChainAlerts(chain, store, sinks.listeners, clock=clock).evaluate,
                    ).run(),
                    name=f"poll:{chain.name}",
                )
                for chain in settings.chains
            ]
            sinks.start()
            try:
                await stop.wait()
            finally:
                # Polls first, so no event is generated after the sinks' last delivery.
                await _cancel(tasks)
                await sinks.close(settings.mqtt.shutdown_flush_seconds)
    finally:
        await store.close()  # last: the sinks' flush reads and deletes outbox rows
        await runner.cleanup()
        log.info("stopped")


async def _cancel(tasks: Collection[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
