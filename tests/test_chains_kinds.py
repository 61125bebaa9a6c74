"""The kind registry: every kind complete, and config, CLI and factory reading it alone."""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any, cast, get_args

import aiohttp
import pytest

from quorumwatch.chains import make_source
from quorumwatch.chains.base import ChainSource
from quorumwatch.chains.kinds import KINDS, Kind, KindName
from quorumwatch.cli import app as cli
from quorumwatch.config import ChainSettings, ConfigError, EndpointSettings, load_settings
from quorumwatch.endpoints import EndpointPool

# A minimal valid chain of each kind.
CHAIN_OF_KIND: dict[str, dict[str, Any]] = {
    "hyperliquid": {"endpoints": [{"name": "e", "url": "http://x"}]},
    "cosmos": {
        "endpoints": [{"name": "e", "lcd": "http://x", "rpc": "http://y"}],
        "cosmos": {"chain_id": "cosmoshub-4", "token_exponent": 18},
    },
    "solana": {"endpoints": [{"name": "e", "url": "http://x"}]},
    "generic": {
        "endpoints": [{"name": "e", "url": "http://x"}],
        "generic": {"id_field": "id", "stake_field": "stake", "token_decimals": 4},
    },
    "ethereum": {"endpoints": [{"name": "e", "url": "http://x"}]},  # its section is optional
    "bittensor": {
        "endpoints": [{"name": "e", "url": "ws://x"}],
        "bittensor": {"netuids": [1]},
    },
}
EVERY_KIND = pytest.mark.parametrize("kind", KINDS.values(), ids=list(KINDS))


def _settings(name: str, **keys: Any) -> ChainSettings:
    return ChainSettings.model_validate({"name": "c", "kind": name, **CHAIN_OF_KIND[name], **keys})


def test_the_registry_holds_every_kind_name_once_by_its_own_name() -> None:
    """KINDS has one entry for each KindName, in order, each under its own name."""
    assert tuple(KINDS) == get_args(KindName)
    assert all(name == kind.name for name, kind in KINDS.items())
    assert set(CHAIN_OF_KIND) == set(KINDS)


def test_config_offers_exactly_the_registered_kinds() -> None:
    """A chain's `kind` may be any registered kind, and nothing else."""
    assert get_args(ChainSettings.model_fields["kind"].annotation) == tuple(KINDS)


@EVERY_KIND
def test_each_kind_names_a_source_class_that_is_its_own(kind: Kind) -> None:
    """The source path imports a ChainSource declaring this kind."""
    source = kind.source_class()
    assert issubclass(source, ChainSource)
    assert source.kind == kind.name


@EVERY_KIND
def test_each_kind_names_a_simulator_that_starts_one(kind: Kind) -> None:
    """The simulator path imports an async start function taking host and port."""
    start = kind.simulator_starter()
    assert inspect.iscoroutinefunction(start)
    assert {"host", "port"} <= set(inspect.signature(start).parameters)


@EVERY_KIND
def test_each_kind_url_roles_and_section_are_settings_keys(kind: Kind) -> None:
    """URL roles are endpoint keys and a section is a chain key: config reads them by name."""
    assert kind.url_roles
    assert set(kind.url_roles) <= set(EndpointSettings.model_fields)
    assert kind.section is None or kind.section in ChainSettings.model_fields


@EVERY_KIND
def test_an_unset_size_limit_is_the_kind_default(kind: Kind) -> None:
    """A chain without max_response_bytes gets its kind's."""
    assert _settings(kind.name).max_response_bytes == kind.max_response_bytes


@pytest.mark.parametrize(
    "kind", [k for k in KINDS.values() if k.section is not None], ids=lambda k: k.name
)
def test_a_kind_section_goes_with_that_kind_only(kind: Kind) -> None:
    """Another kind with a kind's section is refused by name: the section goes with that kind
    only."""
    assert kind.section is not None
    other = next(name for name, k in KINDS.items() if k.section is None)
    section = CHAIN_OF_KIND[kind.name].get(kind.section, {})
    stray = {"name": "c", "kind": other, **CHAIN_OF_KIND[other], kind.section: section}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, chains=[stray])
    assert str(caught.value) == (
        f"chains.0: {kind.section}: the [chains.{kind.section}] section goes with kind "
        f"{kind.name} only"
    )


@pytest.mark.parametrize(
    "kind", [k for k in KINDS.values() if k.section is not None], ids=lambda k: k.name
)
def test_a_kind_without_its_section_is_refused_naming_it(kind: Kind) -> None:
    """A sectioned kind without its section is refused in one line naming the missing
    [chains.<section>], unless the section is optional: then its defaults apply."""
    assert kind.section is not None
    without = {"name": "c", "kind": kind.name, **CHAIN_OF_KIND[kind.name], kind.section: None}
    if kind.section_optional:
        defaults = load_settings(None, chains=[without]).chains[0]
        assert getattr(defaults, kind.section) == type(getattr(defaults, kind.section))()
        return
    with pytest.raises(ConfigError) as caught:
        load_settings(None, chains=[without])
    assert str(caught.value) == (
        f"chains.0: {kind.section}: kind {kind.name} needs a [chains.{kind.section}] section"
    )


@pytest.mark.parametrize(
    ("name", "decimals"),
    [("hyperliquid", 8), ("cosmos", 12), ("solana", 9), ("generic", 4), ("ethereum", 9)],
)
def test_make_source_builds_the_kind_source_with_its_decimals(name: str, decimals: int) -> None:
    """make_source builds the registered class; decimals are fixed or read from the section
    (cosmos: token_exponent 18 less power_reduction 10**6)."""
    settings = _settings(name)
    pool = EndpointPool(settings.endpoints, cast(aiohttp.ClientSession, None), max_response_bytes=1)
    source = make_source(settings, pool)
    assert type(source) is KINDS[name].source_class()
    assert KINDS[name].decimals(settings) == decimals


@EVERY_KIND
def test_simulate_offers_the_kinds_with_an_announcement(kind: Kind) -> None:
    """`simulate --kind` takes exactly the kinds whose simulator it can start unaided."""
    argv = ["simulate", "--kind", kind.name]
    if kind.simulate_banner is None:
        with pytest.raises(SystemExit):
            cli._parser().parse_args(argv)
    else:
        assert cli._parser().parse_args(argv).kind == kind.name


def test_reading_the_registry_imports_no_source_and_no_aiohttp() -> None:
    """Config (and so the registry) loads without aiohttp, a source or a simulator."""
    code = (
        "import sys, quorumwatch.config\n"
        "heavy = ('.source', '.parse', '.ssz', '.simulator', '.endpoints')\n"
        "print(sorted(m for m in sys.modules if m in ('aiohttp', 'numpy') or"
        " m.startswith('quorumwatch.') and any(h in m for h in heavy)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
