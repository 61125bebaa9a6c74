"""Real components for tests, started on free loopback ports: Mosquitto, Prometheus,
Alertmanager (alone or clustered), a webhook receiver, the daemon (in this event loop or as a
subprocess), an MQTT subscriber that collects what it receives; reading /metrics and the
daemon's JSON log; and `eventually`, the one way tests wait."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import inspect
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from quorumwatch.config import Settings
from quorumwatch.daemon import run_daemon
from tests.tools import free_port, require_binary, stop_process

WAIT_SECONDS = 10.0
POLL_SECONDS = 0.02  # how often `eventually` checks
PROMETHEUS_START_SECONDS = 30.0
RULES = Path(__file__).resolve().parents[1] / "deploy" / "rules" / "quorumwatch.rules.yml"
AM_CONFIG = """\
global:
  resolve_timeout: 5m
route:
  receiver: "null"
receivers:
  - name: "null"
"""


# --- a real Mosquitto ------------------------------------------------------------------------


def mosquitto_binary() -> str:
    """mosquitto lives in /usr/sbin, which is often not on a non-root PATH."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    return shutil.which("mosquitto", path=search) or require_binary("mosquitto")


@dataclass
class Broker:
    """One Mosquitto on 127.0.0.1:`port`; stop() and start() again keep the port."""

    binary: str
    directory: Path
    port: int
    settings: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / "mosquitto.log"

    def start(self) -> None:
        config = self.directory / "mosquitto.conf"
        lines = [
            f"user {getpass.getuser()}",  # as root, keep root: no switch to user mosquitto
            f"listener {self.port} 127.0.0.1",
            *(line.replace("{dir}", str(self.directory)) for line in self.settings),
        ]
        if not any(line.startswith("allow_anonymous") for line in lines):
            lines.append("allow_anonymous true")
        if not any(line.startswith("persistence ") for line in lines):
            lines.append("persistence false")
        config.write_text("\n".join(lines) + "\n")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        accepting("mosquitto", self.process, self.port, self.log, 5)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)

    def kill(self) -> None:
        """SIGKILL, paused or not: once a client has connected, SIGTERM takes Mosquitto about
        0.1 s, and where nothing watches it go (a test is over) that is time lost."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is answered (no PUBACK)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)


BrokerFactory = Callable[..., Broker]


Check = Callable[[], bool] | Callable[[], Awaitable[bool]]
What = str | Callable[[], str]


def _timed_out(what: What, within: float) -> None:
    pytest.fail(f"timed out after {within} s waiting for {what() if callable(what) else what}")


async def eventually(
    check: Check, what: What, within: float = WAIT_SECONDS, *, every: float = POLL_SECONDS
) -> None:
    """Wait until `check()` (awaited if it returns an awaitable) is true, trying every `every`
    seconds; fail the test after `within` seconds, naming `what` (a callable is called then,
    e.g. for a log tail). Tests wait for something only through this (or `eventually_sync`)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            _timed_out(what, within)
        await asyncio.sleep(every)


