"""Tests for `quorumwatch.config`: TOML + environment loading and one-line, key-naming errors."""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from quorumwatch.config import (
    DEFAULT_METRICS_PORT,
    BittensorSettings,
    ConfigError,
    Settings,
    load_settings,
    subnet_chain,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

FULL = """
log_level = "warning"

[metrics]
listen = "127.0.0.1:9100"

[storage]
path = "/var/lib/quorumwatch/state.db"

[[chains]]
name = "hyperliquid"
kind = "hyperliquid"
poll_interval_seconds = 15

[[chains.endpoints]]
name = "public"
url = "https://api.hyperliquid.xyz"

[[chains.endpoints]]
name = "own-proxy"
url = "http://10.0.0.5:3001"
timeout_seconds = 5

[[chains.entities]]
name = "Acme Staking"
validators = ["0x00000000000000000000000000000000000000aa"]
"""

MINIMAL = """
[[chains]]
name = "hl"
kind = "hyperliquid"

[[chains.endpoints]]
name = "public"
url = "https://api.hyperliquid.xyz"
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("QUORUMWATCH_"):
            monkeypatch.delenv(name)


def _load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "quorumwatch.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_full_config_loads_every_contract_key(tmp_path: Path) -> None:
    """A config using every contract key loads with exactly the values written."""
    settings = _load(tmp_path, FULL)
    assert settings.metrics.listen == "127.0.0.1:9100"
    assert settings.metrics.host_port == ("127.0.0.1", 9100)
    assert settings.storage.path == Path("/var/lib/quorumwatch/state.db")
    assert settings.log_level == "warning"
    [chain] = settings.chains
    assert (chain.name, chain.kind, chain.poll_interval_seconds) == (
        "hyperliquid",
        "hyperliquid",
        15,
    )
    assert [e.name for e in chain.endpoints] == ["public", "own-proxy"]
    assert [str(e.url).rstrip("/") for e in chain.endpoints] == [
        "https://api.hyperliquid.xyz",
        "http://10.0.0.5:3001",
    ]
    assert chain.endpoints[1].timeout_seconds == 5
    [entity] = chain.entities
    assert entity.name == "Acme Staking"
    assert entity.validators == ["0x00000000000000000000000000000000000000aa"]


def test_defaults_apply_to_omitted_keys(tmp_path: Path) -> None:
    """Omitted keys take their defaults: listen on 0.0.0.0:9877, 30 s polls, info logging."""
    settings = _load(tmp_path, MINIMAL)
    assert DEFAULT_METRICS_PORT == 9877
    assert settings.metrics.host_port == ("0.0.0.0", 9877)
    assert settings.storage.path == Path("quorumwatch.db")
    assert settings.log_level == "info"
    assert settings.chains[0].poll_interval_seconds == 30
    assert settings.chains[0].entities == []


def test_environment_overrides_nested_toml_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QUORUMWATCH_METRICS__LISTEN beats metrics.listen from the TOML file."""
    monkeypatch.setenv("QUORUMWATCH_METRICS__LISTEN", "127.0.0.2:9200")
    settings = _load(tmp_path, FULL)
    assert settings.metrics.listen == "127.0.0.2:9200"
    assert settings.chains[0].name == "hyperliquid"  # the rest of the file still applies


def test_environment_unknown_nested_key_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown nested key from the environment is reported by key and variable."""
    monkeypatch.setenv("QUORUMWATCH_METRICS__BOGUS", "1")
    assert _error(tmp_path, MINIMAL) == (
        "metrics.bogus (from QUORUMWATCH_METRICS__BOGUS): unknown key"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [("QUORUMWATCH_CHAINS", '[{"name": "hl", s3cret'), ("QUORUMWATCH_METRICS", "{listen")],
)
def test_environment_variable_that_is_not_json_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """A table or list variable that is not JSON is reported in one line naming the variable
    and where the JSON breaks, without echoing the value."""
    monkeypatch.setenv(variable, value)
    message = _error(tmp_path, MINIMAL)
    assert message.startswith(f"{variable}: not valid JSON: ")
    assert "line 1 column" in message
    assert value not in message


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("QUORUMWATCH_CHAINS", '{"name": "hl"}', "chains (from QUORUMWATCH_CHAINS): "),
        (
            "quorumwatch_chains",
            '[{"name": "hl", "kind": "nope", "endpoints": []}]',
            "chains.0.kind (from quorumwatch_chains): ",
        ),
        (
            "QUORUMWATCH_METRICS__LISTEN",
            "nowhere",
            "metrics.listen (from QUORUMWATCH_METRICS__LISTEN): ",
        ),
        ("QUORUMWATCH_LOG_LEVEL", "loud", "log_level (from QUORUMWATCH_LOG_LEVEL): "),
    ],
)
def test_invalid_value_from_the_environment_names_key_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    """An invalid value from a variable, in any case, is reported against its key and the
    variable that set it, which beats the file's value."""
    monkeypatch.setenv(variable, value)
    assert _error(tmp_path, MINIMAL).startswith(expected)


def test_invalid_value_from_the_file_names_no_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable for another key does not claim an invalid value the file gave."""
    monkeypatch.setenv("QUORUMWATCH_LOG_LEVEL", "debug")
    text = MINIMAL.replace('kind = "hyperliquid"', 'kind = "hyperliquid"\nspeed = 2')
    assert _error(tmp_path, text) == "chains.0.speed: unknown key"


def test_invalid_override_names_no_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid value passed to load_settings (as `demo` passes its flags) beats the
    environment, so the variable for that key is not named."""
    monkeypatch.setenv("QUORUMWATCH_LOG_LEVEL", "debug")
    with pytest.raises(ConfigError) as caught:
        load_settings(None, log_level="loud")
    assert str(caught.value).startswith("log_level: Input should be ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("bogus = 1\n" + MINIMAL, "bogus: unknown key", id="top-level"),
        pytest.param(
            MINIMAL.replace('kind = "hyperliquid"', 'kind = "hyperliquid"\nspeed = 2'),
            "chains.0.speed: unknown key",
            id="chain",
        ),
        pytest.param(
            MINIMAL.replace('name = "public"', 'name = "public"\nretries = 3'),
            "chains.0.endpoints.0.retries: unknown key",
            id="endpoint",
        ),
    ],
)
def test_unknown_key_is_named(tmp_path: Path, text: str, expected: str) -> None:
    """An unknown key anywhere is reported as exactly `<dotted key>: unknown key`."""
    assert _error(tmp_path, text) == expected


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    """poll_interval_seconds = "fast" is reported against chains.0.poll_interval_seconds."""
    text = MINIMAL.replace(
        'kind = "hyperliquid"', 'kind = "hyperliquid"\npoll_interval_seconds = "fast"'
    )
    assert _error(tmp_path, text).startswith("chains.0.poll_interval_seconds: ")


