"""Generic source: the validator set from any configured HTTP JSON endpoint, with failover."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quorumwatch.chains.base import FetchResult
from quorumwatch.chains.generic.parse import parse_generic
from quorumwatch.endpoints import Answer, Endpoint, EndpointPool, Outcome
from quorumwatch.models import Validator, ValidatorSet

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
        self._decode = functools.partial(parse_generic, settings=settings.generic)
        self._clock = clock

    async def fetch(self) -> FetchResult:
        candidates = self._pool.available()
        failures = [
            f"{e.name}: waiting out Retry-After"
            for e in self._pool.endpoints
            if e not in candidates
        ]
        rejections: list[str] = []
        for endpoint in candidates:
            answer = await self._request(endpoint)
            if answer.outcome is Outcome.OK and answer.value is not None:
                return FetchResult(
                    ValidatorSet(
                        validators=answer.value,
                        token_decimals=self._settings.token_decimals,
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

    async def _request(self, endpoint: Endpoint) -> Answer[tuple[Validator, ...]]:
        settings = self._settings
        if settings.method == "POST":
            return await self._pool.post_json(endpoint, settings.path, settings.body, self._decode)
        return await self._pool.get_json(endpoint, settings.path, self._decode)


def _describe(answer: Answer[Any]) -> str:
    detail = f" ({answer.error})" if answer.error else ""
    return f"{answer.outcome}{detail}"
