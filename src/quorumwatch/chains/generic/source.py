"""Generic source: the validator set from any configured HTTP JSON endpoint, with failover."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from quorumwatch.chains.base import (
    FetchResult,
    check_clock,
    first_valid_set,
    value_of,
)
from quorumwatch.chains.generic.parse import GenericAnswer, parse_generic
from quorumwatch.endpoints import Answer, Endpoint, EndpointPool
from quorumwatch.models import Validator

if TYPE_CHECKING:
    from quorumwatch.config import ChainSettings, GenericSettings


class GenericSource:
    """GETs (or POSTs) the configured path on each endpoint in order; first valid set wins.

    An endpoint waiting out a Retry-After is skipped; every failure and every rejection
    reason along the way is reported with the result.
    """

    def __init__(
        self,
        pool: EndpointPool,
        settings: ChainSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.generic is None:
            raise ValueError("kind generic needs a [chains.generic] section")
        self._pool = pool
        self._settings: GenericSettings = settings.generic
        self._compare = settings.compare_endpoints
        self._max_skew = settings.max_clock_skew_seconds
        self._decode = functools.partial(parse_generic, settings=settings.generic)
        self._clock = clock

    async def fetch(self) -> FetchResult:
        return await first_valid_set(
            self._pool,
            self._attempt,
            token_decimals=self._settings.token_decimals,
            clock=self._clock,
            compare=self._compare,
        )

    async def _attempt(self, endpoint: Endpoint) -> tuple[Validator, ...]:
        answer = value_of(await self._request(endpoint))
        if answer.observed_at is not None:
            check_clock(
                endpoint,
                answer.observed_at,
                now=self._clock(),
                max_skew=self._max_skew,
                subject="data",
            )
        return answer.validators

    async def _request(self, endpoint: Endpoint) -> Answer[GenericAnswer]:
        settings = self._settings
        if settings.method == "POST":
            return await self._pool.post_json(endpoint, settings.path, settings.body, self._decode)
        return await self._pool.get_json(endpoint, settings.path, self._decode)
