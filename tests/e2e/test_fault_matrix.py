"""Fault matrix: every API fault, for every source, through the simulators over loopback.

Each chain kind has a simulator that only answers correctly; a fault-injecting proxy in
front of it plays each fault. Every fault runs twice per kind: the faulty endpoint before a
healthy one (the monitor stays alive, counts the right outcome class and rejection reason,
fails over, raises no false concentration or jail alert), and the faulty endpoint alone (the
chain is down, with no analysis, and DataStale holds once the limit has passed).
`docs/fault-matrix.md` lists each row with its test id.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import importlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from quorumwatch import cli
from quorumwatch.alerting.rules import RuleMemory, conditions
from quorumwatch.chains.kinds import KINDS as KIND_REGISTRY
from quorumwatch.config import (
    BittensorSettings,
    ChainSettings,
    CosmosSettings,
    EndpointSettings,
    GenericSettings,
)
from quorumwatch.endpoints import Endpoint, EndpointPool
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ChainReport, ReportBoard
from quorumwatch.simulator import parse_scenario, start_simulator
from quorumwatch.simulator.bittensor import start_bittensor_simulator
from quorumwatch.simulator.cosmos import start_cosmos_simulator
from quorumwatch.simulator.ethereum import start_ethereum_simulator
from quorumwatch.simulator.faults import (
    Fault,
    Hang,
    Reset,
    Rewrite,
    Rule,
    Status,
    Truncate,
    start_fault_proxy,
)
from quorumwatch.simulator.generic import start_generic_simulator
from quorumwatch.simulator.solana import VoteAccountSpec, base58, start_solana_simulator
from tests.builders import FakeClock
from tests.tools import refused_url

WALL = 1_750_000_000.0
POLL_INTERVAL = 30.0
STALE_LIMIT = 3 * POLL_INTERVAL  # the default data_stale_seconds
DAY = 86_400.0
# Stale faults are a day off; an hour of tolerance keeps the generic document's fixed time
# valid while the test clock moves on by a few polls.
MAX_CLOCK_SKEW = 3_600.0
FALSE_ALERTS = frozenset({"EntityCanControl", "EntityCanHalt", "ValidatorJailed", "ChainHalted"})
HTML_ERROR_PAGE = "<html><body><h1>502 Bad Gateway</h1></body></html>"
ABSURD_STAKE = 2**128 + 1


# --- the faults --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatrixFault:
    """One fault on one kind: how it is injected and what the faulty endpoint must count."""

    id: str
    outcome: str  # the outcome class of the faulted request ("ok" when only the data is off)
    rejection: str | None = None
    injections: tuple[tuple[Rule, Fault], ...] = ()
    refused: bool = False  # nothing listens: the endpoint's first request is refused
    skipped_after: bool = False  # Retry-After: not asked again on the next poll
    stale: bool = False  # its freshness probe dates it far off: its set is never used
    # The faulty endpoint's deadline: ample for every answer it gives, and, where it gives
    # none, how long each poll waits for it.
    deadline_seconds: float = 0.3


def _transport_faults(set_rule: Rule) -> list[MatrixFault]:
    """The faults that look the same on every kind, on the request carrying the set."""

    def on_set(fault: Fault) -> tuple[tuple[Rule, Fault], ...]:
        return ((set_rule, fault),)

    return [
        MatrixFault("timeout", "timeout", injections=on_set(Hang()), deadline_seconds=0.15),
        MatrixFault("refused", "connect_error", refused=True),
        MatrixFault("reset_mid_body", "connect_error", injections=on_set(Reset())),
        MatrixFault("http_429", "http_429", injections=on_set(Status(429))),
        MatrixFault(
            "http_429_retry_after",
            "http_429",
            injections=on_set(Status(429, retry_after="60")),
            skipped_after=True,
        ),
        MatrixFault("http_5xx", "http_5xx", injections=on_set(Status(503))),
        MatrixFault(
            "truncated_json", "invalid_payload", "malformed_json", injections=on_set(Truncate())
        ),
        MatrixFault(
            "html_error_page_200",
            "invalid_payload",
            "malformed_json",
            injections=on_set(Status(200, HTML_ERROR_PAGE, "text/html")),
        ),
    ]


def _edit_rows(
    rows: Callable[[Any], list[dict[str, Any]]], edit: Callable[[list[Any]], None]
) -> Rewrite:
    """A Rewrite applying `edit` to the row list that `rows` finds in the answer."""

    def change(document: Any) -> Any:
        edit(rows(document))
        return document

    return Rewrite(change)


def _rename(old: str, new: str) -> Callable[[list[Any]], None]:
    def edit(rows: list[Any]) -> None:
        for row in rows[:1]:
            row[new] = row.pop(old)

    return edit


def _drop(field: str) -> Callable[[list[Any]], None]:
    def edit(rows: list[Any]) -> None:
        for row in rows[:1]:
            del row[field]

    return edit


def _set(field: str, value: Any, *, every: bool = False) -> Callable[[list[Any]], None]:
    def edit(rows: list[Any]) -> None:
        for row in rows if every else rows[:1]:
            row[field] = value

    return edit


def _empty(rows: list[Any]) -> None:
    rows.clear()


def _duplicate_first(rows: list[Any]) -> None:
    """The first row again in the second place: the list keeps its length."""
    if len(rows) > 1:
        rows[1] = copy.deepcopy(rows[0])


@dataclass(frozen=True)
class DataShape:
    """Where one kind's answer keeps its rows and fields, to build its data faults."""

    set_rule: Rule
    rows: Callable[[Any], list[dict[str, Any]]]
    stake_field: str
    required_field: str  # dropped for schema_missing_field
    mistyped_stake: Any  # a value of the wrong JSON type for the stake
    stake_of: Callable[[int], Any]  # how the kind writes a stake
    clock_rule: Rule  # the request that dates the answer
    clock_shift: Callable[[float], Rewrite]  # dates the answer that many seconds off
    clock_subject: str  # rejection reasons: stale_<subject>, future_<subject>
    set_read_when_stale: bool = False  # the date comes with the set itself
    # Per fault id, fields of MatrixFault replaced for this kind: injections where the kind's
    # other answers (counts, totals, cross-checked lists) must tell the same story, and the
    # outcome and reason where the kind checks the set only once every request has answered.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


