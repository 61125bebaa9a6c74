"""Command line: run (daemon or --once probe), jails, simulate, demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from quorumwatch import __version__
from quorumwatch.chains.bittensor import SubnetListError
from quorumwatch.chains.kinds import KINDS
from quorumwatch.cli import sigterm_by_default, sigterm_received
from quorumwatch.config import (
    ConfigError,
    Settings,
    lists_subnets,
    load_settings,
    parse_listen,
)
from quorumwatch.labels import safe_text
from quorumwatch.logs import configure_logging
from quorumwatch.probe import Status

if TYPE_CHECKING:
    from collections.abc import Sequence

    from quorumwatch.chains.kinds import Kind
    from quorumwatch.simulator import Scenario

DEMO_LISTEN = "127.0.0.1:9877"
DEMO_SCENARIO = "foundation-2025"
DEFAULT_ETHEREUM_PRESET = "mainnet"
MAX_ERROR_LENGTH = 4096


EXIT_CODES = """\
exit codes:
  0  OK: run --once found nothing wrong; any other command succeeded, or was stopped by
     Ctrl-C or SIGTERM
  1  WARNING (run --once); jails: the store could not be read; an unexpected failure
  2  CRITICAL (run --once)
  3  UNKNOWN: an invalid configuration, flag or environment variable, an address already in
     use, or a failure of run --once itself
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 3: to Nagios, argparse's usual 2 would read as CRITICAL."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(Status.UNKNOWN, f"{self.prog}: error: {message}\n")


def _bundled_scenarios() -> str:
    from quorumwatch.simulator import available_scenarios

    return ", ".join(available_scenarios())


def _ethereum_presets() -> str:
    from quorumwatch.simulator.ethereum import available_presets

    return ", ".join(available_presets())


def _ethereum_validators() -> str:
    from quorumwatch.simulator.ethereum import DEFAULT_VALIDATORS

    return str(DEFAULT_VALIDATORS)


