"""Tests for `quorumwatch.logs`: one JSON line per event, hostile values sanitised, no URLs."""

from __future__ import annotations

import json
from typing import Any

import pytest
import structlog

from quorumwatch.logs import MAX_VALUE_LENGTH, configure_logging

HOSTILE = 'evil\n{"event": "forged", "level": "critical"}\r\n\u202e' + "A" * 10_000


def _records(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    captured = capsys.readouterr()
    assert captured.out == ""
    return [json.loads(line) for line in captured.err.splitlines()]


def test_hostile_value_is_one_sanitised_capped_json_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A value with newlines, a bidi override and 10 kB yields one JSON line, cleaned, ≤ 1024."""
    configure_logging("info", json_lines=True)
    structlog.get_logger().warning("validator renamed", name=HOSTILE)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    [record] = [json.loads(line) for line in err.splitlines()]
    assert record["event"] == "validator renamed"
    assert record["level"] == "warning"
    name = record["name"]
    assert len(name) == MAX_VALUE_LENGTH == 1024
    assert name.startswith('evil {"event": "forged", "level": "critical"} AAAA')
    assert name.endswith("…")
    assert "\n" not in name
    assert "\u202e" not in name


def test_nested_strings_are_sanitised(capsys: pytest.CaptureFixture[str]) -> None:
    """Strings inside lists and dicts are cleaned like top-level values."""
    configure_logging("info", json_lines=True)
    structlog.get_logger().info("set", names=["a\nb", {"k": "c\u2066d"}], pair=("e\tf", 1))
    [record] = _records(capsys)
    assert record["names"] == ["a b", {"k": "cd"}]
    assert record["pair"] == ["e f", 1]


def test_level_filtering_drops_events_below_the_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """At level "warning", debug and info events are dropped; warning and error are written."""
    configure_logging("warning", json_lines=True)
    log = structlog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [(r["event"], r["level"]) for r in _records(capsys)] == [
        ("w", "warning"),
        ("e", "error"),
    ]


def test_error_level_keeps_only_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """At level "error" (the --once probe's level), a warning is dropped and an error kept."""
    configure_logging("error", json_lines=True)
    log = structlog.get_logger()
    log.warning("w")
    log.error("e")
    assert [r["event"] for r in _records(capsys)] == ["e"]


def test_exception_logs_carry_no_url_and_no_frame_locals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """log.exception renders one JSON line whose traceback has no URL, secret or frame locals."""
    configure_logging("info", json_lines=True)
    log = structlog.get_logger()

    def fail() -> None:
        url = "https://operator:s3cret@rpc.example.com/info"
        raise RuntimeError(f"cannot reach {url}")

    try:
        fail()
    except RuntimeError:
        log.exception("poll crashed", chain="hl")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "s3cret" not in err
    assert "rpc.example.com" not in err
    record = json.loads(err)
    [exception] = record["exception"]
    assert exception["exc_type"] == "RuntimeError"
    assert exception["exc_value"] == "cannot reach <url>"
    assert all("locals" not in frame for frame in exception["frames"])


def test_console_rendering_is_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    """Human (TTY) rendering puts an event on one line and redacts URLs from tracebacks."""
    configure_logging("info", json_lines=False)
    log = structlog.get_logger()
    log.info("renamed", name="a\nb")
    try:
        raise ValueError("see http://user:pw@host.example/x")
    except ValueError:
        log.exception("failed")
    err = capsys.readouterr().err
    first, *rest = err.splitlines()
    assert "renamed" in first
    assert "name='a b'" in first
    assert "pw@" not in err
    assert "ValueError: see <url>" in rest


ADDRESSES = [
    ("Cannot connect to host 127.0.0.1:18899 ssl:default", "127.0.0.1:18899"),
    ("Cannot connect to host mosquitto:1883 ssl:default", "mosquitto:1883"),
    ("Connect call failed ('::1', 9093, 0, 0)", "9093"),
    ("Connect call failed ('10.0.0.7', 443)", "10.0.0.7"),
    ("no route to [fe80::1%eth0]:8080", "fe80::1"),
    ("api.hyperliquid.xyz:443 reset the connection", "hyperliquid.xyz"),
    ("localhost:1883 refused", "localhost"),
]


@pytest.mark.parametrize("json_lines", [True, False])
def test_network_addresses_never_reach_a_log_line(
    capsys: pytest.CaptureFixture[str], json_lines: bool
) -> None:
    """A host and port (IPv4, [IPv6], dotted, localhost, aiohttp's `host NAME:PORT`, a
    socket address tuple) in a value or an exception message is logged as `<address>`, in
    JSON and console lines alike; a timestamp or a ratio is left alone."""
    configure_logging("info", json_lines=json_lines)
    log = structlog.get_logger()
    for message, _ in ADDRESSES:
        log.warning("push failed", error=message)
        try:
            raise OSError(message)
        except OSError:
            log.exception("crashed")
    log.info("kept", at="2026-12-03T13:41:18.4297Z", ratio="0.5:1")
    err = capsys.readouterr().err
    for message, address in ADDRESSES:
        assert address not in err, message
    assert err.count("<address>") == 2 * len(ADDRESSES)  # each as a value and in a traceback
    assert "2026-12-03T13:41:18.4297Z" in err
    assert "0.5:1" in err