def _data_faults(shape: DataShape) -> list[MatrixFault]:
    def on_set(edit: Callable[[list[Any]], None]) -> tuple[tuple[Rule, Fault], ...]:
        return ((shape.set_rule, _edit_rows(shape.rows, edit)),)

    def stale(shift: float) -> tuple[tuple[Rule, Fault], ...]:
        return ((shape.clock_rule, shape.clock_shift(shift)),)

    invalid = "invalid_payload"
    subject = shape.clock_subject
    faults = [
        MatrixFault(
            "schema_renamed_field",
            invalid,
            "missing_field",
            on_set(_rename(shape.stake_field, f"{shape.stake_field}_v2")),
        ),
        MatrixFault(
            "schema_missing_field", invalid, "missing_field", on_set(_drop(shape.required_field))
        ),
        MatrixFault(
            "schema_wrong_type",
            invalid,
            "wrong_type",
            on_set(_set(shape.stake_field, shape.mistyped_stake)),
        ),
        MatrixFault("empty_set", invalid, "empty_set", on_set(_empty)),
        MatrixFault("duplicates", invalid, "duplicate_validator", on_set(_duplicate_first)),
        MatrixFault(
            "zero_stake",
            invalid,
            "zero_stake",
            on_set(_set(shape.stake_field, shape.stake_of(0), every=True)),
        ),
        MatrixFault(
            "absurd_stake",
            invalid,
            "absurd_stake",
            on_set(_set(shape.stake_field, shape.stake_of(ABSURD_STAKE))),
        ),
        MatrixFault("stale_clock_past", "ok", f"stale_{subject}", stale(-DAY), stale=True),
        MatrixFault("stale_clock_future", "ok", f"future_{subject}", stale(DAY), stale=True),
    ]
    return [dataclasses.replace(fault, **shape.overrides.get(fault.id, {})) for fault in faults]


