"""The ordered failover every source shares, and endpoint comparison."""

from __future__ import annotations

import asyncio
from typing import ClassVar, cast

import aiohttp
import pytest
from structlog.testing import capture_logs

from quorumwatch.chains.base import (
    ChainSource,
    EndpointRejectedError,
    VersionedSet,
    received_text,
    value_of,
)
from quorumwatch.chains.kinds import KindName
from quorumwatch.columns import ValidatorTable
from quorumwatch.endpoints import Answer, Endpoint, EndpointPool
from quorumwatch.models import Outcome
from tests.builders import chain_settings, validator

SET_A = ValidatorTable.of([validator(1, 60), validator(2, 40)])
SET_B = ValidatorTable.of([validator(1, 60), validator(2, 41)])

Result = ValidatorTable | VersionedSet | BaseException


class ScriptedSource(ChainSource):
    """A source whose attempt on each endpoint gives a scripted result, recording the order."""

    kind: ClassVar[KindName] = "hyperliquid"

    def __init__(self, results: dict[str, Result], *, compare: bool = False) -> None:
        settings = chain_settings(len(results), compare_endpoints=compare)
        # The loop only orders and names endpoints: no request goes through the session.
        pool = EndpointPool(
            settings.endpoints, cast(aiohttp.ClientSession, None), max_response_bytes=1
        )
        super().__init__(pool, settings, clock=lambda: 5.0)
        self.pool = pool
        self.results = results
        self.tried: list[str] = []

    async def _attempt(self, endpoint: Endpoint) -> ValidatorTable | VersionedSet:
        self.tried.append(endpoint.name)
        result = self.results[endpoint.name]
        if isinstance(result, BaseException):
            raise result
        return result

    def check_clock(self, observed_at: float) -> Endpoint:
        """Check an answer from the first endpoint dated `observed_at`, when our clock reads 5
        and max_clock_skew_seconds is 60 (the default)."""
        endpoint = self.pool.endpoints[0]
        endpoint.up = True
        self._check_clock(endpoint, observed_at, subject="block")
        return endpoint


def answers(*results: Result) -> dict[str, Result]:
    return {f"ep{i}": result for i, result in enumerate(results)}


async def fetch(results: dict[str, Result], *, compare: bool = False) -> tuple[object, ...]:
    source = ScriptedSource(results, compare=compare)
    outcome = await source.fetch()
    served = outcome.validator_set.endpoint if outcome.validator_set else None
    return served, outcome.endpoints_disagree, tuple(source.tried), outcome.rejection_reasons


async def test_first_valid_endpoint_serves_and_later_ones_are_not_asked() -> None:
    """Without comparison the first endpoint that answers serves, and no other is asked."""
    served, disagree, tried, _ = await fetch(
        answers(EndpointRejectedError("down", "malformed_json"), SET_A, SET_B)
    )
    assert (served, disagree, tried) == ("ep1", None, ("ep0", "ep1"))


async def test_rejections_are_reported_and_none_served_when_all_fail() -> None:
    """When every endpoint is rejected, no set is served and each reason is reported."""
    served, _, _, reasons = await fetch(
        answers(EndpointRejectedError("a", "empty_set"), EndpointRejectedError("b"))
    )
    assert served is None
    assert reasons == ("empty_set",)


@pytest.mark.parametrize(
    ("second", "expected"),
    [(SET_A, False), (SET_B, True)],
)
async def test_comparison_reports_disagreement(second: ValidatorTable, expected: bool) -> None:
    """With comparison, the first set is served and a differing second set is flagged."""
    served, disagree, tried, _ = await fetch(answers(SET_A, second), compare=True)
    assert (served, disagree, tried) == ("ep0", expected, ("ep0", "ep1"))


async def test_sets_at_different_heights_are_not_compared() -> None:
    """Sets read at different heights (or epochs) give no verdict, even if they differ."""
    _, disagree, _, _ = await fetch(
        answers(VersionedSet(SET_A, 100), VersionedSet(SET_B, 101)), compare=True
    )
    assert disagree is None
    _, disagree, _, _ = await fetch(
        answers(VersionedSet(SET_A, 100), VersionedSet(SET_B, 100)), compare=True
    )
    assert disagree is True


async def test_no_second_answer_gives_no_verdict_and_keeps_the_first() -> None:
    """If no second endpoint answers, the first set is still served, with no verdict."""
    served, disagree, _, _ = await fetch(
        answers(SET_A, EndpointRejectedError("timeout")), compare=True
    )
    assert (served, disagree) == ("ep0", None)


