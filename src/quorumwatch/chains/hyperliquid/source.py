"""Hyperliquid source: the validator set from the info API, through the endpoint pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from quorumwatch.chains.base import (
    EndpointRejectedError,
    FetchResult,
    check_clock,
    first_valid_set,
    value_of,
)
from quorumwatch.chains.hyperliquid.parse import (
    TOKEN_DECIMALS,
    parse_exchange_status,
    parse_validator_summaries,
)
from quorumwatch.endpoints import Endpoint, EndpointPool
from quorumwatch.models import Validator

INFO_PATH = "/info"
STATUS_REQUEST = {"type": "exchangeStatus"}
VALIDATORS_REQUEST = {"type": "validatorSummaries"}


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
        compare: bool = False,
    ) -> None:
        self._pool = pool
        self._compare = compare
        self._max_skew = max_clock_skew_seconds
        self._clock = clock

    async def fetch(self) -> FetchResult:
        candidates = self._pool.available()
        problems = dict(
            zip(
                candidates, await asyncio.gather(*(self._probe(e) for e in candidates)), strict=True
            )
        )

        async def attempt(endpoint: Endpoint) -> tuple[Validator, ...]:
            problem = problems[endpoint]
            if problem is not None:
                raise problem
            return value_of(
                await self._pool.post_json(
                    endpoint, INFO_PATH, VALIDATORS_REQUEST, parse_validator_summaries
                )
            )

        return await first_valid_set(
            self._pool,
            attempt,
            token_decimals=TOKEN_DECIMALS,
            clock=self._clock,
            candidates=candidates,
            compare=self._compare,
        )

    async def _probe(self, endpoint: Endpoint) -> EndpointRejectedError | None:
        """None when the endpoint answers with a current clock, else why it is not used."""
        answer = await self._pool.post_json(
            endpoint, INFO_PATH, STATUS_REQUEST, parse_exchange_status
        )
        try:
            node_time = value_of(answer)
            check_clock(
                endpoint, node_time, now=self._clock(), max_skew=self._max_skew, subject="clock"
            )
        except EndpointRejectedError as exc:
            return exc
        return None