# --- the chain kinds ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Api:
    """A kind's API as served healthy by its simulator, and how an endpoint of it is set up."""

    name: str
    healthy: Callable[[FakeClock], contextlib.AbstractAsyncContextManager[str]]
    endpoint: Callable[[str, str, float], EndpointSettings]
    generic: GenericSettings | None = None


@dataclass(frozen=True)
class Kind(Api):
    """A kind in the whole matrix: its answers are JSON that the proxy can rewrite."""

    shape: DataShape = field(kw_only=True)

    def faults(self) -> list[MatrixFault]:
        return _transport_faults(self.shape.set_rule) + _data_faults(self.shape)


def _url_endpoint(name: str, url: str, timeout: float) -> EndpointSettings:
    return EndpointSettings(name=name, url=url, timeout_seconds=timeout)


def _cosmos_endpoint(name: str, url: str, timeout: float) -> EndpointSettings:
    return EndpointSettings(name=name, lcd=url, rpc=url, timeout_seconds=timeout)


def _shift_field(
    *path: str, scale: float = 1.0, rfc3339: bool = False
) -> Callable[[float], Rewrite]:
    """Rewrites moving the time at `path` by a number of seconds."""

    def shifted(seconds: float) -> Rewrite:
        def change(document: Any) -> Any:
            *parents, leaf = path
            holder = document
            for key in parents:
                holder = holder[key]
            if rfc3339:
                moment = datetime.fromisoformat(holder[leaf]).timestamp() + seconds
                holder[leaf] = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            else:
                holder[leaf] = round(holder[leaf] + seconds * scale)
            return document

        return Rewrite(change)

    return shifted


# Hyperliquid: 12 equal validators; the probe is exchangeStatus, the set validatorSummaries.
HL_VALIDATORS = [
    {"validator": f"0x{0xF000 + i:040x}", "name": f"v{i}", "stake": 10**15 + i} for i in range(12)
]


@contextlib.asynccontextmanager
async def _hyperliquid(clock: FakeClock) -> AsyncIterator[str]:
    scenario = parse_scenario({"name": "healthy", "steps": [{"validators": HL_VALIDATORS}]})
    async with await start_simulator(scenario, clock=clock) as sim:
        yield sim.base_url


HYPERLIQUID = Kind(
    "hyperliquid",
    _hyperliquid,
    _url_endpoint,
    shape=DataShape(
        set_rule=Rule(body=b'"validatorSummaries"'),
        rows=lambda document: document,
        stake_field="stake",
        required_field="isJailed",
        mistyped_stake="1000",
        stake_of=lambda stake: stake,
        clock_rule=Rule(body=b'"exchangeStatus"'),
        clock_shift=_shift_field("time", scale=1000.0),
        clock_subject="clock",
    ),
)


# Cosmos: 30 bonded validators with similar power; the probe is the RPC /status, the set
# the LCD validator list (cross-checked against the RPC set, the pool and signing infos).
LCD_VALIDATORS = "/cosmos/staking/v1beta1/validators"


@contextlib.asynccontextmanager
async def _cosmos(clock: FakeClock) -> AsyncIterator[str]:
    async with await start_cosmos_simulator(
        validators=30, jailed=0, unbonded=2, clock=clock
    ) as sim:
        yield sim.base_url


def _empty_lcd_list(document: Any) -> Any:
    document["validators"] = []
    document["pagination"] = {"next_key": None, "total": "0"}
    return document


