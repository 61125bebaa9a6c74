"""Hyperliquid source: the validator set from the info API, through the endpoint pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from quorumwatch.chains.base import FetchResult
from quorumwatch.chains.hyperliquid.parse import (
    TOKEN_DECIMALS,
    parse_exchange_status,
    parse_validator_summaries,
)
from quorumwatch.endpoints import Answer, Endpoint, EndpointPool, Outcome
from quorumwatch.models import ValidatorSet

INFO_PATH = "/info"
STATUS_REQUEST = {"type": "exchangeStatus"}
VALIDATORS_REQUEST = {"type": "validatorSummaries"}

log = structlog.get_logger(__name__)


class HyperliquidSource:
    """Polls `exchangeStatus` on every endpoint, then the set from the first fresh one.

    The status probe (weight 2 of the 1200/min budget) tells which endpoints answer and
    whether their clock is current; a stale endpoint (cached or lagging) is not used for
    the validator set, since its set could be just as stale.
    """

    def __init__(
        self,
        pool: EndpointPool,
        *,
        max_clock_skew_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._max_skew = max_clock_skew_seconds
        self._clock = clock

    async def fetch(self) -> FetchResult:
        candidates = self._pool.available()
        failures = [
            f"{e.name}: waiting out Retry-After"
            for e in self._pool.endpoints
            if e not in candidates
        ]
        statuses = await asyncio.gather(*(self._probe(e) for e in candidates))
        rejections: list[str] = []
        for endpoint, problem in zip(candidates, statuses, strict=True):
            if problem:
                failures.append(f"{endpoint.name}: {problem}")
                continue
            answer = await self._pool.post_json(
                endpoint, INFO_PATH, VALIDATORS_REQUEST, parse_validator_summaries
            )
            if answer.outcome is Outcome.OK and answer.value is not None:
                return FetchResult(
                    ValidatorSet(
                        validators=answer.value,
                        token_decimals=TOKEN_DECIMALS,
                        endpoint=endpoint.name,
                        fetched_at=self._clock(),
                    ),
                    tuple(failures),
                    tuple(rejections),
                )
            failures.append(f"{endpoint.name}: {_describe(answer)}")
            if answer.data_error is not None:
                rejections.append(answer.data_error.reason)
        return FetchResult(None, tuple(failures), tuple(rejections))

    async def _probe(self, endpoint: Endpoint) -> str:
        """Empty when the endpoint answers with a current clock, else what is wrong."""
        answer = await self._pool.post_json(
            endpoint, INFO_PATH, STATUS_REQUEST, parse_exchange_status
        )
        if answer.outcome is not Outcome.OK or answer.value is None:
            return _describe(answer)
        skew = answer.value - self._clock()
        endpoint.clock_skew_seconds = skew
        if abs(skew) > self._max_skew:
            endpoint.up = False
            log.warning("endpoint clock skewed", endpoint=endpoint.name, skew_seconds=skew)
            return f"stale: clock off by {skew:.0f}s"
        return ""


def _describe(answer: Answer[Any]) -> str:
    detail = f" ({answer.error})" if answer.error else ""
    return f"{answer.outcome}{detail}"
