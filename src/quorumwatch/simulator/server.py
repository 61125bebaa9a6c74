"""A loopback aiohttp server that plays a scenario as the Hyperliquid info API.

``POST /info`` answers ``validatorSummaries`` and ``exchangeStatus`` like the real API (anything
else gets its 422). Tests steer the timeline through ``GET /_sim/state``, ``POST /_sim/step`` and
``POST /_sim/goto?step=N``.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, assert_never

from aiohttp import web

from quorumwatch.simulator.scenario import (
    EmptySetFault,
    HttpStatusFault,
    LatencyFault,
    MalformedJsonFault,
    RawFault,
    TimeoutFault,
    render_validator_summaries,
)
from quorumwatch.simulator.serving import LoopbackServer

if TYPE_CHECKING:
    from collections.abc import Callable

    from quorumwatch.simulator.scenario import (
        Fault,
        JsonObject,
        RequestType,
        Scenario,
        Step,
    )

DESERIALIZE_ERROR = "Failed to deserialize the JSON body into the target type"
_REQUEST_TYPES: tuple[RequestType, ...] = ("validatorSummaries", "exchangeStatus")


class _Timeline:
    """The step being served; it advances after `repeat` validatorSummaries requests."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.step_index = 0
        self.requests = 0
        self._served_in_step = 0

    @property
    def current_step(self) -> Step:
        return self.scenario.steps[self.step_index]

    def take_summaries_step(self) -> Step:
        """The step for this validatorSummaries request, counted before any fault can stall it."""
        step = self.current_step
        self.requests += 1
        self._served_in_step += 1
        if self._served_in_step >= step.repeat:
            self.advance()
        return step

    def advance(self) -> None:
        self.goto(min(self.step_index + 1, len(self.scenario.steps) - 1))

    def goto(self, index: int) -> None:
        if not 0 <= index < len(self.scenario.steps):
            raise ValueError(f"step must be between 0 and {len(self.scenario.steps) - 1}")
        self.step_index = index
        self._served_in_step = 0

    def state(self) -> JsonObject:
        return {
            "scenario": self.scenario.name,
            "step": self.step_index,
            "steps": len(self.scenario.steps),
            "requests": self.requests,
        }


class RunningSimulator(LoopbackServer):
    """The Hyperliquid info API playing a scenario; see `start_simulator`."""

    def __init__(self, scenario: Scenario, clock: Callable[[], float]) -> None:
        super().__init__()
        self.timeline = _Timeline(scenario)
        self._clock = clock

    @property
    def step_index(self) -> int:
        return self.timeline.step_index

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/info", self._info)
        app.router.add_get("/_sim/state", self._state)
        app.router.add_post("/_sim/step", self._step)
        app.router.add_post("/_sim/goto", self._goto)
        return app

    async def _info(self, request: web.Request) -> web.Response:
        request_type = await _request_type(request)
        if request_type is None:
            return web.Response(status=422, text=DESERIALIZE_ERROR)
        if request_type == "validatorSummaries":
            step = self.timeline.take_summaries_step()
            payload: list[JsonObject] | JsonObject = render_validator_summaries(step)
        else:
            step = self.timeline.current_step
            payload = self._exchange_status(step)
        fault = step.fault_for(request_type)
        if fault is None:
            return web.json_response(payload)
        return await self._faulted(fault, payload)

    def _exchange_status(self, step: Step) -> JsonObject:
        now_ms = round((self._clock() + step.clock_offset_seconds) * 1000)
        return {"time": now_ms, "specialStatuses": None}

    async def _faulted(self, fault: Fault, payload: list[JsonObject] | JsonObject) -> web.Response:
        match fault:
            case LatencyFault(seconds=seconds):
                await self.pause(seconds)
                return web.json_response(payload)
            case HttpStatusFault():
                return _status_response(fault)
            case TimeoutFault(seconds=seconds):
                await self.pause(seconds)
                # What CloudFront sends when the origin never answers.
                return web.Response(status=504, text="Gateway Timeout")
            case MalformedJsonFault():
                # Payloads are arrays or objects, so any strict prefix is invalid JSON.
                text = json.dumps(payload)
                return web.Response(text=text[: len(text) // 2], content_type="application/json")
            case EmptySetFault():
                return web.json_response([])
            case RawFault(body=body):
                return web.json_response(body)
        assert_never(fault)

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.timeline.state())

    async def _step(self, request: web.Request) -> web.Response:
        self.timeline.advance()
        return web.json_response(self.timeline.state())

    async def _goto(self, request: web.Request) -> web.Response:
        try:
            self.timeline.goto(int(request.query.get("step", "")))
        except ValueError as exc:
            return web.Response(status=400, text=f"bad step: {exc}")
        return web.json_response(self.timeline.state())


async def _request_type(request: web.Request) -> RequestType | None:
    try:
        body = await request.json()
    except ValueError:  # covers both undecodable bytes and invalid JSON
        return None
    if isinstance(body, dict):
        for request_type in _REQUEST_TYPES:
            if body.get("type") == request_type:
                return request_type
    return None


def _status_response(fault: HttpStatusFault) -> web.Response:
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    return web.Response(
        status=fault.status, headers=headers, text=fault.body, content_type=fault.content_type
    )


async def start_simulator(
    scenario: Scenario,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    clock: Callable[[], float] = time.time,
) -> RunningSimulator:
    """Serve `scenario` on host:port (0 picks a free port) until the result is closed."""
    simulator = RunningSimulator(scenario, clock)
    await simulator.serve(simulator.build(), host, port)
    return simulator