def _rpc_power(power: int, *, every: bool) -> Rewrite:
    """The CometBFT set's voting power, which weights the analysis, set to `power`."""

    def change(document: Any) -> Any:
        rows = document["result"]["validators"]
        for row in rows if every else rows[:1]:
            row["voting_power"] = str(power)
        return document

    return Rewrite(change)


COSMOS = Kind(
    "cosmos",
    _cosmos,
    _cosmos_endpoint,
    shape=DataShape(
        set_rule=Rule(path=LCD_VALIDATORS),
        rows=lambda document: document["validators"],
        stake_field="tokens",
        required_field="jailed",
        mistyped_stake=1000,  # the LCD writes integers as strings
        stake_of=str,
        clock_rule=Rule(path="/status"),
        clock_shift=_shift_field("result", "sync_info", "latest_block_time", rfc3339=True),
        clock_subject="block",
        overrides={
            # An empty list with a zero total: every page is valid, the joined set is empty.
            "empty_set": {
                "injections": ((Rule(path=LCD_VALIDATORS), Rewrite(_empty_lcd_list)),),
                "outcome": "ok",
            },
            "duplicates": {"outcome": "ok"},  # each page is valid; the join finds the twin
            # Stake is the CometBFT voting power, where a listed validator never has zero.
            "zero_stake": {
                "injections": ((Rule(path="/validators"), _rpc_power(0, every=True)),),
                "rejection": "invalid_number",
            },
            "absurd_stake": {
                "injections": ((Rule(path="/validators"), _rpc_power(ABSURD_STAKE, every=False)),),
            },
        },
    ),
)


# Solana: 12 vote accounts of near-equal stake; the probes are getEpochInfo and getBlockTime.
SOLANA_ACCOUNTS = [
    VoteAccountSpec(
        base58((i + 1).to_bytes(32, "big")), base58((i + 101).to_bytes(32, "big")), 10**18 + i
    )
    for i in range(12)
]


@contextlib.asynccontextmanager
async def _solana(clock: FakeClock) -> AsyncIterator[str]:
    async with await start_solana_simulator(SOLANA_ACCOUNTS, clock=clock) as sim:
        yield sim.base_url


SOLANA = Kind(
    "solana",
    _solana,
    _url_endpoint,
    shape=DataShape(
        set_rule=Rule(body=b'"getVoteAccounts"'),
        rows=lambda document: document["result"]["current"],
        stake_field="activatedStake",
        required_field="votePubkey",
        mistyped_stake="1000",
        stake_of=lambda stake: stake,
        clock_rule=Rule(body=b'"getBlockTime"'),
        clock_shift=_shift_field("result"),
        clock_subject="block",
    ),
)


# Generic: a made-up API with 12 equal members and the answer's time (the clock's when the
# simulator starts) beside them.
GENERIC_DOCUMENT = {
    "data": {"set": [{"op": f"v{i}", "power": str(10**21 + i)} for i in range(12)]},
}


@contextlib.asynccontextmanager
async def _generic(clock: FakeClock) -> AsyncIterator[str]:
    async with await start_generic_simulator({**GENERIC_DOCUMENT, "time": clock.now}) as sim:
        yield sim.base_url


GENERIC = Kind(
    "generic",
    _generic,
    _url_endpoint,
    shape=DataShape(
        set_rule=Rule(path="/api/validators"),
        rows=lambda document: document["data"]["set"],
        stake_field="power",
        required_field="op",
        mistyped_stake="a lot",
        stake_of=str,
        clock_rule=Rule(path="/api/validators"),
        clock_shift=_shift_field("time"),
        clock_subject="data",
        set_read_when_stale=True,
    ),
    generic=GenericSettings(
        path="/api/validators",
        list_path="data.set",
        id_field="op",
        stake_field="power",
        time_field="time",
    ),
)

KINDS = (HYPERLIQUID, COSMOS, SOLANA, GENERIC)
CASES = [
    pytest.param(kind, fault, id=f"{kind.name}-{fault.id}")
    for kind in KINDS
    for fault in kind.faults()
]