def test_invalid_kind_names_the_key(tmp_path: Path) -> None:
    """An unsupported chain kind is reported against chains.0.kind and names the valid kind."""
    message = _error(tmp_path, MINIMAL.replace('kind = "hyperliquid"', 'kind = "tezos"'))
    assert message.startswith("chains.0.kind: ")
    assert "hyperliquid" in message


@pytest.mark.parametrize("url", ["not a url", "ftp://api.hyperliquid.xyz", "https://"])
def test_invalid_url_names_the_key(tmp_path: Path, url: str) -> None:
    """A URL that is not absolute http(s) is reported against chains.0.endpoints.0.url."""
    message = _error(tmp_path, MINIMAL.replace("https://api.hyperliquid.xyz", url))
    assert message.startswith("chains.0.endpoints.0.url: ")


def test_url_never_echoed_in_error(tmp_path: Path) -> None:
    """An invalid URL's text (which may hold credentials) does not appear in the error."""
    bad = "https://user:s3cret@"
    message = _error(tmp_path, MINIMAL.replace("https://api.hyperliquid.xyz", bad))
    assert message.startswith("chains.0.endpoints.0.url: ")
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('name = "public"', 'name = "pub lic"', "chains.0.endpoints.0.name"),
        ('name = "public"', 'name = "public\\n"', "chains.0.endpoints.0.name"),
        ('name = "hl"', 'name = "hl{chain=\\"x\\"}"', "chains.0.name"),
        ('name = "hl"', 'name = ""', "chains.0.name"),
        ('name = "hl"', f'name = "{"h" * 65}"', "chains.0.name"),
    ],
)
def test_name_not_label_safe_is_rejected(tmp_path: Path, old: str, new: str, key: str) -> None:
    """Chain and endpoint names outside [A-Za-z0-9][A-Za-z0-9_.-]{0,63} are rejected by key."""
    assert _error(tmp_path, MINIMAL.replace(old, new, 1)).startswith(f"{key}: ")