def eventually_sync(
    check: Callable[[], bool],
    what: What,
    within: float = WAIT_SECONDS,
    *,
    every: float = POLL_SECONDS,
) -> None:
    """`eventually` for synchronous code (fixtures that start a process, sync tests)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            _timed_out(what, within)
        time.sleep(every)


def log_tail(path: Path, characters: int = 2000) -> str:
    return path.read_text(errors="replace")[-characters:] if path.exists() else "(no log)"


def accepting(
    name: str, process: subprocess.Popen[bytes], port: int, log: Path, within: float
) -> None:
    """Wait until `process` (`name`) accepts TCP connections on 127.0.0.1:`port`; fail with
    the tail of its `log` if it exits first or does not listen within `within` seconds."""

    def listening() -> bool:
        if process.poll() is not None:
            pytest.fail(f"{name} exited: {log_tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    eventually_sync(listening, lambda: f"{name} to listen on {port}: {log_tail(log)}", within)


@dataclass
class Received:
    topic: str
    payload: str
    qos: int
    retain: bool

    @property
    def document(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    messages: list[Received] = field(default_factory=list)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    def event_ids(self) -> list[str]:
        return [m.document["event_id"] for m in self.messages if "/alerts/" in m.topic]

    async def wait(self, check: Callable[[Subscriber], bool], what: str) -> None:
        await eventually(lambda: check(self), what)


@asynccontextmanager
async def subscribed(port: int, *topics: str, **client: Any) -> AsyncIterator[Subscriber]:
    """A real aiomqtt client subscribed at QoS 1 to `topics`, in order, collecting messages."""
    subscriber = Subscriber()
    async with aiomqtt.Client("127.0.0.1", port, **client) as mqtt:

        async def collect() -> None:
            async for message in mqtt.messages:
                assert isinstance(message.payload, bytes)
                subscriber.messages.append(
                    Received(
                        message.topic.value,
                        message.payload.decode(),
                        message.qos,
                        message.retain,
                    )
                )

        collector = asyncio.create_task(collect())
        try:
            for topic in topics:
                await mqtt.subscribe(topic, qos=1)
            yield subscriber
        finally:
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)


@asynccontextmanager
async def running_daemon(settings: Settings, *, stop_within: float = 10.0) -> AsyncIterator[str]:
    """The daemon in this event loop; yields its /metrics URL, then stops it (within
    `stop_within` seconds, or the test fails)."""
    stop = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_daemon(settings, stop, on_listening=port.set_result))
    try:
        yield f"http://127.0.0.1:{await asyncio.wait_for(port, 5)}/metrics"
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_within)


@asynccontextmanager
async def daemon_process(
    config: Path, log: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`quorumwatch run --config config` as a subprocess, with `env` added to this process's
    environment, its output appended to `log` (JSON lines); killed at the end if it is still
    running."""
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quorumwatch", "run", "--config", str(config),
            stdout=output, stderr=output, env={**os.environ, **(env or {})},
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def log_records(log: Path, event: str) -> list[dict[str, Any]]:
    """The JSON log records in `log` whose event is `event`, in order."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [record for record in records if record.get("event") == event]


DRIP_SECONDS = 0.2


# --- raw loopback servers: endpoints that misbehave below HTTP ---------------------------------


@dataclass
class RawServer:
    """What a raw loopback server saw: its URL and the connections clients opened and closed."""

    base_url: str = ""
    open_connections: int = 0
    peak_connections: int = 0
    lifetimes: list[float] = field(default_factory=list)  # seconds, per closed connection
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set while none is open


@asynccontextmanager
async def raw_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[RawServer]:
    """Run `handler` for each connection to a free loopback port, counting connections."""
    state = RawServer()
    state.idle.set()
    handlers: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted = time.monotonic()
        state.open_connections += 1
        state.peak_connections = max(state.peak_connections, state.open_connections)
        state.idle.clear()
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: the point of these tests
        finally:
            writer.close()
            handlers.discard(task)
            state.lifetimes.append(time.monotonic() - accepted)
            state.open_connections -= 1
            if state.open_connections == 0:
                state.idle.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    state.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        for task in list(handlers):  # Python 3.11's wait_closed does not wait for them
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request and never sends a byte back, until the client leaves."""
    await reader.read()