# Ethereum: the simulator's default beacon node (2,000 validators); its state is SSZ, which
# the proxy's JSON rewrites cannot fault, so only unexpected exceptions are injected here.
@contextlib.asynccontextmanager
async def _ethereum(clock: FakeClock) -> AsyncIterator[str]:
    async with await start_ethereum_simulator(clock=clock) as sim:
        yield sim.base_url


ETHEREUM = Api("ethereum", _ethereum, _url_endpoint)


# Bittensor: the simulated node's healthy subnet (2: ten equal validators), over WebSocket,
# which the HTTP proxy cannot fault; its faults are rows of tests/test_bittensor_source.py.
@contextlib.asynccontextmanager
async def _bittensor(clock: FakeClock) -> AsyncIterator[str]:
    async with await start_bittensor_simulator(clock=clock) as sim:
        yield sim.base_url


BITTENSOR = Api("bittensor", _bittensor, _url_endpoint)
APIS = (*KINDS, ETHEREUM, BITTENSOR)  # every kind: unexpected exceptions are injected in each


# --- unexpected exceptions ----------------------------------------------------------------------

FAULTY = "faulty"
# What an exception's message may quote: it must never reach a log, a failure or the output.
SECRET = "s3cret"
# The endpoint the pool is asking (worker threads decoding its answers included).
_ASKING: ContextVar[str | None] = ContextVar("asking", default=None)


@dataclass(frozen=True)
class Stage:
    """An exception that no check foresaw, raised in one stage of the faulty endpoint's
    answers: the function replaced, per kind, and what the faulty endpoint must count."""

    id: str
    error: type[Exception]
    targets: dict[str, str]  # kind: "module:attribute", the function that raises
    outcome: str  # "ok" when every request was answered and the set was then refused
    rejection: str | None = None


def _everywhere(target: str) -> dict[str, str]:
    return dict.fromkeys((api.name for api in APIS), target)


STAGES = (
    # aiohttp's own refusal (userinfo beside an Authorization header, issue #13).
    Stage(
        "unexpected_request",
        ValueError,
        {
            **_everywhere("quorumwatch.endpoints:EndpointPool._send"),
            "bittensor": "quorumwatch.chains.bittensor.rpc:RpcSocket._answer",
        },
        "unexpected",
    ),
    # Bytes to a document: the JSON decoder each parser calls (the first request's).
    Stage(
        "unexpected_decode",
        TypeError,
        {
            **{
                kind: f"quorumwatch.chains.{kind}.parse:decode_json"
                for kind in ("hyperliquid", "cosmos", "solana", "generic")
            },
            "ethereum": "quorumwatch.chains.ethereum.parse:_decode",
            "bittensor": "quorumwatch.chains.bittensor.parse:decode_json",
        },
        "unexpected",
    ),
    # The document to a validator set: the set's parser, as its source calls it.
    Stage(
        "unexpected_parse",
        KeyError,
        {
            "hyperliquid": "quorumwatch.chains.hyperliquid.source:parse_validator_summaries",
            "cosmos": "quorumwatch.chains.cosmos.source:parse_lcd_validators",
            "solana": "quorumwatch.chains.solana.source:parse_vote_accounts",
            "generic": "quorumwatch.chains.generic.source:parse_generic",
            "ethereum": "quorumwatch.chains.ethereum.source:read_beacon_state",
            "bittensor": "quorumwatch.chains.bittensor.source:parse_metagraph",
        },
        "unexpected",
    ),
    # The source's judgement of what it read, after every request succeeded: the clock check.
    Stage(
        "unexpected_check",
        ZeroDivisionError,
        _everywhere("quorumwatch.chains.base:ChainSource._check_clock"),
        "ok",
        "unexpected",
    ),
)
UNEXPECTED_CASES = [
    pytest.param(api, stage, id=f"{api.name}-{stage.id}") for api in APIS for stage in STAGES
]