def test_duplicate_endpoint_names_name_the_list(tmp_path: Path) -> None:
    """Two endpoints called "public" are reported against chains.0.endpoints, naming "public"."""
    text = FULL.replace('name = "own-proxy"', 'name = "public"')
    message = _error(tmp_path, text)
    assert message.startswith("chains.0.endpoints: ")
    assert "unique" in message
    assert "public" in message


def test_duplicate_chain_names_name_the_list(tmp_path: Path) -> None:
    """Two chains called "hl" are reported against the `chains` key, naming "hl"."""
    message = _error(tmp_path, MINIMAL + MINIMAL)
    assert message.startswith("chains: ")
    assert "unique" in message
    assert "hl" in message


def test_alertmanager_targets_are_url_or_every_one_of_urls(tmp_path: Path) -> None:
    """`alertmanager.targets` is [] when off, [url] for `url`, and `urls` in their order."""
    assert _load(tmp_path, MINIMAL).alertmanager.targets == []
    one = _load(tmp_path, '[alertmanager]\nurl = "http://am:9093"\n' + MINIMAL)
    assert [str(u) for u in one.alertmanager.targets] == ["http://am:9093/"]
    text = '[alertmanager]\nurls = ["http://am-2:9093", "http://am-1:9093"]\n' + MINIMAL
    both = _load(tmp_path, text)
    assert [str(u) for u in both.alertmanager.targets] == ["http://am-2:9093/", "http://am-1:9093/"]


def test_alertmanager_url_and_urls_together_is_an_error(tmp_path: Path) -> None:
    """Giving both `url` and `urls` is one error line against the alertmanager section."""
    text = '[alertmanager]\nurl = "http://a:9093"\nurls = ["http://b:9093"]\n' + MINIMAL
    assert _error(tmp_path, text) == "alertmanager: url and urls: give one or the other"


def test_alertmanager_duplicate_urls_name_positions_not_urls(tmp_path: Path) -> None:
    """The same URL twice in `alertmanager.urls` is reported by position, without the URL's
    credentials."""
    url = "http://qw:s3cret@am:9093"
    text = f'[alertmanager]\nurls = ["http://b:9093", "{url}", "{url}"]\n' + MINIMAL
    message = _error(tmp_path, text)
    assert message == "alertmanager.urls: entries 1 and 2 are the same URL"