async def slowloris(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Sends a 200's headers, then one byte of a never-ending body every DRIP_SECONDS."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
    client_gone = asyncio.ensure_future(reader.read())  # completes at the client's EOF
    try:
        while not client_gone.done():
            writer.write(b" ")
            await writer.drain()
            await asyncio.wait({client_gone}, timeout=DRIP_SECONDS)  # the drip's pace
    finally:
        client_gone.cancel()


# --- Prometheus, Alertmanager and a webhook receiver ------------------------------------------

Json = dict[str, Any]

# The value of `for:` / `keep_firing_for:` in block style, with an optional trailing comment.
DURATION_KEY = re.compile(
    r"^(?P<key>\s*(?:-\s+)?(?:for|keep_firing_for)\s*:\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s#]+)",
    re.MULTILINE,
)


def zero_durations(rules: str) -> str:
    """The rules with every `for:` and `keep_firing_for:` set to 0s."""
    return DURATION_KEY.sub(lambda m: f"{m.group('key')}0s", rules)


def rules_copy(directory: Path) -> Path:
    """A copy of the shipped rules with every duration 0s, in `directory`: an alert fires and
    resolves within seconds (the shipped durations are covered by the promtool unit tests)."""
    assert RULES.is_file(), f"{RULES} is missing"
    path = directory / RULES.name
    path.write_text(zero_durations(RULES.read_text(encoding="utf-8")))
    return path


def _prometheus_config(directory: Path, config: Json) -> Path:
    directory.mkdir()
    path = directory / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


@asynccontextmanager
async def prometheus(binary: str, directory: Path, config: Json) -> AsyncIterator[str]:
    """A real Prometheus on a free loopback port with its own data dir; yields its base URL."""
    config_path = _prometheus_config(directory, config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = directory / "prometheus.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                if process.returncode is not None:
                    pytest.fail(f"prometheus exited: {log_tail(log_path)}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"{url}/-/ready") as response:
                        return response.status == 200
                return False

            await eventually(
                ready,
                lambda: f"prometheus to be ready: {log_tail(log_path)}",
                PROMETHEUS_START_SECONDS,
                every=0.1,
            )
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def api(session: aiohttp.ClientSession, url: str, **params: Any) -> tuple[Any, str | None]:
    """(data, None) from a Prometheus API call, or (None, error)."""
    try:
        async with session.get(url, params=params) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, json.JSONDecodeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if body.get("status") != "success":
        return None, f"{body.get('errorType')}: {body.get('error')}"
    return body.get("data"), None


async def instant(session: aiohttp.ClientSession, base: str, expr: str) -> tuple[Any, str | None]:
    """The result of an instant query at now, or (None, error)."""
    data, error = await api(session, f"{base}/api/v1/query", query=expr)
    return (None, error) if data is None else (data.get("result"), None)


# Gossip on loopback in milliseconds, so a cluster settles, and a node hears of the others'
# notifications, well within a test; the wait between peers' notifications stays far above
# the gossip interval, so the second node hears of the first's before it would send its own.
CLUSTER_TIMING = (
    "--cluster.gossip-interval=10ms",
    "--cluster.pushpull-interval=1s",
    "--cluster.peer-timeout=500ms",
    "--cluster.probe-interval=100ms",
    "--cluster.probe-timeout=50ms",
    "--cluster.settle-timeout=5s",
    "--cluster.reconnect-interval=1s",
)


@dataclass
class AlertmanagerNode:
    """One Alertmanager on 127.0.0.1:`port` with its own storage in `directory`; clustering
    off unless `cluster_port` is given, then gossiping on it with the nodes at `peers`."""

    binary: str
    directory: Path
    config: Path
    port: int = field(default_factory=free_port)
    cluster_port: int | None = None
    peers: Sequence[int] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "alertmanager.log"

    def start(self) -> None:
        """Start it and wait until its API is ready (not until a cluster has settled)."""
        self.directory.mkdir(exist_ok=True)
        if self.cluster_port is None:
            cluster = ["--cluster.listen-address="]
        else:
            address = f"127.0.0.1:{self.cluster_port}"
            cluster = [
                f"--cluster.listen-address={address}",
                f"--cluster.advertise-address={address}",
                *(f"--cluster.peer=127.0.0.1:{peer}" for peer in self.peers),
                *CLUSTER_TIMING,
            ]
        with self.log.open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config}",
                    f"--storage.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--web.external-url={self.url}",
                    *cluster,
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"alertmanager exited: {log_tail(self.log)}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        eventually_sync(
            ready, lambda: f"alertmanager to be ready: {log_tail(self.log)}", every=0.05
        )

    def kill(self) -> None:
        """SIGKILL: no goodbye to its peers, nothing flushed."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            stop_process(process)


def alertmanager_binary() -> str:
    return require_binary("prometheus-alertmanager")


@dataclass
class Webhook:
    """Every payload Alertmanager POSTed, in arrival order."""

    url: str
    payloads: list[Json] = field(default_factory=list)

    def first(self, alertname: str, status: str, after: int = -1, **labels: str) -> int | None:
        """Index of the first payload after `after` carrying the alert with this status."""
        for index, payload in enumerate(self.payloads):
            if index <= after:
                continue
            for alert in payload.get("alerts", []):
                alert_labels = alert.get("labels", {})
                if (
                    alert_labels.get("alertname") == alertname
                    and alert.get("status") == status
                    and all(alert_labels.get(k) == v for k, v in labels.items())
                ):
                    return index
        return None

    def summary(self) -> str:
        seen = [
            f"{p.get('externalURL')}: {a.get('status')} {a.get('labels')}"
            for p in self.payloads
            for a in p.get("alerts", [])
        ]
        return "\n  ".join(["webhook received:", *seen]) if seen else "webhook received nothing"


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Webhook]:
    """An Alertmanager webhook receiver on a free loopback port, recording every payload."""
    payloads: list[Json] = []

    async def receive(request: web.Request) -> web.Response:
        payloads.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port: int = runner.addresses[0][1]
    try:
        yield Webhook(f"http://127.0.0.1:{port}/hook", payloads)
    finally:
        await runner.cleanup()


# --- /metrics ----------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Samples:
    """Every sample of an exposition, by name and label set."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    """The samples at `url`, which must answer 200."""
    async with session.get(url) as response:
        assert response.status == 200
        return parse_samples(await response.text())


async def metric_totals(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """Each metric name's sum over its samples (an unlabelled sample's value), or {} while
    nothing answers at `url`."""
    try:
        async with session.get(url) as response:
            text = await response.text()
    except aiohttp.ClientError:
        return {}
    totals: dict[str, float] = {}
    for (name, _), value in parse_samples(text).items():
        totals[name] = totals.get(name, 0.0) + value
    return totals