def _inject(monkeypatch: pytest.MonkeyPatch, stage: Stage, kind: str) -> None:
    """Make the stage's function raise when it runs for the faulty endpoint: while the pool
    asks it (any request it classifies, HTTP or over a WebSocket), or when it is handed that
    endpoint."""
    asked = EndpointPool._classified

    async def asking(pool: EndpointPool, endpoint: Endpoint, *args: Any, **kwargs: Any) -> Any:
        token = _ASKING.set(endpoint.name)
        try:
            return await asked(pool, endpoint, *args, **kwargs)
        finally:
            _ASKING.reset(token)

    module, _, path = stage.targets[kind].partition(":")
    *owners, name = path.split(".")
    owner: Any = importlib.import_module(module)
    for part in owners:
        owner = getattr(owner, part)
    original = getattr(owner, name)

    def raising(*args: Any, **kwargs: Any) -> Any:
        given = (arg.name for arg in args if isinstance(arg, Endpoint))
        if _ASKING.get() == FAULTY or FAULTY in given:
            raise stage.error(f"injected: http://user:{SECRET}@{FAULTY}.invalid/")
        return original(*args, **kwargs)

    monkeypatch.setattr(EndpointPool, "_classified", asking)
    monkeypatch.setattr(owner, name, raising)


OnceRunner = Callable[[ChainSettings], Awaitable[tuple[int, str, str]]]


