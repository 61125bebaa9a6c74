"""A simulated Hyperliquid info API, driven by scenario files, for tests, demos and benchmarks."""

from quorumwatch.simulator.scenario import (
    Scenario,
    ScenarioError,
    available_scenarios,
    load_scenario,
    parse_scenario,
    render_validator_summaries,
)
from quorumwatch.simulator.server import RunningSimulator, start_simulator

__all__ = [
    "RunningSimulator",
    "Scenario",
    "ScenarioError",
    "available_scenarios",
    "load_scenario",
    "parse_scenario",
    "render_validator_summaries",
    "start_simulator",
]