def test_hostile_unknown_key_stays_on_one_line(tmp_path: Path) -> None:
    """An unknown key containing a newline and a bidi override is named on one clean line."""
    message = _error(tmp_path, '"evil\\nkey\u202e" = 1\n' + MINIMAL)
    assert message == "evil key: unknown key"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A --config path that does not exist raises ConfigError naming the path."""
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"absent\.toml: no such file"):
        load_settings(missing)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    """Malformed TOML raises ConfigError saying `invalid TOML` with the line number."""
    message = _error(tmp_path, MINIMAL + "\n[[chains\n")
    assert "invalid TOML" in message
    assert "line" in message


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 raises ConfigError saying `invalid TOML`."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'log_level = "d\xe9bug"\n')
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(path)


@pytest.mark.parametrize("text", ["", 'log_level = "info"\n', "chains = []\n"])
def test_no_chains_is_a_config_error(tmp_path: Path, text: str) -> None:
    """A config without any chain is reported against the `chains` key."""
    assert _error(tmp_path, text).startswith("chains: ")


@pytest.mark.parametrize("listen", ["9877", "host:", "host:65536", "host:９８７７"])
def test_invalid_listen_names_the_key(tmp_path: Path, listen: str) -> None:
    """A metrics.listen that is not HOST:PORT with an ASCII port ≤ 65535 is rejected by key."""
    message = _error(tmp_path, f'[metrics]\nlisten = "{listen}"\n' + MINIMAL)
    assert message.startswith("metrics.listen: ")


def test_overrides_without_file_are_validated() -> None:
    """With no file (the demo path), keyword overrides are validated and errors name the key."""
    settings = load_settings(
        None,
        chains=[
            {"name": "hl", "kind": "hyperliquid", "endpoints": [{"name": "sim", "url": "http://x"}]}
        ],
    )
    assert settings.chains[0].endpoints[0].name == "sim"
    with pytest.raises(ConfigError, match=r"^chains: "):
        load_settings(None)


def test_example_config_loads() -> None:
    """config.example.toml at the repo root loads and watches Hyperliquid via the public API."""
    settings = load_settings(REPO_ROOT / "config.example.toml")
    hyperliquid = [c for c in settings.chains if c.kind == "hyperliquid"]
    assert hyperliquid
    urls = [str(e.url).rstrip("/") for c in hyperliquid for e in c.endpoints]
    assert "https://api.hyperliquid.xyz" in urls


def test_example_config_commented_chains_are_valid(tmp_path: Path) -> None:
    """Uncommenting config.example.toml's extra chains gives a valid six-kind config (its
    Ethereum label files standing in as empty files), the Bittensor chain one per subnet."""
    text = (Path(__file__).resolve().parent.parent / "config.example.toml").read_text()
    head, extra = text.split("# --- More chains", 1)
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") else line for line in extra.splitlines()[1:]
    )
    for name in ("ethereum-labels.csv", "ethereum-operators.csv"):
        (tmp_path / name).write_text("key,entity\n")
        uncommented = uncommented.replace(f"/etc/quorumwatch/{name}", str(tmp_path / name))
    path = tmp_path / "all.toml"
    path.write_text(head + uncommented)
    settings = load_settings(path)
    kinds = [c.kind for c in settings.chains]
    assert kinds == [
        "hyperliquid",
        "cosmos",
        "solana",
        "ethereum",
        "bittensor",
        "bittensor",
        "generic",
    ]
    assert [c.name for c in settings.chains if c.kind == "bittensor"] == ["tao-sn1", "tao-sn64"]


def _settings_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        yield f"{prefix}{name}"
        for candidate in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                yield from _settings_keys(candidate, f"{prefix}{name}.")


def test_example_config_names_every_key() -> None:
    """config.example.toml documents every settings key, as the README says: each key's name
    is written there, set or commented out."""
    text = (REPO_ROOT / "config.example.toml").read_text(encoding="utf-8")
    keys = list(_settings_keys(Settings))
    assert "chains.alerts.for_seconds" in keys
    unnamed = [k for k in keys if not re.search(rf"\b{k.rpartition('.')[2]}\b", text)]
    assert unnamed == []


# --- request limits ----------------------------------------------------------------------------

MIB = 1024 * 1024
CHAIN_OF_KIND: dict[str, dict[str, Any]] = {
    "hyperliquid": {"endpoints": [{"name": "e", "url": "http://x"}]},
    "cosmos": {
        "endpoints": [{"name": "e", "lcd": "http://x", "rpc": "http://y"}],
        "cosmos": {"chain_id": "cosmoshub-4"},
    },
    "solana": {"endpoints": [{"name": "e", "url": "http://x"}]},
    "generic": {
        "endpoints": [{"name": "e", "url": "http://x"}],
        "generic": {"id_field": "id", "stake_field": "stake"},
    },
}


def _chain(kind: str, **keys: Any) -> dict[str, Any]:
    return {"name": "c", "kind": kind, **CHAIN_OF_KIND[kind], **keys}


def test_endpoint_timeouts_default(tmp_path: Path) -> None:
    """Unset, an endpoint connects within 5 s, waits 10 s for bytes, and 10 s in total."""
    [endpoint] = _load(tmp_path, MINIMAL).chains[0].endpoints
    assert endpoint.connect_timeout_seconds == 5.0
    assert endpoint.read_timeout_seconds == 10.0
    assert endpoint.timeout_seconds == 10.0


def test_endpoint_timeouts_load_as_written(tmp_path: Path) -> None:
    """connect and read timeouts load as written, a read limit above the total included."""
    text = MINIMAL + "connect_timeout_seconds = 2.5\nread_timeout_seconds = 30\n"
    [endpoint] = _load(tmp_path, text).chains[0].endpoints
    assert endpoint.connect_timeout_seconds == 2.5
    assert endpoint.read_timeout_seconds == 30.0
    assert endpoint.timeout_seconds == 10.0


@pytest.mark.parametrize("key", ["connect_timeout_seconds", "read_timeout_seconds"])
@pytest.mark.parametrize("value", ["0", "-1", "301", '"slow"'])
def test_invalid_endpoint_timeout_names_the_key(tmp_path: Path, key: str, value: str) -> None:
    """A connect or read timeout that is not a number in (0, 300] is rejected by its key."""
    message = _error(tmp_path, MINIMAL + f"{key} = {value}\n")
    assert message.startswith(f"chains.0.endpoints.0.{key}: ")


@pytest.mark.parametrize(
    ("kind", "limit"),
    [("hyperliquid", 4 * MIB), ("cosmos", 8 * MIB), ("solana", 32 * MIB), ("generic", 16 * MIB)],
)
def test_max_response_bytes_defaults_by_kind(kind: str, limit: int) -> None:
    """Unset or null, max_response_bytes is the kind's own default."""
    unset = load_settings(None, chains=[_chain(kind)])
    null = load_settings(None, chains=[_chain(kind, max_response_bytes=None)])
    assert unset.chains[0].max_response_bytes == limit
    assert null.chains[0].max_response_bytes == limit


