"""`quorumwatch run --once` as a subprocess against the simulator over loopback."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from quorumwatch.simulator import load_scenario, start_simulator
from quorumwatch.simulator.bittensor import start_bittensor_simulator


async def run_once(config: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "quorumwatch",
        "run",
        "--once",
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def write_config(tmp_path: Path, *urls: str, names: Sequence[str] = ()) -> Path:
    """A config of one Hyperliquid chain with an endpoint per URL, named `names` or ep0, ep1…"""
    names = names or [f"ep{i}" for i in range(len(urls))]
    endpoints = "".join(
        f'[[chains.endpoints]]\nname = "{name}"\nurl = "{url}"\ntimeout_seconds = 2\n'
        for name, url in zip(names, urls, strict=True)
    )
    path = tmp_path / "quorumwatch.toml"
    path.write_text(f'[[chains]]\nname = "hyperliquid"\nkind = "hyperliquid"\n{endpoints}')
    return path


def _readme_example(after: str) -> str:
    """The README's first code block after the line starting with `after`."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rest = text[text.index(f"\n{after}") :]
    return rest.split("```", 2)[1].partition("\n")[2]


def _without_timings(text_output: str) -> str:
    return re.sub(r"(latency_public'|poll_duration)=[0-9.]+s", r"\1=Xs", text_output)


async def test_foundation_scenario_prints_the_readme_text_example(tmp_path: Path) -> None:
    """Against the Foundation scenario, through one endpoint named `public`, --once exits 2 and
    prints the README's text example, reasons and perfdata, but for the measured latencies."""
    async with await start_simulator(load_scenario("foundation-2025")) as simulator:
        config = write_config(tmp_path, simulator.base_url, names=["public"])
        code, stdout, _ = await run_once(config)
    assert code == 2
    example = _readme_example("Text output is one line per chain")
    assert _without_timings(stdout) == _without_timings(example)


async def test_foundation_scenario_prints_the_readme_json_example(tmp_path: Path) -> None:
    """--format json on the same prints the README's JSON example, but for the latency."""
    async with await start_simulator(load_scenario("foundation-2025")) as simulator:
        config = write_config(tmp_path, simulator.base_url, names=["public"])
        code, stdout, _ = await run_once(config, "--format", "json")
    assert code == 2
    document = json.loads(stdout)
    example = json.loads(_readme_example("`--format json` prints one document"))
    for endpoints in (document["chains"][0]["endpoints"], example["chains"][0]["endpoints"]):
        assert endpoints[0].pop("latency_seconds") > 0
    assert document == example


async def test_healthy_set_with_two_endpoints_is_ok(tmp_path: Path) -> None:
    """A decentralised set served by two healthy endpoints exits 0."""
    scenario = load_scenario("healthy")
    async with await start_simulator(scenario) as first, await start_simulator(scenario) as second:
        code, stdout, _ = await run_once(write_config(tmp_path, first.base_url, second.base_url))
    assert code == 0, stdout
    assert stdout.startswith("QUORUMWATCH OK - hyperliquid:")


async def test_unreachable_api_is_critical_not_unknown(tmp_path: Path) -> None:
    """An API that refuses connections is CRITICAL (what is being checked), not UNKNOWN."""
    code, stdout, _ = await run_once(write_config(tmp_path, "http://127.0.0.1:9"))
    assert code == 2
    assert "no endpoint returned a valid validator set" in stdout
    assert "connect_error" in stdout


async def test_credentials_in_url_never_printed(tmp_path: Path) -> None:
    """An endpoint URL with user:password never appears in --once output or logs."""
    async with await start_simulator(load_scenario("healthy")) as simulator:
        url = simulator.base_url.replace("http://", "http://user:s3cr3t@")
        code, stdout, stderr = await run_once(write_config(tmp_path, url), "--format", "json")
    assert code == 1  # one endpoint: a single point of failure
    assert "s3cr3t" not in stdout + stderr


async def test_subnet_majority_holder_is_named_critical(tmp_path: Path) -> None:
    """Against the simulated subnet 1, whose coldkey validator-1000 holds 600 of 1,000 (over
    kappa), --once exits 2 and its first reason names the holder, its share and the
    incentives it sets."""
    reason = (
        "entity validator-1000 holds 60.00% of consensus stake, more than the chain's consensus"
        " threshold (49.999%): it sets the subnet's incentives alone"
    )
    async with await start_bittensor_simulator() as simulator:
        config = tmp_path / "quorumwatch.toml"
        config.write_text(
            '[[chains]]\nname = "tao"\nkind = "bittensor"\n'
            "[chains.bittensor]\nnetuids = [1]\n"
            f'[[chains.endpoints]]\nname = "sim"\nurl = "{simulator.base_url}"\n'
        )
        code, stdout, _ = await run_once(config)
    assert code == 2
    assert stdout.startswith(f"QUORUMWATCH CRITICAL - tao-sn1: {reason}; "), stdout
