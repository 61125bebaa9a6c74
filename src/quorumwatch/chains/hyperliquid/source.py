"""Hyperliquid source: the validator set from the info API, through the endpoint pool."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from quorumwatch.chains.base import ChainSource, value_of
from quorumwatch.chains.hyperliquid.parse import parse_exchange_status, parse_validator_summaries

if TYPE_CHECKING:
    from quorumwatch.columns import ValidatorTable
    from quorumwatch.endpoints import Endpoint

INFO_PATH = "/info"
STATUS_REQUEST = {"type": "exchangeStatus"}
VALIDATORS_REQUEST = {"type": "validatorSummaries"}


class HyperliquidSource(ChainSource):
    """Polls `exchangeStatus` on every endpoint, then the set from the first fresh one.

    The status probe (weight 2 of the 1200/min budget) tells which endpoints answer and
    whether their clock is current; a stale endpoint (cached or lagging) is not used for
    the validator set, since its set could be just as stale.
    """

    kind = "hyperliquid"
    # This poll's probe results: why each candidate is not used, None if it may be.
    _problems: Mapping[Endpoint, Exception | None] = MappingProxyType({})

    async def _candidates(self) -> list[Endpoint]:
        """The endpoints to try, each probed at once before any is asked for the set."""
        candidates = await super()._candidates()
        problems = await asyncio.gather(*(self._probe(e) for e in candidates))
        self._problems = dict(zip(candidates, problems, strict=True))
        return candidates

    async def _attempt(self, endpoint: Endpoint) -> ValidatorTable:
        problem = self._problems[endpoint]
        if problem is not None:
            raise problem
        return value_of(
            await self._pool.post_json(
                endpoint, INFO_PATH, VALIDATORS_REQUEST, parse_validator_summaries
            )
        )

    async def _probe(self, endpoint: Endpoint) -> Exception | None:
        """None when the endpoint answers with a current clock, else why it is not used."""
        answer = await self._pool.post_json(
            endpoint, INFO_PATH, STATUS_REQUEST, parse_exchange_status
        )
        try:
            self._check_clock(endpoint, value_of(answer), subject="clock")
        except Exception as exc:  # raised by _attempt, in the failover loop, which judges it
            return exc
        return None