def test_max_response_bytes_as_written_beats_the_kind_default(tmp_path: Path) -> None:
    """A max_response_bytes in the file is the limit, whatever the kind's default."""
    text = MINIMAL.replace(
        'kind = "hyperliquid"', 'kind = "hyperliquid"\nmax_response_bytes = 1000'
    )
    assert _load(tmp_path, text).chains[0].max_response_bytes == 1000


@pytest.mark.parametrize("value", ["0", '"big"'])
def test_invalid_max_response_bytes_names_the_key(tmp_path: Path, value: str) -> None:
    """A max_response_bytes that is not a positive integer is rejected by its key."""
    text = MINIMAL.replace(
        'kind = "hyperliquid"', f'kind = "hyperliquid"\nmax_response_bytes = {value}'
    )
    assert _error(tmp_path, text).startswith("chains.0.max_response_bytes: ")


def test_invalid_kind_is_the_only_error_with_a_null_size_limit() -> None:
    """An unknown kind with max_response_bytes null reports the kind alone, nothing else."""
    chain = _chain("hyperliquid", max_response_bytes=None) | {"kind": "tezos"}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, chains=[chain])
    assert str(caught.value).startswith("chains.0.kind: ")
    assert ";" not in str(caught.value)


# --- [chains.ethereum] ---------------------------------------------------------------------------

ETHEREUM = MINIMAL.replace('kind = "hyperliquid"', 'kind = "ethereum"')
LABEL_ADDRESS = "0x" + "ab" * 20
LABEL_PUBKEY = "0x" + "cd" * 48


def _ethereum(**keys: str) -> str:
    """ETHEREUM with a [chains.ethereum] table holding `keys` (values written as given)."""
    lines = "".join(f"{key} = {value}\n" for key, value in keys.items())
    return f"{ETHEREUM}\n[chains.ethereum]\n{lines}"


def test_ethereum_section_defaults_when_absent(tmp_path: Path) -> None:
    """An ethereum chain without [chains.ethereum] reads the head state, encoding auto, no
    labels or operators file."""
    section = _load(tmp_path, ETHEREUM).chains[0].ethereum
    assert section is not None
    assert (section.state, section.encoding) == ("head", "auto")
    assert (section.labels_file, section.operators_file) == (None, None)


