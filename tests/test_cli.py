"""Tests for the `quorumwatch` command line: exit codes and one-line errors, never a traceback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quorumwatch import __version__, cli
from quorumwatch.config import ChainSettings, EthereumSettings
from quorumwatch.report import ChainReport
from quorumwatch.store.migrations import SCHEMA_VERSION
from tests import builders
from tests.store_builders import newer_schema_copy
from tests.tools import refused_url

VALID = """
[[chains]]
name = "hl"
kind = "hyperliquid"

[[chains.endpoints]]
name = "public"
url = "https://api.hyperliquid.xyz"
"""
UNKNOWN_KEY = VALID.replace('kind = "hyperliquid"', 'kind = "hyperliquid"\nturbo = true')


@dataclass(frozen=True)
class _Exit:
    """How a command ended: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def _no_quorumwatch_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No QUORUMWATCH_* variable of the caller's environment reaches a command."""
    for key in [k for k in os.environ if k.startswith("QUORUMWATCH_")]:
        monkeypatch.delenv(key)


def _quorumwatch(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m quorumwatch` run as a process: for what only a process shows (its exit
    status and everything it writes to its stdout and stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "quorumwatch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _command(capsys: pytest.CaptureFixture[str], *args: str) -> _Exit:
    """The command line run in this process: `python -m quorumwatch` exits with what `main`
    returns, having printed what `main` printed."""
    capsys.readouterr()
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return _Exit(code, captured.out, captured.err)


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "quorumwatch.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _one_stderr_line(result: _Exit | subprocess.CompletedProcess[str]) -> str:
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


def test_run_with_wrong_type_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` with poll_interval_seconds = "x" exits 3 with one line naming that key."""
    text = VALID.replace(
        'kind = "hyperliquid"', 'kind = "hyperliquid"\npoll_interval_seconds = "x"'
    )
    result = _command(capsys, "run", "--config", _config(tmp_path, text))
    assert result.returncode == 3
    line = _one_stderr_line(result)
    assert line.startswith("quorumwatch: config error: chains.0.poll_interval_seconds: ")


def test_run_with_missing_config_file_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --config` on a missing file exits 3 with one line naming the file."""
    result = _command(capsys, "run", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 3
    line = _one_stderr_line(result)
    assert line.startswith("quorumwatch: config error: ")
    assert "absent.toml" in line


def test_once_with_invalid_config_prints_nagios_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --once` with an unknown key exits 3 and prints `QUORUMWATCH UNKNOWN - config error`."""
    result = _command(capsys, "run", "--once", "--config", _config(tmp_path, UNKNOWN_KEY))
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines() == [
        "QUORUMWATCH UNKNOWN - config error: chains.0.turbo: unknown key"
    ]


def test_once_json_with_invalid_config_reports_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --once --format json` with an unknown key exits 3 with status UNKNOWN in JSON."""
    config = _config(tmp_path, UNKNOWN_KEY)
    result = _command(capsys, "run", "--once", "--format", "json", "--config", config)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "UNKNOWN"
    assert document["chains"] == []
    assert "chains.0.turbo: unknown key" in document["error"]


TWICE = VALID.replace("https://", "https://user:s3cret@") + 'headers = {Authorization = "t0ken"}\n'
TWICE_ERROR = (
    "config error: chains.0.endpoints.0.headers: Authorization: credentials given twice, here"
    " and as the userinfo of url: keep one"
)


def test_run_with_credentials_given_twice_exits_3_naming_the_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` on an endpoint with userinfo and an Authorization header exits 3 with one stderr
    line naming the header, and no secret."""
    assert cli.main(["run", "--config", _config(tmp_path, TWICE)]) == 3
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"quorumwatch: {TWICE_ERROR}\n")


def test_once_with_credentials_given_twice_is_unknown_naming_the_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --once` on an endpoint with userinfo and an Authorization header exits 3 printing
    `QUORUMWATCH UNKNOWN - config error` naming the header (never `internal error`)."""
    assert cli.main(["run", "--once", "--config", _config(tmp_path, TWICE)]) == 3
    assert capsys.readouterr().out == f"QUORUMWATCH UNKNOWN - {TWICE_ERROR}\n"


def test_once_with_unknown_chain_exits_3_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --once --chain nope` on a valid config exits 3 with UNKNOWN naming `nope`."""
    result = _command(
        capsys, "run", "--once", "--chain", "nope", "--config", _config(tmp_path, VALID)
    )
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith("QUORUMWATCH UNKNOWN - config error: ")
    assert "nope" in line


def test_unlisted_subnets_fail_the_daemon_and_the_probe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bittensor chain of all subnets whose node cannot be reached: `run` exits 1 with one
    line naming the chain, `run --once` exits 3 with UNKNOWN naming it."""
    url = "ws" + refused_url().removeprefix("http")
    config = _config(
        tmp_path,
        f'[[chains]]\nname = "tao"\nkind = "bittensor"\n'
        f'[[chains.endpoints]]\nname = "n"\nurl = "{url}"\n'
        f'[metrics]\nlisten = "127.0.0.1:0"\n',
    )
    daemon = _command(capsys, "run", "--config", config)
    assert daemon.returncode == 1
    assert "chain tao: no endpoint listed the subnets" in daemon.stderr.splitlines()[-1]
    once = _command(capsys, "run", "--once", "--config", config)
    assert once.returncode == 3
    [line] = once.stdout.splitlines()
    assert line.startswith("QUORUMWATCH UNKNOWN - chain tao: no endpoint listed the subnets")


def test_version_prints_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` exits 0 and prints `quorumwatch <version>`."""
    with pytest.raises(SystemExit) as caught:
        cli.main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"quorumwatch {__version__}\n"


def test_the_version_has_a_changelog_section() -> None:
    """CHANGELOG.md has a `## [<version>] - …` section for the version `--version` prints."""
    changelog = (Path(__file__).parents[1] / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"\n## [{__version__}] - " in changelog


@pytest.mark.slow
async def test_sigterm_during_start_up_exits_0_without_starting(tmp_path: Path) -> None:
    """`run` sent SIGTERM while it starts (still importing the command line, as `python -X
    importtime` shows: quorumwatch.config is imported) exits 0, with no traceback, and never
    starts serving."""
    imported = "quorumwatch.config"
    config = _config(
        tmp_path,
        f'[metrics]\nlisten = "127.0.0.1:0"\n[storage]\npath = "{tmp_path / "q.db"}"\n'
        + VALID.replace("https://api.hyperliquid.xyz", refused_url()),
    )
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-X", "importtime", "-m", "quorumwatch", "run", "--config", config],
        stderr=asyncio.subprocess.PIPE,
    )
    stderr = process.stderr
    assert stderr is not None

    async def start_up_reached() -> None:
        async for line in stderr:
            if line.decode().split("|")[-1].strip() == imported:
                return
        raise AssertionError(f"exited without importing {imported}")

    try:
        await asyncio.wait_for(start_up_reached(), 30)
        process.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(stderr.read(), 30)).decode()
        assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert "Traceback" not in rest
    assert "serving metrics" not in rest
    assert not (tmp_path / "q.db").exists()


