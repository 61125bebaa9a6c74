"""Configuration: a TOML file plus QUORUMWATCH_* environment overrides (nested with `__`)."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    UrlConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)
from yarl import URL

from quorumwatch.alerting.model import ALERT_NAMES
from quorumwatch.chains.kinds import KINDS, KindName
from quorumwatch.labels import safe_text

ENV_PREFIX = "QUORUMWATCH_"
DEFAULT_METRICS_PORT = 9877
DEFAULT_LISTEN = f"0.0.0.0:{DEFAULT_METRICS_PORT}"
# Subnets come and go rarely (the chain rate-limits registration): listing them again every ten
# minutes finds a change soon enough, at two calls per listing.
DEFAULT_SUBNET_REFRESH_SECONDS = 600.0

# An endpoint's URL: http(s) for most kinds, ws(s) for WebSocket JSON-RPC (each kind's
# url_schemes decide which).
EndpointUrl = Annotated[
    AnyUrl, UrlConstraints(allowed_schemes=["http", "https", "ws", "wss"], host_required=True)
]
# Names that become Prometheus label values, MQTT topic segments and log fields.
LabelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
# A validator's machine identity: a 0x address (Hyperliquid), a valoper (Cosmos), a base58
# vote account (Solana) or a generic id. Only 0x addresses are case-insensitive.
ValidatorId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]


class ConfigError(Exception):
    """An invalid configuration, described in one line that names the offending key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` as (host, port); an empty host is every interface. ValueError if malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsSettings(_Strict):
    listen: str = DEFAULT_LISTEN
    # Off by default; both of a pair or neither.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    basic_auth_username: str | None = None
    basic_auth_password: SecretStr | None = None

    @model_validator(mode="after")
    def _pairs(self) -> MetricsSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if (self.basic_auth_username is None) != (self.basic_auth_password is None):
            raise ValueError("basic_auth_username and basic_auth_password go together")
        return self

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)


class StorageSettings(_Strict):
    path: Path = Path("quorumwatch.db")
    # At least the longest metric window (7d), so windowed counts stay right after pruning.
    retention_days: int = Field(default=400, ge=7)


class EndpointSettings(_Strict):
    name: LabelName
    url: EndpointUrl | None = None  # bittensor: ws:// or wss://; other kinds: http(s)
    lcd: AnyHttpUrl | None = None  # cosmos: the REST gateway
    rpc: AnyHttpUrl | None = None  # cosmos: CometBFT RPC
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)  # total: connect to last byte
    # Sharper limits inside the total: a dead host fails fast, and a stalled answer fails
    # once no byte has come for read_timeout_seconds. Not checked against timeout_seconds,
    # which caps the request either way.
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)  # TCP and TLS handshake
    read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)  # wait for the next bytes
    # Sent with every request, e.g. an API key; never logged or exported.
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _credentials_once(
        cls, headers: dict[str, SecretStr], info: ValidationInfo
    ) -> dict[str, SecretStr]:
        """Credentials given once: a header named twice (in any case) is sent twice, and a
        URL's userinfo is sent as an Authorization header, which aiohttp refuses to combine
        with a configured one at every request."""
        names: dict[str, str] = {}
        for name in headers:
            first = names.setdefault(name.lower(), name)
            if first != name:
                raise ValueError(f"{first} and {name}: the same header twice")
        authorization = names.get("authorization")
        if authorization is not None:
            for role in ("url", "lcd", "rpc"):
                url = info.data.get(role)
                if url is not None and (url.username is not None or url.password is not None):
                    raise ValueError(
                        f"{authorization}: credentials given twice, here and as the userinfo"
                        f" of {role}: keep one"
                    )
        return headers

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # URLs may carry credentials (userinfo, query): a repr shows only where they point.
        for name, value in super().__repr_args__():
            if name in ("url", "lcd", "rpc") and value is not None:
                yield name, redact_url(str(value))
            else:
                yield name, value


def redact_url(url: str) -> str:
    """`url` without userinfo, query or fragment: safe for logs and reprs."""
    parsed = URL(url)
    return str(parsed.with_user(None).with_password(None).with_query(None).with_fragment(None))


class EntitySettings(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    validators: list[ValidatorId] = Field(min_length=1)


class PolicySettings(_Strict):
    """When `run --once` reports WARNING or CRITICAL for a chain."""

    critical_when_entity_can_control: bool = True
    warning_when_entity_can_halt: bool = True
    critical_when_halted: bool = True
    liveness_margin_warning: float = Field(default=0.05, ge=0, le=1)
    warning_when_single_endpoint: bool = True


class JailStormSettings(_Strict):
    """A jail storm: at least `min_validators` distinct validators, or `min_stake_ratio` of
    consensus stake, jailed within `window_seconds`."""

    min_validators: int = Field(default=3, ge=1)
    min_stake_ratio: float = Field(default=0.10, gt=0, le=1)
    window_seconds: float = Field(default=3600.0, gt=0)


class AlertSettings(_Strict):
    """Thresholds and `for` durations of the daemon's alert rules for one chain."""

    liveness_margin_min: float = Field(default=0.05, ge=0, le=1)
    nakamoto_halt_min: int = Field(default=0, ge=0)  # 0: only alert when the coefficient falls
    # Hysteresis: a firing share or margin alert resolves only this far back across its line.
    hysteresis_ratio: float = Field(default=0.005, ge=0, le=0.1)
    data_stale_seconds: float | None = Field(default=None, gt=0)  # default: 3 poll intervals
    # Beyond 5 epochs from head to finalized checkpoint, an Ethereum chain is in the inactivity
    # leak (finality delay > MIN_EPOCHS_TO_INACTIVITY_PENALTY = 4).
    finality_lag_max_epochs: int = Field(default=5, ge=1)
    # BlockAuthoritiesLow below this many block authorities, where the chain has a fixed set
    # (Bittensor's Aura authorities): 1 alerts only when none is left.
    block_authorities_min: int = Field(default=1, ge=0)
    watched_validators: list[ValidatorId] = Field(default_factory=list)
    for_seconds: dict[str, float] = Field(default_factory=dict)  # per alert name

    @field_validator("for_seconds")
    @classmethod
    def _known_alerts(cls, for_seconds: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(for_seconds) - ALERT_NAMES)
        if unknown:
            raise ValueError(f"unknown alerts {unknown}; known: {sorted(ALERT_NAMES)}")
        if any(seconds < 0 for seconds in for_seconds.values()):
            raise ValueError("durations must not be negative")
        return for_seconds


class CosmosSettings(_Strict):
    """Cosmos SDK / CometBFT specifics."""

    chain_id: str = Field(min_length=1)  # an RPC node on another network is rejected
    token_exponent: int = Field(default=6, ge=0, le=30)  # display decimals of the bond denom
    power_reduction: int = Field(default=10**6, ge=1)  # base-denom tokens per unit of power
    group_by_identity: bool = False  # entities from description.identity (a claim: opt-in)


class GenericSettings(_Strict):
    """Any HTTP JSON endpoint: where the validator list and its fields are (dotted paths)."""

    method: Literal["GET", "POST"] = "GET"
    path: str = Field(default="/", pattern=r"^/")
    body: dict[str, object] | None = None  # JSON body for POST
    list_path: str = ""  # "" when the answer is the list itself, e.g. "result.validators"
    id_field: str = Field(min_length=1)
    name_field: str | None = None
    stake_field: str = Field(min_length=1)  # an integer, or a string of one
    jailed_field: str | None = None  # a boolean; absent: nobody is jailed
    active_field: str | None = None  # a boolean; absent: everybody is active
    token_decimals: int = Field(default=0, ge=0, le=30)
    # Where the answer says when it was current, from the answer's root (e.g. "data.time"):
    # Unix time in `time_unit`, or an RFC 3339 string with an offset. Then an answer dated
    # more than max_clock_skew_seconds from our clock, either way, is rejected as stale.
    time_field: str | None = Field(default=None, min_length=1)
    time_unit: Literal["s", "ms"] = "s"


class EthereumSettings(_Strict):
    """Ethereum beacon node specifics: which state, which encoding, and off-chain labels."""

    state: Literal["head", "finalized"] = "head"
    # auto: the SSZ BeaconState, falling back to the JSON validators when the node refuses it.
    encoding: Literal["auto", "ssz", "json"] = "auto"
    labels_file: Path | None = None  # CSV `key,entity`: withdrawal address or pubkey → entity
    operators_file: Path | None = None  # CSV `key,entity`: pubkey → node operator

    @field_validator("labels_file", "operators_file")
    @classmethod
    def _readable_labels(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is not None:
            from quorumwatch.chains.ethereum.labels import read_labels

            read_labels(path, pubkeys_only=info.field_name == "operators_file")
        return path


class BittensorSettings(_Strict):
    """Bittensor specifics: which subnets, each reported as chain `<name>-sn<netuid>`."""

    # A list is expanded into one chain per subnet when the configuration loads (Settings);
    # "all" when `run` starts, from the subnets the chain lists then (chains.bittensor.subnets).
    netuids: (
        Annotated[list[Annotated[int, Field(ge=0, le=65535)]], Field(min_length=1)] | Literal["all"]
    ) = "all"
    # "all" only: how often the daemon lists the subnets again (unset: every
    # DEFAULT_SUBNET_REFRESH_SECONDS), to watch those registered since and drop those
    # deregistered.
    subnet_refresh_seconds: float | None = Field(default=None, gt=0)

    @field_validator("subnet_refresh_seconds")
    @classmethod
    def _refresh_goes_with_all(cls, seconds: float | None, info: ValidationInfo) -> float | None:
        """Given with a list of netuids, which is never listed again, it would do nothing:
        refused rather than ignored."""
        if seconds is not None and info.data.get("netuids", "all") != "all":
            raise ValueError('goes with netuids = "all" only: a list of netuids is not re-listed')
        return seconds

    @property
    def refresh_seconds(self) -> float:
        """How often the subnets of "all" are listed again."""
        if self.subnet_refresh_seconds is None:
            return DEFAULT_SUBNET_REFRESH_SECONDS
        return self.subnet_refresh_seconds


class ChainSettings(_Strict):
    name: LabelName
    kind: KindName
    poll_interval_seconds: float = Field(default=30.0, gt=0)
    max_clock_skew_seconds: float = Field(default=60.0, gt=0)
    max_validator_series: int = Field(default=1000, ge=0)
    # False: no per-validator series at all (entity and chain series stay), for those who pay
    # per series; max_validator_series still caps the entity series.
    validator_series: bool = True
    # Unset (or null): the kind's default from KINDS, filled in by _kind_response_limit, so
    # every reader of the field sees the effective limit.
    max_response_bytes: int = Field(default=KINDS["generic"].max_response_bytes, gt=0)
    # Also read the set from a second endpoint and report whether they disagree (2x requests).
    compare_endpoints: bool = False
    endpoints: list[EndpointSettings] = Field(min_length=1)
    entities: list[EntitySettings] = Field(default_factory=list)
    policy: PolicySettings = PolicySettings()
    jail_storm: JailStormSettings = JailStormSettings()
    alerts: AlertSettings = AlertSettings()
    cosmos: CosmosSettings | None = None
    generic: GenericSettings | None = None
    ethereum: EthereumSettings | None = None
    bittensor: BittensorSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _kind_response_limit(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("max_response_bytes") is not None:
            return data
        data = {key: value for key, value in data.items() if key != "max_response_bytes"}
        kind = data.get("kind")
        if isinstance(kind, str) and kind in KINDS:
            data["max_response_bytes"] = KINDS[kind].max_response_bytes
        # else: the kind is invalid and reported as such; the field's default stands in.
        return data

    @model_validator(mode="before")
    @classmethod
    def _optional_section(cls, data: Any) -> Any:
        """A kind whose section is optional gets its defaults when the table is left out."""
        if not isinstance(data, dict):
            return data
        name = data.get("kind")
        kind = KINDS.get(name) if isinstance(name, str) else None
        if kind is None or kind.section is None or not kind.section_optional:
            return data
        if data.get(kind.section) is None:
            data = {**data, kind.section: {}}
        return data

    @model_validator(mode="after")
    def _kind_requirements(self) -> ChainSettings:
        kind = KINDS[self.kind]
        roles = kind.url_roles
        for index, endpoint in enumerate(self.endpoints):
            for role in ("url", "lcd", "rpc"):
                value = getattr(endpoint, role)
                if (value is not None) != (role in roles):
                    need = " and ".join(roles)
                    raise ValueError(
                        f"endpoints.{index}.{role}: kind {self.kind} endpoints take {need}"
                    )
                if value is not None and value.scheme not in kind.url_schemes:
                    schemes = " or ".join(f"{scheme}://" for scheme in kind.url_schemes)
                    raise ValueError(
                        f"endpoints.{index}.{role}: kind {self.kind} endpoints take {schemes}"
                    )
        member = KINDS[self.kind].entity_member
        if member is not None:
            check, description = member
            for index, entity in enumerate(self.entities):
                for position, key in enumerate(entity.validators):
                    if not check(key):
                        raise ValueError(
                            f"entities.{index}.validators.{position}: kind {self.kind} entities"
                            f" take {description}"
                        )
        for kind in KINDS.values():
            section = kind.section
            if section is None:
                continue
            present = getattr(self, section) is not None
            if self.kind == kind.name and not present:
                raise ValueError(f"{section}: kind {kind.name} needs a [chains.{section}] section")
            if self.kind != kind.name and present:
                raise ValueError(
                    f"{section}: the [chains.{section}] section goes with kind {kind.name} only"
                )
        return self

    @field_validator("endpoints")
    @classmethod
    def _unique_endpoints(cls, endpoints: list[EndpointSettings]) -> list[EndpointSettings]:
        _require_unique("endpoint", [e.name for e in endpoints])
        return endpoints


class MqttSettings(_Strict):
    """Alert events over MQTT (off unless `enabled`)."""

    enabled: bool = False
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None  # default: the system trust store
    client_id: str = Field(default="quorumwatch", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    topic_prefix: str = Field(
        default="quorumwatch", pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"
    )
    keepalive_seconds: int = Field(default=60, ge=5)
    reconnect_max_seconds: float = Field(default=30.0, gt=0)
    # The longest a TCP connect (and TLS handshake) to the broker may take. The connect blocks
    # a thread that the process must wait for at exit, so this also bounds a shutdown begun
    # while the broker's address swallows connects.
    connect_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    # On SIGTERM, how long the publisher may spend sending what is pending in the outbox; the
    # default leaves room for the rest of the shutdown within 5 s. Unsent events stay durable.
    shutdown_flush_seconds: float = Field(default=2.0, ge=0)
    # The outbox bound (it grows while the broker is unreachable): beyond it, the oldest
    # pending events are dropped and counted. Applies even with MQTT disabled.
    max_outbox_events: int = Field(default=100_000, ge=100)


class AlertmanagerSettings(_Strict):
    """Push alerts to Alertmanager's /api/v2/alerts (off unless `url` or `urls` is set)."""

    url: AnyHttpUrl | None = None
    # Every node of an Alertmanager cluster: each is sent every alert, as Prometheus does,
    # since the nodes share notification state but not alerts.
    urls: list[AnyHttpUrl] = Field(default_factory=list)
    resend_interval_seconds: float = Field(default=60.0, ge=5, le=180)
    timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_list(self) -> AlertmanagerSettings:
        if self.url is not None and self.urls:
            raise ValueError("url and urls: give one or the other")
        return self

    @field_validator("urls")
    @classmethod
    def _distinct_urls(cls, urls: list[AnyHttpUrl]) -> list[AnyHttpUrl]:
        # Positions, not URLs, in the message: a URL may carry credentials.
        seen: dict[str, int] = {}
        for index, url in enumerate(urls):
            if str(url) in seen:
                raise ValueError(f"entries {seen[str(url)]} and {index} are the same URL")
            seen[str(url)] = index
        return urls

    @property
    def targets(self) -> list[AnyHttpUrl]:
        """Where alerts are pushed: `url`, or every one of `urls`; none when off."""
        return [self.url] if self.url is not None else list(self.urls)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    metrics: MetricsSettings = MetricsSettings()
    storage: StorageSettings = StorageSettings()
    mqtt: MqttSettings = MqttSettings()
    alertmanager: AlertmanagerSettings = AlertmanagerSettings()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    chains: list[ChainSettings] = Field(min_length=1)

    @field_validator("chains")
    @classmethod
    def _unique_chains(cls, chains: list[ChainSettings]) -> list[ChainSettings]:
        chains = [one for chain in chains for one in per_subnet(chain)]
        _require_unique("chain", [c.name for c in chains])
        _require_subnet_names_free(chains)
        return chains


def per_subnet(chain: ChainSettings) -> list[ChainSettings]:
    """A Bittensor chain as one chain per subnet, `<name>-sn<netuid>`, each with its one netuid,
    so that every metric, alert and report is per subnet; other kinds as they are. A chain
    already expanded (one netuid, named for it), or of "all" subnets (not known before the
    chain is asked), stays as it is."""
    section = chain.bittensor
    if section is None or section.netuids == "all":
        return [chain]
    if len(section.netuids) == 1 and chain.name.endswith(f"-sn{section.netuids[0]}"):
        return [chain]
    return [subnet_chain(chain, netuid) for netuid in dict.fromkeys(section.netuids)]


def subnet_chain(chain: ChainSettings, netuid: int) -> ChainSettings:
    """The chain of one subnet of a Bittensor chain: named `<name>-sn<netuid>`, watching that
    subnet alone (and, like any list of netuids, not listing subnets again)."""
    section = chain.bittensor
    assert section is not None, "a bittensor chain"
    listed = section.model_copy(update={"netuids": [netuid], "subnet_refresh_seconds": None})
    return chain.model_copy(update={"name": f"{chain.name}-sn{netuid}", "bittensor": listed})


def lists_subnets(chain: ChainSettings) -> bool:
    """Whether `chain` is a Bittensor chain of `netuids = "all"`: its subnets are listed from
    the chain when `run` starts, and again while the daemon runs."""
    return chain.bittensor is not None and chain.bittensor.netuids == "all"


def _require_subnet_names_free(chains: list[ChainSettings]) -> None:
    """No chain may bear a name that a chain of "all" subnets can give one of its subnets
    (`<name>-sn<netuid>`), whichever subnets the chain comes to list."""
    for listing in filter(lists_subnets, chains):
        subnet_name = re.compile(re.escape(listing.name) + r"-sn[0-9]+")
        taken = sorted(c.name for c in chains if subnet_name.fullmatch(c.name))
        if taken:
            raise ValueError(
                f"{', '.join(taken)}: named like a subnet of chain {listing.name}, whose"
                f' netuids = "all" names each subnet it lists {listing.name}-sn<netuid>'
            )


def _require_unique(what: str, names: list[str]) -> None:
    # A validator on the list itself, so the error names the key (`chains.0.endpoints`).
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{what} names must be unique, duplicated: {', '.join(duplicates)}")


def load_settings(path: Path | None, **overrides: Any) -> Settings:
    """Load settings from `path` (TOML) under environment overrides; raise ConfigError.

    With `path` None, only the environment and `overrides` apply (used by `demo`).
    """
    if path is not None:
        _check_toml(path)
    toml_file = path

    class _FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if toml_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
            return tuple(sources)

    try:
        loaded = _FileSettings(**overrides)
    except ValidationError as exc:
        overridden = set(overrides)
        raise ConfigError(
            describe_validation_error(
                exc, lambda loc: None if loc[0] in overridden else _setting_variable(loc)
            )
        ) from None
    except SettingsError as exc:
        raise ConfigError(_describe_environment_error(exc)) from None
    return loaded


def _setting_variable(loc: tuple[int | str, ...]) -> str | None:
    """The QUORUMWATCH_* variable that gave the value at `loc`, if one did.

    The environment beats the file, so a variable naming `loc` itself, or a table or list
    holding it (`QUORUMWATCH_CHAINS` for `chains.0.name`), gave it; the most specific wins.
    Names match in any case, as pydantic-settings reads them.
    """
    variables = {name.upper(): name for name in os.environ}
    for depth in range(len(loc), 0, -1):
        name = ENV_PREFIX + "__".join(str(part) for part in loc[:depth]).upper()
        if name in variables:
            return variables[name]
    return None


def _describe_environment_error(exc: SettingsError) -> str:
    """One line naming the variable that is not valid JSON: pydantic-settings names only the
    field, but the decoding error it chains holds the text, which identifies the variable."""
    cause = exc.__cause__
    if isinstance(cause, json.JSONDecodeError):
        for name, value in os.environ.items():
            if name.upper().startswith(ENV_PREFIX) and value == cause.doc:
                # The message locates the fault without quoting the value, which may be secret.
                return f"{safe_text(name, max_length=128)}: not valid JSON: {cause}"
    return f"environment: {exc}"


def _check_toml(path: Path) -> None:
    # pydantic-settings silently skips a missing file; an explicit --config must exist.
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from None


def describe_validation_error(
    exc: ValidationError,
    variable: Callable[[tuple[int | str, ...]], str | None] = lambda loc: None,
) -> str:
    """One line naming every offending key, e.g. `chains.0.kind: Input should be ...`, and the
    environment variable its value came from, where `variable` names one."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        # Keys come from the file: a hostile key must not break the one-line message.
        key = ".".join(safe_text(str(part), max_length=128) for part in error["loc"])
        origin = variable(error["loc"]) if error["loc"] else None
        if origin is not None:
            key = f"{key} (from {safe_text(origin, max_length=128)})"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        parts.append(f"{key or '(top level)'}: {message}")
    return "; ".join(parts)