def test_ethereum_section_loads_as_written(tmp_path: Path) -> None:
    """state, encoding, labels_file and operators_file load with the values written."""
    labels, operators = tmp_path / "labels.csv", tmp_path / "operators.csv"
    labels.write_text(f"key,entity\n{LABEL_ADDRESS},Acme\n")
    operators.write_text(f"key,entity\n{LABEL_PUBKEY},Node Co\n")
    text = _ethereum(
        state='"finalized"',
        encoding='"json"',
        labels_file=f'"{labels}"',
        operators_file=f'"{operators}"',
    )
    section = _load(tmp_path, text).chains[0].ethereum
    assert section is not None
    assert (section.state, section.encoding) == ("finalized", "json")
    assert (section.labels_file, section.operators_file) == (labels, operators)


@pytest.mark.parametrize(
    ("key", "content", "says"),
    [
        ("labels_file", None, "cannot read"),
        ("labels_file", "address,entity\n", "line 1: the header must be `key,entity`"),
        ("labels_file", f"key,entity\n{LABEL_ADDRESS},Acme\n0x12,Short\n", "line 3: the key"),
        ("operators_file", f"key,entity\n{LABEL_ADDRESS},Acme\n", "line 2: an operators file"),
    ],
    ids=["missing", "bad-header", "bad-key", "operator-address"],
)
def test_bad_labels_file_is_a_one_line_error_naming_the_key(
    tmp_path: Path, key: str, content: str | None, says: str
) -> None:
    """A missing or malformed labels or operators file is a ConfigError starting
    `chains.0.ethereum.<key>: <path>: ` and saying what is wrong."""
    path = tmp_path / "file.csv"
    if content is not None:
        path.write_text(content)
    message = _error(tmp_path, _ethereum(**{key: f'"{path}"'}))
    assert message.startswith(f"chains.0.ethereum.{key}: {path}: ")
    assert says in message


@pytest.mark.parametrize(
    ("key", "value"),
    [("encoding", '"protobuf"'), ("state", '"justified"'), ("labels", '"x.csv"')],
)
def test_bad_ethereum_key_names_the_key(tmp_path: Path, key: str, value: str) -> None:
    """An unknown encoding or state, or an unknown key, is reported against
    chains.0.ethereum.<key>."""
    assert _error(tmp_path, _ethereum(**{key: value})).startswith(f"chains.0.ethereum.{key}: ")


def test_ethereum_section_on_another_kind_is_an_error(tmp_path: Path) -> None:
    """[chains.ethereum] under a hyperliquid chain is reported against chains.0."""
    message = _error(tmp_path, f'{MINIMAL}\n[chains.ethereum]\nstate = "head"\n')
    assert message.startswith("chains.0: ")
    assert "ethereum" in message