# What help shows but only the simulators know: reading it imports a simulator, too slow to
# do for every command, so it is read when help is shown.
_HELP_FACTS = {
    "{scenarios}": _bundled_scenarios,
    "{presets}": _ethereum_presets,
    "{validators}": _ethereum_validators,
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with each option's default, the facts of _HELP_FACTS, and the epilog as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        for placeholder, fact in _HELP_FACTS.items():
            if placeholder in text:
                text = text.replace(placeholder, fact())
        default = action.default
        # None: no default to show; a bool: a switch, off unless given.
        shown = default is not None and not isinstance(default, bool)
        if shown and default != argparse.SUPPRESS and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="quorumwatch",
        description="Watch who could halt or take over a proof-of-stake chain.",
        formatter_class=_HelpFormatter,
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"quorumwatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            formatter_class=_HelpFormatter,
            epilog=EXIT_CODES,
        )

    run = command("run", "run the daemon, or probe once with --once")
    run.add_argument(
        "--config", type=Path, required=True, metavar="FILE", help="TOML configuration file"
    )
    run.add_argument("--once", action="store_true", help="poll once, print, exit (Nagios codes)")
    run.add_argument("--format", choices=["text", "json"], default="text", help="--once output")
    run.add_argument("--chain", metavar="NAME", help="--once: only this chain")

    simulate = command("simulate", "serve a simulated chain API")
    simulate.add_argument(
        "--kind",
        choices=[kind.name for kind in KINDS.values() if kind.simulate_banner is not None],
        default="hyperliquid",
        help="the API to serve; cosmos (180 validators, paginated LCD and RPC) and solana "
        "(1,500 vote accounts) serve synthetic sets of realistic size; ethereum a beacon node "
        "with a mainnet-shaped set",
    )
    simulate.add_argument(
        "--scenario",
        metavar="NAME|FILE",
        help=f"hyperliquid only: a bundled scenario ({{scenarios}}) or a scenario file "
        f"(default: {DEMO_SCENARIO})",
    )
    simulate.add_argument(
        "--validators",
        type=int,
        metavar="N",
        help="ethereum: validators in the set; mainnet has about 1,100,000 (default: {validators})",
    )
    simulate.add_argument(
        "--preset",
        metavar="NAME",
        help=f"ethereum: {{presets}} (default: {DEFAULT_ETHEREUM_PRESET})",
    )
    simulate.add_argument(
        "--listen", default="127.0.0.1:0", metavar="HOST:PORT", help="0 as the port: any free one"
    )

    jails = command("jails", "print the jail history from the store")
    jails.add_argument(
        "--config", type=Path, required=True, metavar="FILE", help="TOML configuration file"
    )
    jails.add_argument("--chain", metavar="NAME", help="only this chain")
    jails.add_argument(
        "--since", default="7d", metavar="AGE", help="how far back: 30m, 24h, 7d, 2w or all"
    )
    jails.add_argument("--validator", metavar="ADDRESS", help="only this validator")
    jails.add_argument(
        "--format", choices=["table", "json", "csv"], default="table", help="output format"
    )
    jails.add_argument(
        "--events", action="store_true", help="list the events instead of per-validator figures"
    )

    demo = command("demo", "run the simulator and the daemon together, fully offline")
    demo.add_argument(
        "--scenario",
        default=DEMO_SCENARIO,
        metavar="NAME|FILE",
        help="a bundled scenario ({scenarios}) or a scenario file",
    )
    demo.add_argument(
        "--listen", default=DEMO_LISTEN, metavar="HOST:PORT", help="where /metrics is served"
    )
    demo.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop after this many seconds; without it, at Ctrl-C",
    )
    demo.add_argument(
        "--poll-interval", type=float, default=5.0, metavar="SECONDS", help="time between polls"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "jails" or (args.command == "run" and args.once):
        sigterm_by_default()
    try:
        if args.command == "run" and args.once:
            return _run_once(args)
        if args.command == "run":
            return _run_daemon(load_settings(args.config))
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "jails":
            return _jails(args)
        return _demo(args)
    except ConfigError as exc:
        message = safe_text(str(exc), max_length=MAX_ERROR_LENGTH)
        print(f"quorumwatch: config error: {message}", file=sys.stderr)
        return Status.UNKNOWN
    except KeyboardInterrupt:
        return 0


def _run_once(args: argparse.Namespace) -> int:
    from quorumwatch import probe
    from quorumwatch.monitor import poll_once

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(probe.unknown(f"config error: {exc}", args.format))
        return Status.UNKNOWN
    configure_logging("error" if settings.log_level != "debug" else "debug")
    try:
        settings = asyncio.run(_listed_subnets(settings))
    except SubnetListError as exc:
        print(probe.unknown(str(exc), args.format))
        return Status.UNKNOWN
    chains = [c for c in settings.chains if args.chain in (None, c.name)]
    if not chains:
        message = f"config error: --chain {args.chain}: no such chain in the configuration"
        print(probe.unknown(message, args.format))
        return Status.UNKNOWN

    async def judged() -> tuple[str, Status]:
        # Only the output leaves asyncio.run, never the reports: it formats the repr of its
        # result twice as it restores the SIGINT handler (CPython issue 112559), and that of
        # a report of 1M validators takes seconds.
        reports = await poll_once(chains)
        verdicts = [
            probe.judge(report, chain) for report, chain in zip(reports, chains, strict=True)
        ]
        render = probe.render_json if args.format == "json" else probe.render_text
        return render(verdicts), probe.overall(verdicts)

    try:
        output, status = asyncio.run(judged())
    except Exception as exc:  # a probe reports its own failure as UNKNOWN
        print(probe.unknown(f"internal error: {type(exc).__name__}: {exc}", args.format))
        return Status.UNKNOWN
    print(output)
    return status


def _run_daemon(settings: Settings) -> int:
    from quorumwatch.daemon import run_daemon

    configure_logging(settings.log_level)

    async def serve() -> int:
        stop = _stop_on_signals()
        if stop.is_set():  # stopped while starting: nothing to start
            return 0
        try:
            await run_daemon(settings, stop)
        except SubnetListError as exc:
            message = safe_text(str(exc), max_length=MAX_ERROR_LENGTH)
            print(f"quorumwatch: {message}", file=sys.stderr)
            return 1
        return 0

    return asyncio.run(serve())


async def _listed_subnets(settings: Settings) -> Settings:
    """`settings` with every Bittensor chain of `netuids = "all"` made one chain per subnet
    the chain lists now (chains.bittensor.subnets), for the probe's one poll; as they are when
    there is none. (The daemon lists them itself, and again while it runs.)"""
    if not any(map(lists_subnets, settings.chains)):
        return settings
    from quorumwatch.chains.bittensor.subnets import expand_all
    from quorumwatch.endpoints import http_session

    async with http_session() as session:
        return await expand_all(settings, session)


def _jails(args: argparse.Namespace) -> int:
    import time

    from quorumwatch.cli import jails as jailreport
    from quorumwatch.store import NewerSchemaError, Store, StoreError
    from quorumwatch.store import jails as jail_store

    settings = load_settings(args.config)
    chains = [c.name for c in settings.chains if args.chain in (None, c.name)]
    if not chains:
        raise ConfigError(f"--chain {args.chain}: no such chain in the configuration")
    try:
        since = None if args.since == "all" else time.time() - jailreport.parse_duration(args.since)
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None
    validator = args.validator.lower() if args.validator else None
    try:
        # Read-only: safe beside a running daemon, which writes through WAL.
        with Store(settings.storage.path, read_only=True) as store:
            events = {
                c: jail_store.events(store, c, since=since, validator=validator) for c in chains
            }
    except NewerSchemaError as exc:  # a downgrade: the setup is wrong, as for a config error
        raise ConfigError(f"storage.path: {exc}") from None
    except StoreError as exc:  # opening or reading (busy, corrupt): one line, never a traceback
        print(f"quorumwatch: {safe_text(str(exc), max_length=MAX_ERROR_LENGTH)}", file=sys.stderr)
        return 1
    if args.events:
        rows = jailreport.event_rows([e for chain_events in events.values() for e in chain_events])
        print(jailreport.render(rows, jailreport.EVENT_COLUMNS, args.format))
    else:
        rows = jailreport.summary_rows(events)
        print(jailreport.render(rows, jailreport.SUMMARY_COLUMNS, args.format))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    kind = KINDS[args.kind]
    options = _ethereum_options(args)
    scenario = _simulated_scenario(kind, args.scenario)
    banner = kind.simulate_banner
    assert banner is not None  # --kind offers only the kinds that have one
    start = kind.simulator_starter()
    host, port = _listen_flag(args.listen)
    scenarios = () if scenario is None else (scenario,)

    async def serve() -> None:
        stop = _stop_on_signals()
        try:
            simulator = await start(*scenarios, host=host, port=port, **options)
        except OSError as exc:  # the address is taken, or not ours to bind
            raise ConfigError(f"--listen {args.listen}: {exc.strerror}") from None
        async with simulator:
            name = kind.name if scenario is None else scenario.name
            print(banner.format(scenario=name, url=simulator.base_url), flush=True)
            with tempfile.TemporaryDirectory(prefix="quorumwatch-ethereum-labels-") as directory:
                if kind.name == "ethereum":
                    _print_label_files(options["validators"], Path(directory))
                await stop.wait()

    asyncio.run(serve())
    return 0


def _simulated_scenario(kind: Kind, name_or_path: str | None) -> Scenario | None:
    """The scenario `simulate` plays; --scenario on a kind that plays none is an error."""
    if kind.plays_scenarios:
        return _load_scenario(name_or_path or DEMO_SCENARIO)
    if name_or_path is not None:
        players = " or ".join(k.name for k in KINDS.values() if k.plays_scenarios)
        raise ConfigError(f"--scenario: goes with --kind {players} only")
    return None


def _listen_flag(listen: str) -> tuple[str, int]:
    try:
        return parse_listen(listen)
    except ValueError as exc:
        raise ConfigError(f"--listen: {exc}") from None


def _ethereum_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ethereum simulator's size and preset; an error for these flags on other kinds."""
    if args.kind != "ethereum":
        for flag, value in (("--validators", args.validators), ("--preset", args.preset)):
            if value is not None:
                raise ConfigError(f"{flag}: goes with --kind ethereum only")
        return {}
    from quorumwatch.simulator.ethereum import DEFAULT_VALIDATORS, available_presets

    validators = DEFAULT_VALIDATORS if args.validators is None else args.validators
    if not 1 <= validators <= 10_000_000:
        raise ConfigError(f"--validators {validators}: choose 1 to 10000000")
    preset = args.preset or DEFAULT_ETHEREUM_PRESET
    if preset not in available_presets():
        choices = ", ".join(available_presets())
        raise ConfigError(f"--preset {preset}: no such preset; choose from {choices}")
    return {"validators": validators, "preset": preset}


def _print_label_files(validators: int, directory: Path) -> None:
    """Where the labels and operators files of the simulated set are, for its config: those
    shipped for the default size, else written into `directory` (gone when it stops)."""
    from quorumwatch.simulator.ethereum import DEFAULT_VALIDATORS, shipped_label_files
    from quorumwatch.simulator.ethereum_set import write_label_files

    if validators == DEFAULT_VALIDATORS:
        labels, operators = (str(path) for path in shipped_label_files())
    else:
        labels, operators = (str(p) for p in write_label_files(directory, validators=validators))
    print(f"labels_file: {labels}\noperators_file: {operators}", flush=True)


def _demo(args: argparse.Namespace) -> int:
    from quorumwatch.simulator import start_simulator

    _listen_flag(args.listen)
    for flag, seconds in (("--poll-interval", args.poll_interval), ("--duration", args.duration)):
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"{flag} {seconds:g}: must be a positive number of seconds")
    scenario = _load_scenario(args.scenario)
    configure_logging("warning")

    async def serve() -> None:
        stop = _stop_on_signals()
        if args.duration is not None:
            asyncio.get_running_loop().call_later(args.duration, stop.set)
        # The demo keeps its jail history in a temporary store, never in the working directory.
        with tempfile.TemporaryDirectory(prefix="quorumwatch-demo-") as directory:
            async with await start_simulator(scenario) as simulator:
                await _serve_demo(args, scenario.name, simulator.base_url, Path(directory), stop)

    asyncio.run(serve())
    return 0


