"""Endpoint pool: every request a source makes (HTTP, or a message over the WebSocket it
opens), classified and accounted per endpoint."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import aiohttp
import structlog
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from quorumwatch import __version__
from quorumwatch.availability import AvailabilityWindows
from quorumwatch.models import DataError, Outcome
from quorumwatch.report import EndpointView

if TYPE_CHECKING:
    from quorumwatch.config import EndpointSettings

T = TypeVar("T")

LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MAX_RETRY_AFTER_SECONDS = 3600.0
_READ_CHUNK_BYTES = 64 * 1024
# A body this large is joined in a worker thread: copying a beacon state's 150 MB on the
# event loop would stall it for tens of milliseconds (bytes.join lets go of the GIL).
_JOINED_OFF_LOOP_BYTES = 1024 * 1024
_NO_HEADERS: Mapping[str, str] = CIMultiDictProxy(CIMultiDict())
_DELTA_SECONDS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also accepts "²"

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """The result of one request: a decoded value only when the outcome is ok."""

    endpoint: str
    outcome: Outcome
    latency_seconds: float
    value: T | None = None
    error: str = ""
    data_error: DataError | None = None
    status: int | None = None  # the HTTP status, when an answer arrived


@dataclass(frozen=True, slots=True)
class Payload:
    """A successful answer as received: its body (read once, copied once) and headers."""

    body: bytes
    headers: Mapping[str, str]  # header names match in any case, as in HTTP


@dataclass(slots=True)
class _Progress:
    """How far a request got: the HTTP status, once an answer arrived."""

    status: int | None = None


class _RefusedError(Exception):
    """An HTTP answer whose status refuses the request (its body is never read)."""

    def __init__(self, outcome: Outcome, error: str) -> None:
        super().__init__(error)
        self.outcome = outcome
        self.error = error


class Endpoint:
    """One configured endpoint and its health. Mutated only by the pool, on the event loop."""

    def __init__(self, settings: EndpointSettings) -> None:
        self.settings = settings
        self.name = settings.name
        # Base URLs by role: `url` for most kinds; `lcd` and `rpc` for Cosmos SDK chains.
        # A query string (an API key, say) is kept apart and sent with every request.
        self.base_urls: dict[str, str] = {}
        self.base_queries: dict[str, dict[str, str]] = {}
        for role in ("url", "lcd", "rpc"):
            value = getattr(settings, role)
            if value is not None:
                url = URL(str(value))
                self.base_urls[role] = str(url.with_query(None).with_fragment(None)).rstrip("/")
                self.base_queries[role] = dict(url.query)
        self.headers = {
            name: secret.get_secret_value() for name, secret in settings.headers.items()
        }
        self.up = False
        self.cooldown_until = 0.0
        self.clock_skew_seconds: float | None = None
        self.requests = dict.fromkeys(Outcome, 0)
        self.latency_bucket_counts = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.last_latency_seconds: float | None = None
        self.availability = AvailabilityWindows()

    def record(self, outcome: Outcome, latency: float, at: float) -> None:
        self.requests[outcome] += 1
        self.up = outcome is Outcome.OK
        self.availability.record(outcome is Outcome.OK, at)
        self.latency_sum += latency
        self.latency_count += 1
        self.last_latency_seconds = latency
        for index, bound in enumerate(LATENCY_BUCKETS):
            if latency <= bound:
                self.latency_bucket_counts[index] += 1

    def view(self, now: float) -> EndpointView:
        return EndpointView(
            name=self.name,
            up=self.up,
            requests=MappingProxyType(dict(self.requests)),
            latency_bucket_counts=tuple(self.latency_bucket_counts),
            latency_sum=self.latency_sum,
            latency_count=self.latency_count,
            last_latency_seconds=self.last_latency_seconds,
            availability=MappingProxyType(self.availability.ratios(now)),
            clock_skew_seconds=self.clock_skew_seconds,
        )


class EndpointPool:
    """Ordered endpoints of one chain; POSTs JSON and classifies every request.

    Decoding and validation run in a worker thread, so a large answer never blocks the
    event loop; a validation failure is classified `invalid_payload`, and any exception
    that no class describes `unexpected`, so that one endpoint never ends a poll.
    """

    def __init__(
        self,
        endpoints: list[EndpointSettings],
        session: aiohttp.ClientSession,
        *,
        max_response_bytes: int,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoints = [Endpoint(e) for e in endpoints]
        self._session = session
        self._max_response_bytes = max_response_bytes
        self._clock = clock
        self._monotonic = monotonic

    def available(self) -> list[Endpoint]:
        """Endpoints in configured order, without those waiting out a Retry-After."""
        now = self._monotonic()
        return [e for e in self.endpoints if e.cooldown_until <= now]

    def healthy_count(self) -> int:
        return sum(e.up for e in self.endpoints)

    def views(self) -> tuple[EndpointView, ...]:
        now = self._clock()
        return tuple(e.view(now) for e in self.endpoints)

    def reject(self, endpoint: Endpoint) -> None:
        """Mark `endpoint` down: its requests succeeded, but what it served is unusable."""
        endpoint.up = False

    def record_clock_skew(self, endpoint: Endpoint, skew: float | None) -> None:
        """Keep, for export, how far the endpoint's answer is dated from our clock (None:
        its answer carried no date)."""
        endpoint.clock_skew_seconds = skew

    async def post_json(
        self, endpoint: Endpoint, path: str, payload: Any, decode: Callable[[bytes], T]
    ) -> Answer[T]:
        """POST `payload` as JSON to the endpoint's `path` and decode the body with `decode`."""
        return await self._request(endpoint, "POST", "url", path, _body_of(decode), json=payload)

    async def get(
        self,
        endpoint: Endpoint,
        path: str,
        decode: Callable[[Payload], T],
        *,
        accept: str,
        params: Mapping[str, str] | None = None,
    ) -> Answer[T]:
        """GET `path` asking for the `accept` media type; `decode` sees body and headers (a
        binary answer names its format in a header, e.g. `Eth-Consensus-Version`)."""
        return await self._request(
            endpoint, "GET", "url", path, decode, params=params, accept=accept
        )

    async def get_json(
        self,
        endpoint: Endpoint,
        path: str,
        decode: Callable[[bytes], T],
        *,
        base: str = "url",
        params: Mapping[str, str] | None = None,
    ) -> Answer[T]:
        """GET `path` (query `params` URL-escaped) from the endpoint's `base` URL; decode it."""
        return await self._request(endpoint, "GET", base, path, _body_of(decode), params=params)

    async def exchange(
        self,
        endpoint: Endpoint,
        send: Callable[[], Awaitable[bytes]],
        decode: Callable[[bytes], T],
    ) -> Answer[T]:
        """One request over a connection the caller holds (a WebSocket message and its answer,
        from `send`): under the endpoint's total deadline, its answer size limit, decoded in a
        worker thread, classified and accounted as an HTTP request is."""

        async def attempt() -> T:
            body = await send()
            if len(body) > self._max_response_bytes:
                raise DataError("too_large", f"answer exceeds {self._max_response_bytes} bytes")
            return await asyncio.to_thread(decode, body)

        return await self._classified(endpoint, attempt, _Progress())

    async def open_websocket(self, endpoint: Endpoint) -> Answer[aiohttp.ClientWebSocketResponse]:
        """A WebSocket to the endpoint's `url` (ws:// or wss://), its messages limited to the
        answer size limit; opening it is a request of its own, classified and accounted (a
        dead host is a connect_error or timeout like any other)."""
        settings = endpoint.settings
        url = URL(endpoint.base_urls["url"]).with_query(endpoint.base_queries["url"])

        async def attempt() -> aiohttp.ClientWebSocketResponse:
            try:
                async with asyncio.timeout(settings.connect_timeout_seconds):
                    return await self._session.ws_connect(
                        url,
                        headers=endpoint.headers,
                        max_msg_size=self._max_response_bytes,
                        autoclose=True,
                        autoping=True,
                    )
            except TimeoutError as exc:
                if isinstance(exc, aiohttp.ClientError):
                    raise
                raise aiohttp.ConnectionTimeoutError() from None

        return await self._classified(endpoint, attempt, _Progress())

    async def _request(
        self,
        endpoint: Endpoint,
        method: str,
        base: str,
        path: str,
        decode: Callable[[Payload], T],
        *,
        accept: str | None = None,
        **options: Any,
    ) -> Answer[T]:
        settings = endpoint.settings
        progress = _Progress()

        async def attempt() -> T:
            url = endpoint.base_urls[base] + path
            params = {**endpoint.base_queries[base], **(options.pop("params", None) or {})}
            headers = endpoint.headers if accept is None else {"Accept": accept, **endpoint.headers}
            sent = {**options, "headers": headers, "timeout": _socket_limits(settings)}
            if params:
                sent["params"] = params
            payload, status, retry_after = await self._send(method, url, sent)
            progress.status = status
            outcome = _classify_status(status)
            if outcome is not Outcome.OK:
                if outcome is Outcome.HTTP_429:
                    self._cool_down(endpoint, retry_after)
                raise _RefusedError(outcome, f"HTTP {status}")
            return await asyncio.to_thread(decode, payload)

        return await self._classified(endpoint, attempt, progress)

    async def _classified(
        self, endpoint: Endpoint, attempt: Callable[[], Awaitable[T]], progress: _Progress
    ) -> Answer[T]:
        """Run `attempt` under the endpoint's total deadline, and classify and account it."""
        started = self._monotonic()
        settings = endpoint.settings
        try:
            # The total deadline covers everything, decoding included; aiohttp enforces
            # the connect and read limits inside it (they raise its own TimeoutErrors).
            async with asyncio.timeout(settings.timeout_seconds):
                value = await attempt()
        except _RefusedError as exc:
            return self._finish(
                endpoint, exc.outcome, started, error=exc.error, status=progress.status
            )
        except TimeoutError as exc:  # before OSError: aiohttp's timeouts are both
            error = _describe_timeout(exc, settings)
            return self._finish(endpoint, Outcome.TIMEOUT, started, error=error)
        except DataError as exc:
            return self._finish(
                endpoint,
                Outcome.INVALID_PAYLOAD,
                started,
                error=str(exc),
                data_error=exc,
                status=progress.status,
            )
        except (aiohttp.ClientError, OSError) as exc:
            return self._finish(endpoint, Outcome.CONNECT_ERROR, started, error=type(exc).__name__)
        except Exception as exc:  # not BaseException: cancellation and exits go through
            # Only its type is kept: an unknown exception's message may quote the URL, and
            # with it the credentials (aiohttp's refusal of a header does).
            return self._finish(
                endpoint,
                Outcome.UNEXPECTED,
                started,
                error=type(exc).__name__,
                status=progress.status,
            )
        return self._finish(endpoint, Outcome.OK, started, value=value, status=progress.status)

    async def _send(
        self, method: str, url: str, options: Mapping[str, Any]
    ) -> tuple[Payload, int, str]:
        async with self._session.request(method, url, allow_redirects=False, **options) as response:
            retry_after = response.headers.get("Retry-After", "")
            if _classify_status(response.status) is not Outcome.OK:
                # The body of a refusal is never used: a large error page must not turn
                # an http_5xx (or a 429 and its Retry-After) into invalid_payload.
                return (
                    Payload(b"", CIMultiDictProxy(CIMultiDict())),
                    response.status,
                    retry_after,
                )
            body = await self._read_body(response)
            headers = CIMultiDictProxy(CIMultiDict(response.headers))  # names match in any case
            return Payload(body, headers), response.status, retry_after

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        # StreamReader.read(n) returns what is buffered, up to n bytes, not the whole body:
        # read to EOF, giving up as soon as the limit is passed.
        limit = self._max_response_bytes
        too_large = DataError("too_large", f"answer exceeds {limit} bytes")
        if response.content_length is not None and response.content_length > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_READ_CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        if size < _JOINED_OFF_LOOP_BYTES:
            return b"".join(chunks)
        return await asyncio.to_thread(b"".join, chunks)

    def _cool_down(self, endpoint: Endpoint, retry_after: str) -> None:
        delay = parse_retry_after(retry_after, self._clock())
        if delay is not None:
            endpoint.cooldown_until = self._monotonic() + delay
            log.warning("endpoint rate limited", endpoint=endpoint.name, retry_after_seconds=delay)

    def _finish(
        self,
        endpoint: Endpoint,
        outcome: Outcome,
        started: float,
        *,
        value: T | None = None,
        error: str = "",
        data_error: DataError | None = None,
        status: int | None = None,
    ) -> Answer[T]:
        latency = self._monotonic() - started
        endpoint.record(outcome, latency, self._clock())
        if outcome is not Outcome.OK:
            log.warning("request failed", endpoint=endpoint.name, outcome=str(outcome), error=error)
        return Answer(endpoint.name, outcome, latency, value, error, data_error, status)


