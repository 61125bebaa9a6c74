"""The per-chain poll loop: fetch, validate, analyse, publish one immutable report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import structlog

from quorumwatch.analysis import AnalysisError, ChainAnalysis, analyse
from quorumwatch.chains import make_source
from quorumwatch.columns import JAILED_CODES, UNATTRIBUTED, StatusTotals
from quorumwatch.endpoints import EndpointPool, http_session
from quorumwatch.entities import absent_members, entity_map, identity_entity
from quorumwatch.memory import release_free_memory
from quorumwatch.models import Validator, ValidatorSet
from quorumwatch.report import ChainReport, JailReport, ReportBoard

if TYPE_CHECKING:
    from fractions import Fraction

    import aiohttp
    from numpy.typing import NDArray

    from quorumwatch.config import ChainSettings
    from quorumwatch.jails.tracker import JailTracker

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Digest:
    analysis: ChainAnalysis
    totals: StatusTotals
    exported_validators: tuple[Validator, ...]
    entity_of: Mapping[str, str]


def _digest(validator_set: ValidatorSet, entity_of: Mapping[str, str], cap: int) -> _Digest:
    """All a report derives from a valid set, so that a scrape only has to render it: the
    analysis materialises the `cap` largest entities, and the `cap` largest validators, those
    that get their own series."""
    table = validator_set.table
    exported = table.largest(cap)
    return _Digest(
        analyse(validator_set, entity_of, top=cap),
        table.totals(),
        table.rows(exported.tolist()),
        _named_entities(validator_set, exported, entity_of),
    )


def _named_entities(
    validator_set: ValidatorSet, exported: NDArray[np.intp], entity_of: Mapping[str, str]
) -> Mapping[str, str]:
    """The entity of each validator a report names one by one (exported or jailed), where
    the source attributed the set itself; otherwise `entity_of`, which already holds them."""
    attribution = validator_set.attribution
    if attribution is None:
        return entity_of
    table = validator_set.table
    rows = np.union1d(exported, table.rows_with_status(*JAILED_CODES))
    named = rows[attribution.entity_index[rows] != UNATTRIBUTED].tolist()
    names = attribution.entity_names
    return MappingProxyType(
        {table.addresses[row]: names[attribution.entity_index[row]] for row in named}
    )


class ChainMonitor:
    """Polls one chain on its own schedule and publishes each report to the board."""

    def __init__(
        self,
        settings: ChainSettings,
        session: aiohttp.ClientSession,
        board: ReportBoard,
        *,
        clock: Callable[[], float] = time.time,
        jails: JailTracker | None = None,
        on_report: Callable[[ChainReport], Awaitable[object]] | None = None,
    ) -> None:
        self.settings = settings
        self._on_report = on_report
        # Without a tracker (the --once probe: no store) there is no jail history.
        self._jails = jails
        self._board = board
        self._clock = clock
        self._pool = EndpointPool(
            settings.endpoints,
            session,
            max_response_bytes=settings.max_response_bytes,
            clock=clock,
        )
        self._source = make_source(settings, self._pool, clock)
        self._entity_of = MappingProxyType(dict(entity_map(settings.kind, settings.entities)))
        self._rejections: dict[str, int] = {}
        self._last_success_at: float | None = None
        self._monitoring_since = clock()
        self._endpoints_disagree: bool | None = None
        self._absent: set[str] = set()

    async def poll_once(self) -> ChainReport:
        # Every log line of this poll, the pool's and the source's included, names the chain.
        with structlog.contextvars.bound_contextvars(chain=self.settings.name):
            report = await self._poll()
            if self._on_report is not None:
                try:
                    await self._on_report(report)
                except Exception:  # alerting must never stop monitoring
                    log.exception("report handler failed")
            # What the poll freed: so that the resident size between polls is what is held.
            await asyncio.to_thread(release_free_memory)
            return report

    async def _poll(self) -> ChainReport:
        started = time.monotonic()
        result = await self._source.fetch()
        self._endpoints_disagree = result.endpoints_disagree
        validator_set = result.validator_set
        failures = list(result.failures)
        for reason in result.rejection_reasons:
            self._rejections[reason] = self._rejections.get(reason, 0) + 1
        entity_of: Mapping[str, str] = self._entity_of
        if validator_set is not None:
            entity_of = self._entities_for(validator_set)
            try:
                # Large sets take tens of milliseconds to analyse: keep the loop responsive.
                digest = await asyncio.to_thread(
                    _digest,
                    validator_set,
                    entity_of,
                    self.settings.max_validator_series,
                )
            except AnalysisError as exc:
                self._rejections["zero_stake"] = self._rejections.get("zero_stake", 0) + 1
                failures.append(f"{validator_set.endpoint}: {exc}")
            else:
                log.info("poll ok", endpoint=validator_set.endpoint)
                now = self._clock()
                jails = await self._observe_jails(validator_set, digest, now)
                absent = self._absent_members(validator_set)
                return self._publish(
                    started,
                    now,
                    failures,
                    validator_set=validator_set,
                    digest=digest,
                    jails=jails,
                    finality_lag_epochs=result.finality_lag_epochs,
                    consensus_threshold=result.consensus_threshold,
                    block_authorities=result.block_authorities,
                    absent_members=absent,
                )
        log.warning("poll failed: no valid validator set", failures=failures)
        now = self._clock()
        return self._publish(
            started, now, failures, jails=await self._observe_jails(None, None, now)
        )

    def _entities_for(self, validator_set: ValidatorSet) -> Mapping[str, str]:
        """The entity map for this set (unless the source attributed it itself, applying the
        configured map): with `group_by_identity`, validators declaring the same identity are
        one entity, unless the configured or built-in map says otherwise."""
        cosmos = self.settings.cosmos
        hints = validator_set.table.entity_hints
        if cosmos is None or not cosmos.group_by_identity or hints is None:
            return self._entity_of
        addresses = validator_set.table.addresses
        declared = {
            address: identity_entity(hint)
            for address, hint in zip(addresses, hints, strict=True)
            if hint
        }
        return MappingProxyType({**declared, **self._entity_of})

    def _absent_members(self, validator_set: ValidatorSet) -> Mapping[str, int]:
        """How many members of each mapped entity the set lacks, each newly absent one logged
        once: an entity map that drifts from the chain (a renamed or departed node) would
        otherwise quietly shrink the entity."""
        if validator_set.attribution is not None or not self._entity_of:
            return MappingProxyType({})
        absent = absent_members(self._entity_of, validator_set.table.addresses)
        now_absent = set().union(*absent.values())
        for member in sorted(now_absent - self._absent):
            log.warning(
                "entity member not in the validator set",
                entity=self._entity_of[member],
                member=member,
            )
        self._absent = now_absent
        return MappingProxyType({entity: len(members) for entity, members in absent.items()})

    async def _observe_jails(
        self, validator_set: ValidatorSet | None, digest: _Digest | None, now: float
    ) -> JailReport | None:
        """Jail history after this poll; None without a tracker, or if the store failed."""
        if self._jails is None:
            return None
        if validator_set is None or digest is None:
            return await self._jails.after_poll(None, 0, now)
        return await self._jails.after_poll(validator_set.table, digest.analysis.total_stake, now)

    def _publish(
        self,
        started: float,
        now: float,
        failures: list[str],
        *,
        validator_set: ValidatorSet | None = None,
        digest: _Digest | None = None,
        jails: JailReport | None = None,
        finality_lag_epochs: int | None = None,
        consensus_threshold: Fraction | None = None,
        block_authorities: int | None = None,
        absent_members: Mapping[str, int] | None = None,
    ) -> ChainReport:
        """Publish a report; without both a set and its digest, the chain is down."""
        up = validator_set is not None and digest is not None
        if up:
            self._last_success_at = now
        report = ChainReport(
            chain=self.settings.name,
            polled_at=now,
            up=up,
            validator_set=validator_set if up else None,
            analysis=digest.analysis if digest and up else None,
            totals=digest.totals if digest and up else None,
            exported_validators=digest.exported_validators if digest and up else (),
            entity_of=digest.entity_of if digest and up else self._entity_of,
            failures=tuple(failures),
            last_success_at=self._last_success_at,
            endpoints=self._pool.views(),
            rejections=MappingProxyType(dict(self._rejections)),
            poll_duration_seconds=time.monotonic() - started,
            jails=jails,
            monitoring_since=self._monitoring_since,
            endpoints_disagree=self._endpoints_disagree,
            finality_lag_epochs=finality_lag_epochs if up else None,
            consensus_threshold=consensus_threshold if up else None,
            block_authorities=block_authorities if up else None,
            absent_members=absent_members if up and absent_members else MappingProxyType({}),
        )
        self._board.publish(report)
        return report

    async def run(self) -> None:
        """Poll forever at the configured interval, measured from the start of each poll."""
        interval = self.settings.poll_interval_seconds
        while True:
            started = time.monotonic()
            try:
                await self.poll_once()
            except Exception as exc:  # a bug in one poll must not end monitoring of the chain
                log.exception("poll crashed", chain=self.settings.name)
                # The previous report must not stay on the board as if it were current.
                self._publish(started, self._clock(), [f"poll crashed: {type(exc).__name__}"])
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


async def poll_once(chains: list[ChainSettings]) -> list[ChainReport]:
    """One poll of each chain, concurrently: the `run --once` probe.

    It never touches the store: a probe running beside the daemon must not record events.
    """
    board = ReportBoard()
    async with http_session() as session:
        monitors = [ChainMonitor(chain, session, board) for chain in chains]
        return list(await asyncio.gather(*(m.poll_once() for m in monitors)))
