"""Builders for domain objects in tests: reports without HTTP, their exposition, and a settable
clock."""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from quorumwatch.alerting.model import AlertEvent, AlertState, AlertStatus, Severity, fingerprint
from quorumwatch.analysis import analyse
from quorumwatch.chains.kinds import KINDS
from quorumwatch.columns import ValidatorTable
from quorumwatch.config import ChainSettings, Settings, load_settings
from quorumwatch.daemon import WatchedChains
from quorumwatch.endpoints import LATENCY_BUCKETS
from quorumwatch.entities import absent_members
from quorumwatch.exporter.collector import QuorumwatchCollector
from quorumwatch.jails.statistics import UNJAIL_DELAY_BUCKETS, JailCounters
from quorumwatch.models import Outcome, Validator, ValidatorSet
from quorumwatch.report import (
    ChainReport,
    EndpointView,
    JailReport,
    ReportBoard,
    SinkStatus,
    SubnetListing,
)


class FakeClock:
    """A clock that reads `now` until a test moves it: injected as a wall or monotonic clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def address(index: int) -> str:
    """The 40-hex-digit address 0x…<index>."""
    return f"0x{index:040x}"


def validator(
    index: int,
    stake: int = 1000,
    *,
    jailed: bool = False,
    active: bool = True,
    name: str = "",
    unjailable_after_ms: int | None = None,
) -> Validator:
    """A validator at address(index), named "validator <index>" unless `name` is given, with
    the given stake in base units."""
    return Validator(
        address=address(index),
        name=name or f"validator {index}",
        stake=stake,
        in_consensus_set=active,
        jailed=jailed,
        unjailable_after_ms=unjailable_after_ms,
        uptime_ratio={"1d": 1.0, "7d": 0.99},
    )


def chain_settings(endpoints: int = 2, **overrides: Any) -> ChainSettings:
    document: dict[str, Any] = {
        "name": "hyperliquid",
        "kind": "hyperliquid",
        "endpoints": [
            {"name": f"ep{i}", "url": f"http://127.0.0.1:{10000 + i}"} for i in range(endpoints)
        ],
    }
    document.update(overrides)
    return ChainSettings.model_validate(document)


def daemon_settings(store: Path, **sections: Any) -> Settings:
    """The daemon's settings for a test: /metrics on a free loopback port, the store at
    `store`, and the other sections as given (chains=[...], mqtt={...})."""
    return load_settings(
        None, metrics={"listen": "127.0.0.1:0"}, storage={"path": str(store)}, **sections
    )


def equal_stakes(addresses: Sequence[str]) -> list[dict[str, str]]:
    """A simulator scenario's validators: 1000 HYPE each, named `validator <index>`."""
    return [
        {"validator": v, "name": f"validator {i}", "stake_hype": "1000"}
        for i, v in enumerate(addresses)
    ]


def endpoint_view(name: str, *, up: bool = True, latency: float = 0.2) -> EndpointView:
    return EndpointView(
        name=name,
        up=up,
        requests={Outcome.OK: 3, Outcome.TIMEOUT: 1},
        latency_bucket_counts=tuple(4 if latency <= b else 0 for b in LATENCY_BUCKETS),
        latency_sum=latency * 4,
        latency_count=4,
        last_latency_seconds=latency,
        availability={"5m": 0.75, "1h": 0.75, "24h": None},
        clock_skew_seconds=-0.4,
    )


def report(
    validators: Sequence[Validator] | None,
    *,
    entity_of: Mapping[str, str] | None = None,
    endpoints_up: Sequence[bool] = (True, True),
    settings: ChainSettings | None = None,
    failures: tuple[str, ...] = (),
    jails: JailReport | None = None,
    finality_lag_epochs: int | None = None,
    consensus_threshold: Fraction | None = None,
    block_authorities: int | None = None,
) -> ChainReport:
    """A report as a poll would publish it: analysed when `validators` is not None, with
    the jail history `jails` (none by default)."""
    entity_map = MappingProxyType(dict(entity_of or {}))
    settings = settings or chain_settings(endpoints=len(endpoints_up))
    validator_set = (
        ValidatorSet(
            ValidatorTable.of(validators), token_decimals=8, endpoint="ep0", fetched_at=1000.0
        )
        if validators is not None
        else None
    )
    analysis = analyse(validator_set, entity_map) if validator_set else None
    return ChainReport(
        chain=settings.name,
        polled_at=1000.0,
        up=analysis is not None,
        validator_set=validator_set,
        analysis=analysis,
        entity_of=entity_map,
        failures=failures,
        last_success_at=1000.0 if analysis else 900.0,
        endpoints=tuple(endpoint_view(f"ep{i}", up=u) for i, u in enumerate(endpoints_up)),
        rejections=MappingProxyType({"empty_set": 2} if analysis is None else {}),
        poll_duration_seconds=0.5,
        totals=validator_set.table.totals() if validator_set else None,
        exported_validators=(
            validator_set.table.rows(
                validator_set.table.largest(settings.max_validator_series).tolist()
            )
            if validator_set
            else ()
        ),
        jails=jails,
        finality_lag_epochs=finality_lag_epochs if analysis else None,
        consensus_threshold=consensus_threshold if analysis else None,
        block_authorities=block_authorities if analysis else None,
        absent_members=MappingProxyType(
            {
                entity: len(members)
                for entity, members in absent_members(
                    entity_map, validator_set.table.addresses
                ).items()
            }
            if validator_set
            else {}
        ),
    )