def _body_of(decode: Callable[[bytes], T]) -> Callable[[Payload], T]:
    """A body decoder as a payload decoder (JSON answers need no headers). These parsers take
    `bytes`: the one copy is of a JSON answer that they decode whole anyway."""
    return lambda payload: decode(bytes(payload.body))


def http_session() -> aiohttp.ClientSession:
    # No session-wide limits: every request brings its own (EndpointPool: the endpoint's
    # connect, read and total timeouts; the Alertmanager pusher: its timeout_seconds).
    # TLS certificates are verified against the system store (or SSL_CERT_FILE).
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"User-Agent": f"quorumwatch/{__version__}"},
    )


def _socket_limits(settings: EndpointSettings) -> aiohttp.ClientTimeout:
    # total=None: asyncio.timeout in _request is the one total deadline. A per-request
    # ClientTimeout replaces the session's, so the session default plays no part.
    return aiohttp.ClientTimeout(
        total=None,
        sock_connect=settings.connect_timeout_seconds,
        sock_read=settings.read_timeout_seconds,
    )


def _describe_timeout(exc: TimeoutError, settings: EndpointSettings) -> str:
    """Which limit ran out: the connect, the read (between bytes) or the total deadline."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"no connection in {settings.connect_timeout_seconds}s"
    if isinstance(exc, aiohttp.ServerTimeoutError):  # SocketTimeoutError: sock_read ran out
        return f"no bytes for {settings.read_timeout_seconds}s"
    return f"no answer in {settings.timeout_seconds}s"


def _classify_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.OK
    if status == 429:
        return Outcome.HTTP_429
    if 400 <= status < 500:
        return Outcome.HTTP_4XX
    if status >= 500:
        return Outcome.HTTP_5XX
    # 1xx/3xx: redirects are not followed, since they could leave the configured host.
    return Outcome.INVALID_PAYLOAD


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped."""
    value = value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        moment = parsedate_to_datetime(value)
        if moment.tzinfo is None:  # "-0000": RFC 5322 for UTC with no known local zone
            moment = moment.replace(tzinfo=UTC)
        delay = moment.timestamp() - now
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(delay, 0.0), MAX_RETRY_AFTER_SECONDS)
