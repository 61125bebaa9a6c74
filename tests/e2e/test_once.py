"""`quorumwatch run --once` as a subprocess against the simulator over loopback."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from quorumwatch.simulator import load_scenario, start_simulator


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


def write_config(tmp_path: Path, *urls: str) -> Path:
    endpoints = "".join(
        f'[[chains.endpoints]]\nname = "ep{i}"\nurl = "{url}"\ntimeout_seconds = 2\n'
        for i, url in enumerate(urls)
    )
    path = tmp_path / "quorumwatch.toml"
    path.write_text(f'[[chains]]\nname = "hyperliquid"\nkind = "hyperliquid"\n{endpoints}')
    return path


async def test_foundation_scenario_is_critical_naming_the_entity(tmp_path: Path) -> None:
    """Against the Foundation scenario --once exits 2 and names Hyper Foundation and 81.40%."""
    async with await start_simulator(load_scenario("foundation-2025")) as simulator:
        code, stdout, _ = await run_once(write_config(tmp_path, simulator.base_url))
    assert code == 2
    (line,) = stdout.splitlines()
    assert line.startswith(
        "QUORUMWATCH CRITICAL - hyperliquid: entity Hyper Foundation holds 81.40%"
    )
    assert "can control the chain" in line


async def test_foundation_scenario_json(tmp_path: Path) -> None:
    """--format json reports CRITICAL with the entity's exact share and coefficients."""
    async with await start_simulator(load_scenario("foundation-2025")) as simulator:
        code, stdout, _ = await run_once(
            write_config(tmp_path, simulator.base_url), "--format", "json"
        )
    assert code == 2
    document = json.loads(stdout)
    chain = document["chains"][0]
    assert document["status"] == "CRITICAL"
    assert chain["largest_entity"] == {"name": "Hyper Foundation", "stake_ratio": 0.814}
    assert chain["nakamoto"]["entity"] == {"halt": 1, "majority": 1, "control": 1}


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