async def test_the_served_set_has_the_kind_decimals_and_the_clock_time() -> None:
    """The set served is dated by the source's clock, in the decimals its kind declares."""
    result = await ScriptedSource(answers(SET_A)).fetch()
    assert result.validator_set is not None
    assert (result.validator_set.token_decimals, result.validator_set.fetched_at) == (8, 5.0)


def test_a_source_refuses_settings_without_its_section() -> None:
    """A kind with a settings section (here generic) refuses a chain configured without it."""

    class SectionedSource(ScriptedSource):
        kind = "generic"

    with pytest.raises(ValueError, match=r"kind generic needs a \[chains\.generic\] section"):
        SectionedSource(answers(SET_A))


def test_value_of_raises_with_the_outcome_and_data_reason() -> None:
    """value_of returns an ok value, and otherwise raises naming the outcome and path."""
    assert value_of(Answer("ep0", Outcome.OK, 0.1, value=3)) == 3
    with pytest.raises(EndpointRejectedError) as raised:
        value_of(Answer("ep0", Outcome.HTTP_5XX, 0.1, error="HTTP 503"), "/status")
    assert raised.value.description == "/status: http_5xx (HTTP 503)"
    assert raised.value.reason is None


async def test_an_endpoint_whose_set_is_rejected_is_marked_down() -> None:
    """An endpoint whose requests all succeeded but whose set was rejected is down after."""
    source = ScriptedSource(
        answers(EndpointRejectedError("the lists disagree", "pool_mismatch"), SET_A)
    )
    for endpoint in source.pool.endpoints:
        endpoint.up = True  # as after successful requests
    result = await source.fetch()
    assert result.validator_set is not None
    assert [e.up for e in source.pool.endpoints] == [False, True]


async def test_an_unexpected_exception_fails_only_its_endpoint() -> None:
    """An attempt raising what no check foresaw rejects its endpoint with reason `unexpected`
    (logged by type, never by message) and the next endpoint serves."""
    source = ScriptedSource(answers(RuntimeError("http://user:s3cret@api.example"), SET_A))
    for endpoint in source.pool.endpoints:
        endpoint.up = True  # as after successful requests
    with capture_logs() as logs:
        result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "ep1"
    assert (result.failures, result.rejection_reasons) == (
        ("ep0: unexpected (RuntimeError)",),
        ("unexpected",),
    )
    assert [e.up for e in source.pool.endpoints] == [False, True]
    assert [(e["endpoint"], e["error"]) for e in logs] == [("ep0", "RuntimeError")]
    assert "s3cret" not in repr(logs)


@pytest.mark.parametrize(
    "exit_",
    [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(1)],
    ids=lambda exit_: type(exit_).__name__,
)
async def test_cancellation_and_exits_end_the_fetch(exit_: BaseException) -> None:
    """CancelledError, KeyboardInterrupt and SystemExit from an attempt end the fetch as they
    are: no later endpoint is asked."""
    source = ScriptedSource(answers(exit_, SET_A))
    with pytest.raises(type(exit_)):
        await source.fetch()
    assert source.tried == ["ep0"]


@pytest.mark.parametrize(
    ("skew", "reason"), [(-61.0, "stale_block"), (61.0, "future_block")], ids=["past", "future"]
)
def test_check_clock_rejects_answers_dated_too_far_either_way(skew: float, reason: str) -> None:
    """An answer dated beyond max_skew from now, past or future, is rejected; skew is kept."""
    source = ScriptedSource(answers(SET_A))
    with pytest.raises(EndpointRejectedError) as caught:
        source.check_clock(5.0 + skew)
    assert caught.value.reason == reason
    endpoint = source.pool.endpoints[0]
    assert endpoint.up is False
    assert endpoint.clock_skew_seconds == skew


def test_check_clock_accepts_answers_within_the_skew() -> None:
    """An answer dated exactly max_skew away is accepted and its skew kept."""
    endpoint = ScriptedSource(answers(SET_A)).check_clock(5.0 - 60.0)
    assert endpoint.up is True
    assert endpoint.clock_skew_seconds == -60.0


def test_received_text_replaces_only_lone_surrogates() -> None:
    """Lone surrogates become U+FFFD; every other character, emoji included, is kept."""
    assert received_text("a\ud800b\udfffc") == "a\ufffdb\ufffdc"
    assert received_text("ok 🚀 \x1b[31m\u202e") == "ok 🚀 \x1b[31m\u202e"
    assert received_text("a\ud800b").encode() == "a\ufffdb".encode()
