"""Generic source: the validator set from any configured HTTP JSON endpoint, with failover."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from quorumwatch.chains.base import ChainSource, value_of
from quorumwatch.chains.generic.parse import GenericAnswer, parse_generic

if TYPE_CHECKING:
    from quorumwatch.columns import ValidatorTable
    from quorumwatch.config import GenericSettings
    from quorumwatch.endpoints import Answer, Endpoint


class GenericSource(ChainSource):
    """GETs (or POSTs) the configured path on each endpoint in order; first valid set wins."""

    kind = "generic"

    @functools.cached_property
    def _generic(self) -> GenericSettings:
        assert self._settings.generic is not None  # ChainSource checks the kind's section
        return self._settings.generic

    async def _attempt(self, endpoint: Endpoint) -> ValidatorTable:
        answer = value_of(await self._request(endpoint))
        if answer.observed_at is not None:
            self._check_clock(endpoint, answer.observed_at, subject="data")
        return answer.table

    async def _request(self, endpoint: Endpoint) -> Answer[GenericAnswer]:
        generic = self._generic
        decode = functools.partial(parse_generic, settings=generic)
        if generic.method == "POST":
            return await self._pool.post_json(endpoint, generic.path, generic.body, decode)
        return await self._pool.get_json(endpoint, generic.path, decode)
