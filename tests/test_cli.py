"""Tests for the `quorumwatch` command line: exit codes and one-line errors, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from quorumwatch import __version__, cli

VALID = """
[[chains]]
name = "hl"
kind = "hyperliquid"

[[chains.endpoints]]
name = "public"
url = "https://api.hyperliquid.xyz"
"""
UNKNOWN_KEY = VALID.replace('kind = "hyperliquid"', 'kind = "hyperliquid"\nturbo = true')


def _quorumwatch(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("QUORUMWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "quorumwatch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "quorumwatch.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _one_stderr_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_run_with_invalid_config_exits_3_with_one_line(tmp_path: Path) -> None:
    """`run` with an unknown key exits 3, one stderr line `quorumwatch: config error:` + key."""
    result = _quorumwatch("run", "--config", _config(tmp_path, UNKNOWN_KEY))
    assert result.returncode == 3
    line = _one_stderr_line(result)
    assert line == "quorumwatch: config error: chains.0.turbo: unknown key"
    assert result.stdout == ""


def test_run_with_wrong_type_names_the_key(tmp_path: Path) -> None:
    """`run` with poll_interval_seconds = "fast" exits 3 with one line naming that key."""
    text = VALID.replace(
        'kind = "hyperliquid"', 'kind = "hyperliquid"\npoll_interval_seconds = "x"'
    )
    result = _quorumwatch("run", "--config", _config(tmp_path, text))
    assert result.returncode == 3
    line = _one_stderr_line(result)
    assert line.startswith("quorumwatch: config error: chains.0.poll_interval_seconds: ")


def test_run_with_missing_config_file_exits_3(tmp_path: Path) -> None:
    """`run --config` on a missing file exits 3 with one line naming the file."""
    result = _quorumwatch("run", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 3
    line = _one_stderr_line(result)
    assert line.startswith("quorumwatch: config error: ")
    assert "absent.toml" in line


def test_once_with_invalid_config_prints_nagios_unknown(tmp_path: Path) -> None:
    """`run --once` with an unknown key exits 3 and prints `QUORUMWATCH UNKNOWN - config error`."""
    result = _quorumwatch("run", "--once", "--config", _config(tmp_path, UNKNOWN_KEY))
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines() == [
        "QUORUMWATCH UNKNOWN - config error: chains.0.turbo: unknown key"
    ]


def test_once_json_with_invalid_config_reports_unknown(tmp_path: Path) -> None:
    """`run --once --format json` with an unknown key exits 3 with status UNKNOWN in JSON."""
    config = _config(tmp_path, UNKNOWN_KEY)
    result = _quorumwatch("run", "--once", "--format", "json", "--config", config)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "UNKNOWN"
    assert document["chains"] == []
    assert "chains.0.turbo: unknown key" in document["error"]


def test_once_with_unknown_chain_exits_3_naming_it(tmp_path: Path) -> None:
    """`run --once --chain nope` on a valid config exits 3 with UNKNOWN naming `nope`."""
    result = _quorumwatch("run", "--once", "--chain", "nope", "--config", _config(tmp_path, VALID))
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith("QUORUMWATCH UNKNOWN - config error: ")
    assert "nope" in line


def test_version_prints_package_version() -> None:
    """`--version` exits 0 and prints `quorumwatch <version>`."""
    result = _quorumwatch("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"quorumwatch {__version__}"


def test_simulate_unknown_scenario_exits_3_with_one_line() -> None:
    """`simulate --scenario no-such` exits 3 with one config-error line naming the scenario."""
    result = _quorumwatch("simulate", "--scenario", "no-such")
    assert result.returncode == 3
    line = _one_stderr_line(result)
    assert line.startswith("quorumwatch: config error: ")
    assert "no-such" in line


def test_simulate_invalid_listen_exits_3_with_one_line() -> None:
    """`simulate --listen nonsense` exits 3 with one line naming `listen`, not a pydantic dump."""
    result = _quorumwatch("simulate", "--scenario", "healthy", "--listen", "nonsense")
    assert result.returncode == 3
    line = _one_stderr_line(result)
    assert line.startswith("quorumwatch: config error: listen: ")


def test_usage_error_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    """A usage error (run without --config) exits 3, UNKNOWN to Nagios, not argparse's 2."""
    with pytest.raises(SystemExit) as caught:
        cli.main(["run", "--once"])
    assert caught.value.code == 3
    assert "--config" in capsys.readouterr().err


def test_main_in_process_reports_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.main on a config with a hostile unknown key returns 3 and prints one sanitised line."""
    config = _config(tmp_path, '"bad\\nkey" = 1\n' + VALID)
    assert cli.main(["run", "--config", config]) == 3
    captured = capsys.readouterr()
    assert captured.err == "quorumwatch: config error: bad key: unknown key\n"
    assert captured.out == ""


def test_main_in_process_missing_file_with_newline_in_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cli.main on a missing --config path containing a newline still prints exactly one line."""
    assert cli.main(["run", "--config", str(tmp_path / "a\nb.toml")]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("quorumwatch: config error: ")


def test_metrics_port_in_use_exits_3_naming_the_key() -> None:
    """A metrics.listen address already in use is one config-error line and exit 3."""
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        port = occupied.getsockname()[1]
        result = _quorumwatch("demo", "--duration", "5", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 3
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"quorumwatch: config error: metrics.listen 127.0.0.1:{port}:")