@pytest.fixture
def run_once_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> OnceRunner:
    """`quorumwatch run --once --format json` on one chain, giving its exit code, stdout and
    stderr: in this process, where an injection holds, on a worker thread, since it runs an
    event loop of its own."""

    async def run(settings: ChainSettings) -> tuple[int, str, str]:
        config = tmp_path / "empty.toml"
        config.write_text("")
        monkeypatch.setenv("QUORUMWATCH_CHAINS", json.dumps([settings.model_dump(mode="json")]))
        capsys.readouterr()
        argv = ["run", "--once", "--config", str(config), "--format", "json"]
        code = await asyncio.to_thread(cli.main, argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


# --- helpers ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _faulty_url(fault: MatrixFault, upstream: str) -> AsyncIterator[str]:
    if fault.refused:
        yield refused_url()
        return
    async with await start_fault_proxy(upstream) as proxy:
        for rule, injected in fault.injections:
            proxy.inject(rule, injected)
        yield proxy.base_url


def _monitor(
    session: aiohttp.ClientSession, clock: FakeClock, kind: Api, *endpoints: EndpointSettings
) -> ChainMonitor:
    settings = ChainSettings(
        name=kind.name,
        kind=kind.name,
        poll_interval_seconds=POLL_INTERVAL,
        max_clock_skew_seconds=MAX_CLOCK_SKEW,
        endpoints=list(endpoints),
        cosmos=CosmosSettings(chain_id="cosmoshub-4") if kind is COSMOS else None,
        generic=kind.generic,
        bittensor=BittensorSettings(netuids=[2]) if kind is BITTENSOR else None,
    )
    return ChainMonitor(settings, session, ReportBoard(), clock=clock)


def _alerts(report: ChainReport, settings: ChainSettings, now: float) -> set[str]:
    holding, _, _ = conditions(report, settings, {}, RuleMemory(), now)
    return {c.alert for c in holding}


def _requests(report: ChainReport, endpoint: str) -> dict[str, int]:
    view = next(e for e in report.endpoints if e.name == endpoint)
    return {str(outcome): count for outcome, count in view.requests.items() if count}


def _failed(counted: dict[str, int]) -> dict[str, int]:
    return {outcome: count for outcome, count in counted.items() if outcome != "ok"}


def _assert_failed_over(report: ChainReport, settings: ChainSettings, now: float) -> None:
    assert report.up, report.failures
    assert report.analysis is not None
    assert report.validator_set is not None
    assert report.validator_set.endpoint == "healthy"
    assert not _alerts(report, settings, now) & FALSE_ALERTS


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(WALL)


# --- the matrix --------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "fault"), CASES)
async def test_fault_fails_over(
    session: aiohttp.ClientSession, clock: FakeClock, kind: Kind, fault: MatrixFault
) -> None:
    """Faulty endpoint first, healthy second: alive, outcome counted, failover, no false alert."""
    async with kind.healthy(clock) as healthy_url, _faulty_url(fault, healthy_url) as faulty_url:
        monitor = _monitor(
            session,
            clock,
            kind,
            kind.endpoint("faulty", faulty_url, fault.deadline_seconds),
            kind.endpoint("healthy", healthy_url, 5.0),
        )
        first = await monitor.poll_once()
        _assert_failed_over(first, monitor.settings, clock.now)
        counted = _requests(first, "faulty")
        assert _failed(counted) == ({} if fault.outcome == "ok" else {fault.outcome: 1})
        if fault.refused:
            assert counted == {"connect_error": 1}  # its first request; nothing else is tried
        faulty_view = next(e for e in first.endpoints if e.name == "faulty")
        assert faulty_view.up is False
        expected_rejections = {} if fault.rejection is None else {fault.rejection: 1}
        assert dict(first.rejections) == expected_rejections
        if fault.stale:
            assert faulty_view.clock_skew_seconds is not None
            assert abs(faulty_view.clock_skew_seconds) >= DAY - MAX_CLOCK_SKEW

        clock.now += POLL_INTERVAL
        second = await monitor.poll_once()
        _assert_failed_over(second, monitor.settings, clock.now)
        if fault.skipped_after:
            assert _requests(second, "faulty") == counted  # in cooldown: not asked at all
        else:
            assert sum(_requests(second, "faulty").values()) > sum(counted.values())


@pytest.mark.parametrize(("kind", "fault"), CASES)
async def test_fault_alone_is_down_and_stale(
    session: aiohttp.ClientSession, clock: FakeClock, kind: Kind, fault: MatrixFault
) -> None:
    """Only the faulty endpoint: the chain is down without analysis, and DataStale holds."""
    async with kind.healthy(clock) as healthy_url, _faulty_url(fault, healthy_url) as faulty_url:
        monitor = _monitor(
            session, clock, kind, kind.endpoint("faulty", faulty_url, fault.deadline_seconds)
        )
        first = await monitor.poll_once()
        assert first.up is False
        assert first.analysis is None
        assert first.validator_set is None
        # A fresh start does not page at once.
        assert "DataStale" not in _alerts(first, monitor.settings, clock.now)
        clock.now += STALE_LIMIT + 1
        later = await monitor.poll_once()
        assert later.up is False
        assert later.analysis is None
        alerts = _alerts(later, monitor.settings, clock.now)
        assert "DataStale" in alerts
        assert not alerts & FALSE_ALERTS


@pytest.mark.parametrize(
    "kind", [k for k in KINDS if not k.shape.set_read_when_stale], ids=lambda k: k.name
)
async def test_stale_endpoint_is_never_asked_for_its_set(
    session: aiohttp.ClientSession, clock: FakeClock, kind: Kind
) -> None:
    """An endpoint whose probe dates it a day off is rejected before its set is requested."""
    async with kind.healthy(clock) as healthy_url, await start_fault_proxy(healthy_url) as proxy:
        proxy.inject(kind.shape.clock_rule, kind.shape.clock_shift(-DAY))
        monitor = _monitor(
            session,
            clock,
            kind,
            kind.endpoint("faulty", proxy.base_url, 5.0),
            kind.endpoint("healthy", healthy_url, 5.0),
        )
        report = await monitor.poll_once()
        _assert_failed_over(report, monitor.settings, clock.now)
        assert proxy.count(kind.shape.clock_rule) >= 1
        assert proxy.count(kind.shape.set_rule) == 0


@pytest.mark.parametrize(("api", "stage"), UNEXPECTED_CASES)
async def test_unexpected_exception_fails_over(
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    run_once_json: OnceRunner,
    api: Api,
    stage: Stage,
) -> None:
    """An exception no check foresaw, in one stage of the faulty endpoint's answers, is counted
    on it and logged by type, never by message; the healthy endpoint serves, with no alert
    but EndpointDown that it alone would not raise, and `run --once` judges the chain by it
    (WARNING: one endpoint healthy)."""
    _inject(monkeypatch, stage, api.name)
    clock = FakeClock(time.time())  # `run --once` reads the real clock
    async with api.healthy(clock) as url:
        healthy = api.endpoint("healthy", url, 5.0)
        alone = await _monitor(session, clock, api, healthy).poll_once()
        monitor = _monitor(session, clock, api, api.endpoint(FAULTY, url, 5.0), healthy)
        with capture_logs() as logs:
            report = await monitor.poll_once()
        code, out, err = await run_once_json(monitor.settings)
    assert report.up, report.failures
    assert report.validator_set is not None
    assert report.validator_set.endpoint == "healthy"
    assert report.analysis == alone.analysis
    alerts = _alerts(report, monitor.settings, clock.now)
    assert alerts - {"EndpointDown"} == _alerts(alone, monitor.settings, clock.now)
    assert _failed(_requests(report, FAULTY)) == (
        {} if stage.outcome == "ok" else {stage.outcome: 1}
    )
    assert dict(report.rejections) == ({} if stage.rejection is None else {stage.rejection: 1})
    assert next(e for e in report.endpoints if e.name == FAULTY).up is False
    assert (FAULTY, stage.error.__name__) in {(e.get("endpoint"), e.get("error")) for e in logs}
    assert SECRET not in repr(logs) + repr(report.failures) + out + err

    assert code == 1, out
    [chain] = json.loads(out)["chains"]
    assert chain["reasons"] == ["only 1 endpoint healthy: a single point of failure"]
    assert chain["nakamoto"] is not None
    assert [(e["name"], e["up"]) for e in chain["endpoints"]] == [
        (FAULTY, False),
        ("healthy", True),
    ]


def _documented(header: str) -> dict[str, dict[str, str]]:
    """The table of docs/fault-matrix.md whose header row starts with `header`: per row id (its
    first cell), the cell under each column."""
    lines = (Path(__file__).parents[2] / "docs" / "fault-matrix.md").read_text("utf-8").splitlines()
    top = next(index for index, line in enumerate(lines) if line.startswith(header))
    columns = [cell.strip() for cell in lines[top].split("|")[1:-1]]
    table = {}
    for line in itertools.takewhile(lambda line: line.startswith("|"), lines[top + 2 :]):
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        table[cells[0].strip("`")] = dict(zip(columns, cells, strict=True))
    return table


def _cell(outcome: str, rejection: str | None) -> str:
    return f"`{outcome}`" + (f" · `{rejection}`" if rejection else "")


def test_the_documented_table_states_every_case_as_tested() -> None:
    """docs/fault-matrix.md has a row per fault giving, per kind, the outcome and reason tested."""
    table = _documented("| fault | how")
    for kind in KINDS:
        for fault in kind.faults():
            expected = _cell(fault.outcome, fault.rejection)
            assert table[fault.id][kind.name] == expected, (kind.name, fault.id)
    assert set(table) == {fault.id for kind in KINDS for fault in kind.faults()}


def test_the_documented_unexpected_table_states_every_case_as_tested() -> None:
    """docs/fault-matrix.md has a row per stage of unexpected exception giving, for each of the
    five kinds, the outcome and reason tested."""
    table = _documented("| stage | how")
    for stage in STAGES:
        for api in APIS:
            assert table[stage.id][api.name] == _cell(stage.outcome, stage.rejection), stage.id
    assert set(table) == {stage.id for stage in STAGES}
    assert [api.name for api in APIS] == list(KIND_REGISTRY)  # every kind, in its order