def test_simulate_unknown_scenario_exits_3_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`simulate --scenario no-such` exits 3 with one config-error line naming the scenario."""
    result = _command(capsys, "simulate", "--scenario", "no-such")
    assert result.returncode == 3
    line = _one_stderr_line(result)
    assert line.startswith("quorumwatch: config error: ")
    assert "no-such" in line


def test_simulate_invalid_listen_exits_3_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`simulate --listen nonsense` exits 3 with one line naming `--listen`, not a pydantic
    dump."""
    result = _command(capsys, "simulate", "--scenario", "healthy", "--listen", "nonsense")
    assert result.returncode == 3
    line = _one_stderr_line(result)
    assert line.startswith("quorumwatch: config error: --listen: expected HOST:PORT")


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


@pytest.mark.parametrize(
    ("command", "named"),
    [("run", "metrics.listen"), ("demo", "--listen"), ("simulate", "--listen")],
)
def test_listen_address_in_use_exits_3_naming_what_was_typed(
    tmp_path: Path, command: str, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A listen address already in use is one config-error line naming the key (`run`) or the
    flag (`demo`, `simulate`) and the address, and exit 3, never a traceback."""
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        address = f"127.0.0.1:{occupied.getsockname()[1]}"
        if command == "run":
            config = _config(tmp_path, f'metrics.listen = "{address}"\n{VALID}')
            result = _command(capsys, "run", "--config", config)
        else:
            result = _command(capsys, command, "--listen", address)
    assert result.returncode == 3
    line = _one_stderr_line(result)
    assert line.startswith(f"quorumwatch: config error: {named} {address}: ")
    assert line.endswith("address already in use")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--poll-interval", "0"], "--poll-interval 0: "),
        (["--poll-interval", "nan"], "--poll-interval nan: "),
        (["--duration", "-1"], "--duration -1: "),
        (["--listen", "nonsense"], "--listen: "),
    ],
)
def test_demo_flags_are_checked_by_name(
    capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    """A `demo` interval or duration that is not a positive number, or a listen address that is
    not HOST:PORT, exits 3 in one line naming the flag, not a settings key."""
    assert cli.main(["demo", *argv]) == 3
    captured = capsys.readouterr()
    assert captured.err.startswith(f"quorumwatch: config error: {named}")
    assert captured.err.count("\n") == 1
    assert captured.out == ""


# --- jails ------------------------------------------------------------------------------------

JAILS_NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the CLI's clock in these tests
DAY = 86400.0
ALICE = "0x" + "ab" * 20
BOB = f"0x{2:040x}"
CAROL = f"0x{3:040x}"
BOB_NAME = "Bob\nFAKE 0x0 evil\u202e"


def _jails_config(tmp_path: Path, database: Path) -> str:
    chains = "".join(
        f'[[chains]]\nname = "{name}"\nkind = "hyperliquid"\n'
        '[[chains.endpoints]]\nname = "public"\nurl = "https://api.hyperliquid.xyz"\n'
        for name in ("hl", "other")
    )
    return _config(tmp_path, f"[storage]\npath = {json.dumps(str(database))}\n{chains}")


def _event(chain: str, address: str, name: str, kind: str, at: float, **fields: Any) -> Any:
    from quorumwatch.jails.events import EventKind, ValidatorEvent

    return ValidatorEvent(
        event_id=f"{chain}-{address}-{kind}-{at}",
        chain=chain,
        address=address,
        name=name,
        kind=EventKind(kind),
        observed_at=at,
        previous_observed_at=at - 30,
        inferred=False,
        after_gap=False,
        stake=1000,
        unjailable_after_ms=None,
        **fields,
    )


@pytest.fixture
def jails_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store written through store.jails.commit_poll, and the CLI's clock fixed at JAILS_NOW.

    hl: Alice jailed 10 d and 2 d ago (1 h and 2 h), Bob (hostile name) jailed 1 h ago;
    other: Carol jailed 30 min ago.
    """
    from quorumwatch.store import Store
    from quorumwatch.store import jails as jail_store
    from tests.store_builders import state

    monkeypatch.setattr("time.time", lambda: JAILS_NOW)
    database = tmp_path / "quorumwatch.db"
    old, recent = JAILS_NOW - 10 * DAY, JAILS_NOW - 2 * DAY
    with Store(database) as store:
        jail_store.commit_poll(
            store,
            "hl",
            state(JAILS_NOW - 60),
            [
                _event("hl", ALICE, "Alice", "jailed", old),
                _event("hl", ALICE, "Alice", "unjailed", old + 3600, jail_seconds=3600.0),
                _event("hl", ALICE, "Alice", "jailed", recent),
                _event("hl", ALICE, "Alice", "unjailed", recent + 7200, jail_seconds=7200.0),
                _event("hl", BOB, BOB_NAME, "jailed", JAILS_NOW - 3600),
            ],
        )
        jail_store.commit_poll(
            store,
            "other",
            state(JAILS_NOW),
            [_event("other", CAROL, "Carol", "jailed", JAILS_NOW - 1800)],
        )
    return database


def _run_jails(
    tmp_path: Path, database: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    code = cli.main(["jails", "--config", _jails_config(tmp_path, database), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_jails_json_summary_defaults_to_the_last_7_days(
    tmp_path: Path, jails_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`jails --format json` reports per validator over the last 7 days, every chain."""
    code, out, err = _run_jails(tmp_path, jails_store, capsys, "--format", "json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert [(r["chain"], r["validator"], r["jails"]) for r in rows] == [
        ("hl", BOB, 1),
        ("hl", ALICE, 1),
        ("other", CAROL, 1),
    ]
    assert rows[0]["name"] == "Bob FAKE 0x0 evil"
    assert rows[1]["median_seconds_to_unjail"] == 7200


def test_jails_since_all_counts_everything(
    tmp_path: Path, jails_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--since all` includes the 10-day-old jail: Alice has 2 jails, 8 days apart."""
    code, out, _ = _run_jails(tmp_path, jails_store, capsys, "--since", "all", "--format", "json")
    assert code == 0
    alice = next(r for r in json.loads(out) if r["validator"] == ALICE)
    assert alice["jails"] == 2
    assert alice["mean_seconds_between_jails"] == 8 * DAY
    assert alice["median_seconds_to_unjail"] == 5400


def test_jails_table_one_line_per_row(
    tmp_path: Path, jails_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table is the header and one line per validator, the hostile name on one line."""
    from quorumwatch.cli.jails import SUMMARY_COLUMNS

    code, out, _ = _run_jails(tmp_path, jails_store, capsys, "--since", "all")
    assert code == 0
    lines = out.rstrip("\n").split("\n")
    assert lines[0].split() == list(SUMMARY_COLUMNS)
    assert [line.split()[:2] for line in lines[1:]] == [
        ["hl", ALICE],
        ["hl", BOB],
        ["other", CAROL],
    ]
    assert "\u202e" not in out


def test_jails_csv(tmp_path: Path, jails_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--format csv` parses back with the csv module to the summary rows."""
    import csv
    import io

    code, out, _ = _run_jails(tmp_path, jails_store, capsys, "--format", "csv", "--since", "all")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["validator"], r["jails"], r["name"]) for r in rows] == [
        (ALICE, "2", "Alice"),
        (BOB, "1", "Bob FAKE 0x0 evil"),
        (CAROL, "1", "Carol"),
    ]
    assert rows[1]["median_seconds_to_unjail"] == ""


def test_jails_events(
    tmp_path: Path, jails_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--events` lists the events in range in time order, as JSON or as a table."""
    args = ("--events", "--since", "3d")
    code, out, _ = _run_jails(tmp_path, jails_store, capsys, *args, "--format", "json")
    assert code == 0
    assert [(e["validator"], e["event"], e["jail_seconds"]) for e in json.loads(out)] == [
        (ALICE, "jailed", None),
        (ALICE, "unjailed", 7200),
        (BOB, "jailed", None),
        (CAROL, "jailed", None),
    ]
    code, out, _ = _run_jails(tmp_path, jails_store, capsys, *args)
    assert code == 0
    assert len(out.rstrip("\n").split("\n")) == 5


def test_jails_validator_filter_is_case_insensitive(
    tmp_path: Path, jails_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--validator` in upper case selects only that (lower-case stored) validator's events."""
    upper = "0x" + ALICE[2:].upper()
    code, out, _ = _run_jails(
        tmp_path, jails_store, capsys, "--validator", upper, "--events", "--since", "all",
        "--format", "json",
    )  # fmt: skip
    assert code == 0
    events = json.loads(out)
    assert len(events) == 4
    assert {e["validator"] for e in events} == {ALICE}


def test_jails_chain_filter(
    tmp_path: Path, jails_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--chain other` reports only that chain; an unknown chain is a config error, exit 3."""
    code, out, _ = _run_jails(
        tmp_path, jails_store, capsys, "--chain", "other", "--since", "all", "--format", "json"
    )
    assert code == 0
    assert [(r["chain"], r["validator"]) for r in json.loads(out)] == [("other", CAROL)]
    code, out, err = _run_jails(tmp_path, jails_store, capsys, "--chain", "nope")
    assert code == 3
    assert out == ""
    assert err.splitlines() == [
        "quorumwatch: config error: --chain nope: no such chain in the configuration"
    ]


def test_jails_empty_range(
    tmp_path: Path, jails_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A range with no jail prints the header and `(no jail events in range)`."""
    code, out, _ = _run_jails(tmp_path, jails_store, capsys, "--since", "1m")
    assert code == 0
    assert out.splitlines()[1:] == ["(no jail events in range)"]


def test_jails_missing_store_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`jails` with no database file exits 1 with one stderr line naming it, creating nothing."""
    database = tmp_path / "absent.db"
    result = _command(capsys, "jails", "--config", _jails_config(tmp_path, database))
    assert result.returncode == 1
    line = _one_stderr_line(result)
    assert line.startswith("quorumwatch: ")
    assert "absent.db" in line
    assert result.stdout == ""
    assert not database.exists()


def test_jails_reads_a_store_in_a_read_only_directory(
    tmp_path: Path, jails_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`jails` reads a store (its daemon stopped) in a directory it may not write to (mode
    0555) and creates no file there."""
    directory = tmp_path / "state"
    directory.mkdir()
    database = directory / jails_store.name
    shutil.copyfile(jails_store, database)
    directory.chmod(0o555)
    try:
        code, out, err = _run_jails(
            tmp_path, database, capsys, "--since", "all", "--format", "json"
        )
        assert [p.name for p in directory.iterdir()] == [database.name]
    finally:
        directory.chmod(0o700)
    assert (code, err) == (0, "")
    assert {r["validator"] for r in json.loads(out)} == {ALICE, BOB, CAROL}


def test_jails_and_run_refuse_a_newer_schema_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`jails` and `run` on a store of a newer schema (a downgrade) exit 3 with one line
    naming storage.path, the file and both versions, and leave the file as it was."""
    database = newer_schema_copy(tmp_path / "quorumwatch.db")
    digest = hashlib.sha256(database.read_bytes()).hexdigest()
    config = _config(
        tmp_path,
        f'[metrics]\nlisten = "127.0.0.1:0"\n[storage]\npath = {json.dumps(str(database))}\n'
        + VALID,
    )
    refusal = (
        f"quorumwatch: config error: storage.path: {database}: schema version "
        f"{SCHEMA_VERSION + 1} is newer than {SCHEMA_VERSION}, the latest quorumwatch "
        f"{__version__} knows (a downgrade?); the file is left as it is: run the release that "
        "wrote it or a later one"
    )
    assert cli.main(["jails", "--config", config]) == 3
    captured = capsys.readouterr()
    assert (captured.out, captured.err.splitlines()) == ("", [refusal])
    assert cli.main(["run", "--config", config]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == refusal  # after the log line of binding /metrics
    assert hashlib.sha256(database.read_bytes()).hexdigest() == digest


def test_jails_unreadable_store_exits_1_with_one_line(
    tmp_path: Path, jails_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store that opens but fails to read (events table gone) exits 1 with one stderr line."""
    import sqlite3

    conn = sqlite3.connect(jails_store, isolation_level=None)
    try:
        conn.execute("DROP TABLE events")
    finally:
        conn.close()
    code, out, err = _run_jails(tmp_path, jails_store, capsys)
    assert code == 1
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("quorumwatch: ")
    assert "read events failed" in err


@pytest.mark.parametrize("since", ["7", "7x", "-1d", " 7d", ""])
def test_jails_invalid_since_exits_3_naming_it(
    tmp_path: Path, jails_store: Path, capsys: pytest.CaptureFixture[str], since: str
) -> None:
    """An invalid `--since` exits 3 with one config-error line naming --since."""
    code, out, err = _run_jails(tmp_path, jails_store, capsys, f"--since={since}")
    assert code == 3
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("quorumwatch: config error: --since: ")


def test_jails_reads_while_a_writer_holds_a_transaction(
    tmp_path: Path, jails_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With another connection inside BEGIN IMMEDIATE (an uncommitted jail written), `jails`
    still answers, from the committed data only."""
    import sqlite3

    writer = sqlite3.connect(jails_store, isolation_level=None, timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO events (event_id, chain, address, name, kind, observed_at,"
            " previous_observed_at, inferred, after_gap, stake) VALUES"
            " ('uncommitted', 'hl', ?, 'Dave', 'jailed', ?, ?, 0, 0, '1')",
            (f"0x{4:040x}", JAILS_NOW - 60, JAILS_NOW - 90),
        )
        code, out, err = _run_jails(tmp_path, jails_store, capsys, "--format", "json")
        assert writer.in_transaction
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert (code, err) == (0, "")
    assert {r["validator"] for r in json.loads(out)} == {ALICE, BOB, CAROL}


@dataclass(frozen=True)
class _Simulation:
    """A kind `simulate` serves: its announcement, a request and what the answer contains."""

    kind: str
    announced: str
    path: str
    body: dict[str, Any] | None
    marker: str


SIMULATIONS = [
    _Simulation("cosmos", "simulating cosmos: lcd and rpc at ", "/status", None, "cosmoshub-4"),
    _Simulation(
        "solana",
        "simulating solana: JSON-RPC at ",
        "",
        {"jsonrpc": "2.0", "id": 1, "method": "getEpochInfo"},
        '"absoluteSlot"',
    ),
    _Simulation(
        "hyperliquid", "simulating foundation-2025: POST ", "", {"type": "exchangeStatus"}, '"time"'
    ),
    _Simulation(
        "ethereum",
        "simulating ethereum: beacon API at ",
        "/eth/v1/node/syncing",
        None,
        '"is_syncing"',
    ),
]


@pytest.fixture(scope="module")
def simulate_processes() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """`quorumwatch simulate --kind K` for each kind of SIMULATIONS, all started at once so
    that their start-ups overlap; tests only read from them. Killed after the module: how
    `simulate` stops is test_simulate_ethereum_prints_label_files_for_its_size's to check."""
    processes: dict[str, subprocess.Popen[str]] = {}
    try:
        for simulation in SIMULATIONS:
            argv = [sys.executable, "-m", "quorumwatch", "simulate", "--kind", simulation.kind]
            processes[simulation.kind] = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        yield processes
    finally:
        for process in processes.values():
            process.kill()
            process.communicate()


@pytest.mark.parametrize("simulation", SIMULATIONS, ids=lambda simulation: simulation.kind)
def test_simulate_serves_other_kinds(
    simulate_processes: dict[str, subprocess.Popen[str]], simulation: _Simulation
) -> None:
    """`simulate --kind K` announces its URL and serves that chain's API there."""
    stdout = simulate_processes[simulation.kind].stdout
    assert stdout is not None
    line = stdout.readline()
    assert line.startswith(simulation.announced)
    url = line.removeprefix(simulation.announced).strip() + simulation.path
    data = None if simulation.body is None else json.dumps(simulation.body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert simulation.marker in response.read().decode()


def test_simulate_ethereum_prints_label_files_for_its_size() -> None:
    """`simulate --kind ethereum --validators N` announces labels and operators files written
    for that set, which a config can name as they are, and removes them when it stops."""
    argv = ["-m", "quorumwatch", "simulate", "--kind", "ethereum", "--validators", "500"]
    with subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().startswith("simulating ethereum: beacon API at ")
            labels = Path(process.stdout.readline().removeprefix("labels_file: ").strip())
            operators = Path(process.stdout.readline().removeprefix("operators_file: ").strip())
            settings = EthereumSettings(labels_file=labels, operators_file=operators)
            assert settings.labels_file == labels
            assert labels.read_text().startswith("key,entity\n")
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert not labels.exists()
    assert not operators.exists()


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--validators", "10"], "--validators"),
        (["--preset", "mainnet"], "--preset"),
        (["--kind", "ethereum", "--preset", "nope"], "--preset nope"),
        (["--kind", "ethereum", "--validators", "0"], "--validators 0"),
    ],
)
def test_simulate_ethereum_flags_are_checked(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ethereum simulator's flags on another kind, or out of range, exit 3 in one line
    naming the flag."""
    result = _command(capsys, "simulate", *argv)
    assert result.returncode == 3
    line = _one_stderr_line(result)
    assert line.startswith(f"quorumwatch: config error: {named}")


@pytest.mark.parametrize("kind", ["cosmos", "solana", "ethereum"])
def test_simulate_scenario_on_a_kind_without_scenarios_exits_3(
    capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """`simulate --kind K --scenario X` for a kind that plays no scenario exits 3 in one line
    naming --scenario, rather than ignoring it."""
    assert cli.main(["simulate", "--kind", kind, "--scenario", "healthy"]) == 3
    err = capsys.readouterr().err
    assert err == "quorumwatch: config error: --scenario: goes with --kind hyperliquid only\n"


@pytest.mark.parametrize("command", [[], ["run"], ["simulate"], ["jails"], ["demo"]])
def test_help_ends_with_the_exit_code_table(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """`--help`, of the program and of every command, exits 0 and lists exit codes 0 to 3."""
    with pytest.raises(SystemExit) as caught:
        cli.main([*command, "--help"])
    assert caught.value.code == 0
    table = capsys.readouterr().out.partition("\nexit codes:\n")[2]
    codes = [line.split()[0] for line in table.splitlines() if not line.startswith("     ")]
    assert codes == ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("run", ["--format {text,json}", "(default: text)"]),
        ("jails", ["--format {table,json,csv}", "(default: table)", "(default: 7d)"]),
        (
            "demo",
            [
                "--scenario NAME|FILE",
                "(default: foundation-2025)",
                "(default: 127.0.0.1:9877)",
                "(default: 5.0)",
            ],
        ),
        (
            "simulate",
            [
                "--kind {hyperliquid,cosmos,solana,ethereum,bittensor}",
                "(default: hyperliquid)",
                "(default: foundation-2025)",
                "(default: 127.0.0.1:0)",
                "(default: 2000)",
                "ethereum: mainnet, finality-stalled, json-only (default: mainnet)",
            ],
        ),
    ],
)
def test_help_shows_defaults_and_choices(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    shown: list[str],
) -> None:
    """A command's `--help` shows its options' defaults and choices, and where it takes a
    scenario, the names of the bundled scenarios."""
    from quorumwatch.simulator import available_scenarios

    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: nothing breaks at a hyphen
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = capsys.readouterr().out
    for expected in shown:
        assert expected in text
    if command in ("demo", "simulate"):
        assert f"a bundled scenario ({', '.join(available_scenarios())})" in text


def test_once_imports_no_store_mqtt_or_metrics_server(tmp_path: Path) -> None:
    """`run --once` polls and judges without importing the store, MQTT, Prometheus' client or
    the exporter (`python -X importtime` lists every module a run imports)."""
    config = _config(tmp_path, VALID.replace("https://api.hyperliquid.xyz", refused_url()))
    argv = ["-X", "importtime", "-m", "quorumwatch", "run", "--once", "--config", config]
    result = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    assert "quorumwatch.monitor" in imported  # the probe did poll
    heavy = {"sqlite3", "aiomqtt", "paho", "prometheus_client", "quorumwatch.store"}
    heavy |= {"quorumwatch.exporter", "quorumwatch.daemon", "quorumwatch.alerting.sinks"}
    assert not imported & heavy


def test_once_never_formats_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --once` judges without formatting a report: asyncio.run formats the repr of its
    result twice (CPython issue 112559), seconds for a report of 1M validators."""
    formatted: list[object] = []

    def counted_repr(self: object) -> str:
        formatted.append(self)
        return "ChainReport(...)"

    async def poll_once(chains: list[ChainSettings]) -> list[ChainReport]:
        return [builders.report([builders.validator(i) for i in range(10)], settings=chains[0])]

    monkeypatch.setattr(ChainReport, "__repr__", counted_repr)
    monkeypatch.setattr("quorumwatch.monitor.poll_once", poll_once)
    assert cli.main(["run", "--once", "--config", _config(tmp_path, VALID)]) == 0
    assert capsys.readouterr().out.startswith("QUORUMWATCH OK - hl:")
    assert formatted == []