async def _serve_demo(
    args: argparse.Namespace, scenario: str, api_url: str, directory: Path, stop: asyncio.Event
) -> None:
    from quorumwatch.daemon import run_daemon

    settings = load_settings(
        None,
        metrics={"listen": args.listen},
        storage={"path": str(directory / "demo.db")},
        chains=[
            {
                "name": "hyperliquid",
                "kind": "hyperliquid",
                "poll_interval_seconds": args.poll_interval,
                "endpoints": [{"name": "simulator", "url": api_url}],
            }
        ],
    )

    def announce(port: int) -> None:
        host = settings.metrics.host_port[0]
        print(
            f"quorumwatch demo: scenario {scenario}, simulated API at {api_url}/info\n"
            f"metrics at http://{host}:{port}/metrics (Ctrl-C to stop)\n"
            f"status page at http://{host}:{port}/",
            flush=True,
        )

    await run_daemon(settings, stop, on_listening=announce, listen_name="--listen")


def _load_scenario(name_or_path: str) -> Scenario:
    from quorumwatch.simulator import ScenarioError, load_scenario

    try:
        return load_scenario(name_or_path)
    except (ScenarioError, ValueError) as exc:  # ValueError: a file that is not UTF-8
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        raise ConfigError(f"scenario {name_or_path}: {exc.strerror or exc}") from None


def _stop_on_signals() -> asyncio.Event:
    """Set on SIGTERM or SIGINT from now on, and already set if SIGTERM came while starting."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    if sigterm_received():
        stop.set()
    return stop


if __name__ == "__main__":
    sys.exit(main())