def test_ethereum_entity_members_must_be_keys() -> None:
    """An Ethereum entity member that is neither a withdrawal address nor a public key (say,
    a validator index, which attribution would never match) is a config error naming it."""
    chain = {
        "name": "eth",
        "kind": "ethereum",
        "endpoints": [{"name": "node", "url": "http://127.0.0.1:5052"}],
        "entities": [{"name": "Someone", "validators": ["0x" + "ab" * 20, "12345"]}],
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(None, chains=[chain])
    assert str(caught.value).startswith("chains.0: entities.0.validators.1: kind ethereum")


def _endpoint(kind: str, **endpoint: Any) -> dict[str, Any]:
    """A chain of `kind` with one endpoint of these keys, as `load_settings` overrides."""
    sections = {"cosmos": {"chain_id": "cosmoshub-4"}}
    return {
        "name": "c",
        "kind": kind,
        "endpoints": [{"name": "e", **endpoint}],
        **({kind: sections[kind]} if kind in sections else {}),
    }


@pytest.mark.parametrize(
    ("kind", "urls", "header"),
    [
        ("hyperliquid", {"url": "https://user:s3cret@api.example"}, "Authorization"),
        ("hyperliquid", {"url": "https://user@api.example"}, "authorization"),
        ("solana", {"url": "https://:s3cret@api.example"}, "AUTHORIZATION"),
        (
            "cosmos",
            {"lcd": "https://lcd.example", "rpc": "https://user:s3cret@rpc.example"},
            "Authorization",
        ),
    ],
)
def test_authorization_beside_url_userinfo_is_rejected_naming_the_header(
    kind: str, urls: dict[str, str], header: str
) -> None:
    """An Authorization header (any case) beside userinfo in any of the endpoint's URLs, even
    a user or a password alone, is one error naming the header and the URL key, never the
    secret."""
    chain = _endpoint(kind, **urls, headers={header: "Bearer t0ken"})
    with pytest.raises(ConfigError) as caught:
        load_settings(None, chains=[chain])
    message = str(caught.value)
    role = next(role for role, url in urls.items() if "@" in url)
    assert message == (
        f"chains.0.endpoints.0.headers: {header}: credentials given twice, here and as the"
        f" userinfo of {role}: keep one"
    )
    assert "s3cret" not in message
    assert "t0ken" not in message


def test_a_header_given_twice_in_two_cases_is_rejected() -> None:
    """Authorization and authorization on one endpoint (TOML keys are case-sensitive, HTTP
    header names are not) is an error naming both."""
    headers = {"Authorization": "a", "authorization": "b"}
    chain = _endpoint("hyperliquid", url="https://api.example", headers=headers)
    with pytest.raises(ConfigError) as caught:
        load_settings(None, chains=[chain])
    assert str(caught.value) == (
        "chains.0.endpoints.0.headers: Authorization and authorization: the same header twice"
    )


@pytest.mark.parametrize(
    "endpoint",
    [
        {"url": "https://user:s3cret@api.example"},
        {"url": "https://api.example", "headers": {"Authorization": "Bearer t0ken"}},
        {"url": "https://user:s3cret@api.example", "headers": {"X-Api-Key": "k3y"}},
        {"url": "https://api.example?api_key=k3y", "headers": {"Authorization": "Bearer t0ken"}},
    ],
)
def test_credentials_given_once_load(endpoint: dict[str, Any]) -> None:
    """Userinfo alone, an Authorization header alone, userinfo beside another header, and a
    query key beside an Authorization header all load."""
    settings = load_settings(None, chains=[_endpoint("hyperliquid", **endpoint)])
    assert settings.chains[0].endpoints[0].headers.keys() == endpoint.get("headers", {}).keys()


BITTENSOR = """
[[chains]]
name = "tao"
kind = "bittensor"

[chains.bittensor]
netuids = [1, 64, 1]

[[chains.endpoints]]
name = "node"
url = "wss://entrypoint-finney.opentensor.ai:443"
"""


def test_bittensor_chain_is_one_chain_per_subnet(tmp_path: Path) -> None:
    """A bittensor chain listing netuids 1, 64 (and 1 again) loads as chains tao-sn1 and
    tao-sn64, each with its one netuid and the chain's endpoints."""
    chains = _load(tmp_path, BITTENSOR).chains
    assert [c.name for c in chains] == ["tao-sn1", "tao-sn64"]
    assert [c.bittensor.netuids for c in chains if c.bittensor is not None] == [[1], [64]]
    assert all(str(c.endpoints[0].url).startswith("wss://") for c in chains)


def test_bittensor_subnet_chain_clashing_with_another_is_refused(tmp_path: Path) -> None:
    """A chain already named like a subnet's chain (tao-sn1) is a duplicate chain name."""
    text = BITTENSOR + MINIMAL.replace('name = "hl"', 'name = "tao-sn1"')
    assert "tao-sn1" in _error(tmp_path, text)


ALL_SUBNETS = BITTENSOR.replace("netuids = [1, 64, 1]\n", "")


def test_subnet_refresh_defaults_to_ten_minutes_and_takes_a_positive_time(tmp_path: Path) -> None:
    """A chain of "all" subnets re-lists them every 600 s unless subnet_refresh_seconds says
    otherwise; 0 is refused, naming the key."""
    (chain,) = _load(tmp_path, ALL_SUBNETS).chains
    assert chain.bittensor is not None
    assert chain.bittensor.refresh_seconds == 600
    text = ALL_SUBNETS.replace(
        "[chains.bittensor]\n", "[chains.bittensor]\nsubnet_refresh_seconds = 30\n"
    )
    (chain,) = _load(tmp_path, text).chains
    assert chain.bittensor is not None
    assert chain.bittensor.refresh_seconds == 30
    message = _error(tmp_path, text.replace("= 30", "= 0"))
    assert message.startswith("chains.0.bittensor.subnet_refresh_seconds: Input should be greater")


def test_subnet_refresh_with_a_list_of_netuids_is_refused(tmp_path: Path) -> None:
    """subnet_refresh_seconds beside a list of netuids, which is never re-listed, is an error
    naming the key rather than a setting that does nothing."""
    text = BITTENSOR.replace(
        "netuids = [1, 64, 1]\n", "netuids = [1]\nsubnet_refresh_seconds = 60\n"
    )
    assert _error(tmp_path, text) == (
        'chains.0.bittensor.subnet_refresh_seconds: goes with netuids = "all" only: a list of'
        " netuids is not re-listed"
    )


def test_a_subnet_chain_of_all_subnets_reloads_from_its_dump(tmp_path: Path) -> None:
    """The chain of subnet 7 of a chain of "all" subnets re-listed every 30 s is chain tao-sn7
    of netuids [7], which is not re-listed: dumped and loaded again, it is the same chain."""
    text = ALL_SUBNETS.replace(
        "[chains.bittensor]\n", "[chains.bittensor]\nsubnet_refresh_seconds = 30\n"
    )
    (chain,) = _load(tmp_path, text).chains
    subnet = subnet_chain(chain, 7)
    reloaded = load_settings(None, chains=[subnet.model_dump(mode="json")]).chains
    assert reloaded == [subnet]
    assert subnet.name == "tao-sn7"
    assert subnet.bittensor == BittensorSettings(netuids=[7])


def test_a_chain_named_like_a_subnet_of_all_subnets_is_refused(tmp_path: Path) -> None:
    """Beside a chain tao of "all" subnets, a chain named tao-sn7 (a name a subnet listed later
    would take) is refused, naming it; tao-snx and tao-sn7-a are free."""
    named = MINIMAL.replace('name = "hl"', 'name = "tao-sn7"')
    message = _error(tmp_path, ALL_SUBNETS + named)
    assert message == (
        'chains: tao-sn7: named like a subnet of chain tao, whose netuids = "all" names each'
        " subnet it lists tao-sn<netuid>"
    )
    for free in ("tao-snx", "tao-sn7-a"):
        text = ALL_SUBNETS + MINIMAL.replace('name = "hl"', f'name = "{free}"')
        assert [c.name for c in _load(tmp_path, text).chains] == ["tao", free]


@pytest.mark.parametrize(
    ("kind_text", "url"),
    [(BITTENSOR, "https://entrypoint-finney.opentensor.ai"), (MINIMAL, "wss://api.x")],
)
def test_endpoint_url_scheme_goes_with_its_kind(tmp_path: Path, kind_text: str, url: str) -> None:
    """A bittensor endpoint takes ws(s) URLs only, other kinds http(s) only, reported against
    chains.0.endpoints.0.url."""
    old = "wss://entrypoint-finney.opentensor.ai:443" if "bittensor" in kind_text else None
    text = kind_text.replace(old or "https://api.hyperliquid.xyz", url)
    message = _error(tmp_path, text)
    assert message.startswith("chains.0: ")
    assert "endpoints.0.url: kind" in message


def test_bittensor_without_netuids_watches_all_subnets(tmp_path: Path) -> None:
    """A bittensor chain without a [chains.bittensor] section loads as one chain, named as
    written, of netuids "all" (listed from the chain when `run` starts)."""
    text = BITTENSOR.replace("[chains.bittensor]\nnetuids = [1, 64, 1]\n", "")
    (chain,) = _load(tmp_path, text).chains
    assert chain.name == "tao"
    assert chain.bittensor is not None
    assert chain.bittensor.netuids == "all"