def exposition(
    *reports: ChainReport,
    now: float | None = None,
    sinks: SinkStatus | None = None,
    max_series: int = 100,
    without_validator_series: Collection[str] = frozenset(),
) -> str:
    """The text /metrics serves with these reports (and sink status) on the board; elapsed
    times are measured to `now` when it is given; `max_series` caps per-validator series, and
    the chains in `without_validator_series` have none."""
    board = ReportBoard()
    for published in reports:
        board.publish(published)
    if sinks is not None:
        board.sinks = sinks
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        collector(
            board,
            max_series=max_series,
            clock=time.time if now is None else lambda: now,
            without_validator_series=without_validator_series,
        )
    )
    return generate_latest(registry).decode()


def jail_history(jailed: str, since: float, *, storm: bool = False) -> JailReport:
    """`jailed` jailed twice, in jail since `since`, and once unjailed 90 s after its
    unjailableAfter."""
    return JailReport(
        counters=JailCounters(
            jails=2,
            validator_jails=MappingProxyType({jailed: 2}),
            unjail_delay_bucket_counts=tuple(int(bound >= 90) for bound in UNJAIL_DELAY_BUCKETS),
            unjail_delay_sum=90.0,
            unjail_delay_count=1,
        ),
        windows=MappingProxyType({"1h": 1, "24h": 2, "7d": 2}),
        storm=storm,
        jailed_since=MappingProxyType({jailed: since}),
        names=MappingProxyType({jailed: "jailed validator"}),
    )


def every_kind_board(now: float) -> ReportBoard:
    """A board as a daemon watching one chain of every kind holds at `now`: each chain named
    after its kind, analysed, with jail history and its kind's own data (a Cosmos jail risk, a
    delinquent Solana validator, Ethereum's finality lag, two endpoints compared), plus a chain
    that is down, the status of both alert sinks and the subnet list of a Bittensor chain of
    "all" subnets."""
    kind_data: dict[str, dict[str, Any]] = {
        "cosmos": {"jail_risk_ratio": 0.5},
        "solana": {"delinquent": True},
    }
    board = ReportBoard()
    for kind in KINDS:
        validators = [
            validator(1, 400),
            validator(2, 300),
            dataclasses.replace(validator(3, 200), **kind_data.get(kind, {})),
            validator(4, 100, jailed=True),
            validator(5, 50, active=False),
        ]
        published = report(
            validators,
            entity_of={address(1): "Operator", address(2): "Operator"},
            settings=chain_settings(name=kind),
            jails=jail_history(address(4), now - 600),
            finality_lag_epochs=2 if kind == "ethereum" else None,
            consensus_threshold=Fraction(32767, 65535) if kind == "bittensor" else None,
            block_authorities=3 if kind == "bittensor" else None,
        )
        board.publish(dataclasses.replace(published, endpoints_disagree=False))
    jails = jail_history(address(4), now - 600, storm=True)
    board.publish(report(None, settings=chain_settings(name="down"), jails=jails))
    board.sinks = SinkStatus(
        outbox_events=1,
        outbox_oldest_created_at=now - 5,
        outbox_dropped_events=0,
        events_generated=MappingProxyType({("EntityCanHalt", "firing"): 1}),
        mqtt_connected=True,
        alertmanager_failures=0,
    )
    board.listed(SubnetListing("tao", last_success_at=now - 30, failures=2))
    return board


def watched_chains(chains: Sequence[ChainSettings]) -> WatchedChains:
    """The daemon's watched chains, polling these configured chains."""
    watched = WatchedChains(chains)
    for chain in chains:
        watched.add(chain)
    return watched


ALERT_T0 = 1_750_000_000.0


def alert_state(
    alert: str = "EntityCanHalt",
    *,
    chain: str = "hyperliquid",
    entity: str = "e1",
    firing: bool = True,
) -> AlertState:
    """The state of an EntityCanHalt-style alert, pending since ALERT_T0 (firing from + 60)."""
    labels = {"chain": chain, "entity": entity}
    return AlertState(
        fingerprint=fingerprint(alert, labels),
        alert=alert,
        severity=Severity.CRITICAL,
        chain=chain,
        labels=labels,
        pending_since=ALERT_T0,
        starts_at=ALERT_T0 + 60 if firing else None,
        summary=f"{entity} can halt {chain}",
        description="holds more than a third of the stake",
        value=0.4,
        threshold=1 / 3,
    )


def alert_event(
    event_id: str,
    alert: str = "EntityCanHalt",
    *,
    chain: str = "hyperliquid",
    entity: str = "e1",
    status: AlertStatus = AlertStatus.FIRING,
) -> AlertEvent:
    """An EntityCanHalt-style event that fired at ALERT_T0 + 60 (resolved at + 120)."""
    labels = {"chain": chain, "entity": entity}
    return AlertEvent(
        event_id=event_id,
        fingerprint=fingerprint(alert, labels),
        alert=alert,
        status=status,
        severity=Severity.CRITICAL,
        chain=chain,
        labels=labels,
        summary=f"{entity} can halt {chain}",
        description="holds more than a third of the stake",
        value=0.4,
        threshold=1 / 3,
        starts_at=ALERT_T0 + 60,
        ends_at=ALERT_T0 + 120 if status is AlertStatus.RESOLVED else None,
        observed_at=ALERT_T0 + 120,
    )


def collector(
    board: ReportBoard,
    *,
    max_series: int = 100,
    clock: Callable[[], float] = time.time,
    without_validator_series: Collection[str] = frozenset(),
) -> QuorumwatchCollector:
    """The daemon's collector over `board`, with the same per-validator series cap for every
    chain (100 is the configuration's default) and none for `without_validator_series`."""
    return QuorumwatchCollector(
        board,
        defaultdict(lambda: max_series),
        clock,
        without_validator_series=without_validator_series,
    )
