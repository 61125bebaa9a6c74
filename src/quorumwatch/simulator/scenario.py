"""Scenario files for the Hyperliquid info-API simulator.

A scenario is a JSON timeline of validator sets and API faults::

    {"name": "demo", "description": "...",
     "steps": [
       {"repeat": 3,                  # serve for N validatorSummaries requests (default 1);
                                      # the last step repeats forever
        "validators": [...],          # the full set (required in the first step), OR
        "changes": {"0xaddr": {...}}, # patch the previous set by address; an unknown
                                      # address adds a validator from a full compact spec
        "remove": ["0xaddr"],         # drop validators from the previous set
        "fault": {"kind": "..."},     # optional, see below
        "clock_offset_seconds": 0}]}  # added to exchangeStatus time (stale or skewed API)

A step with neither ``validators`` nor ``changes``/``remove`` keeps the previous set.

Compact validator (``stake`` is in 1e-8 HYPE; ``stake_hype`` is an exact decimal string)::

    {"validator": "0x<40 hex>", "name": "...", "stake": 123 | "stake_hype": "1.5",
     "jailed": false, "active": true, "signer": "0x..." (default: validator),
     "unjailable_after_ms": int | null (default: null, or 2026-01-01 when jailed),
     "uptime": {"day": "1.0", "week": "1.0", "month": "1.0"},
     "commission": "0.05", "description": ""}

Faults, each with ``applies_to``: "validatorSummaries" (default), "exchangeStatus" or "all":

- ``latency`` {seconds}: answer correctly after a delay.
- ``http_status`` {status, retry_after?, body?}: a string body is sent as text/plain,
  any other JSON value as application/json; ``retry_after`` (seconds) sets Retry-After.
- ``timeout`` {seconds=120}: hang, then give up with 504 as a CDN would.
- ``malformed_json``: HTTP 200 with the correct body truncated.
- ``empty_set``: HTTP 200 ``[]``.
- ``raw`` {body}: HTTP 200 with exactly this JSON body (schema drift).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Context, Decimal, Inexact, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple, TypeAlias

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = dict[str, JsonValue]
RequestType = Literal["validatorSummaries", "exchangeStatus"]
FaultTarget = Literal["validatorSummaries", "exchangeStatus", "all"]
FAULT_TARGETS: tuple[FaultTarget, ...] = ("validatorSummaries", "exchangeStatus", "all")

HYPE_BASE_UNITS = 10**8
# A jailed row must carry a time (null there is a schema error), so scenarios need not spell one.
DEFAULT_UNJAILABLE_AFTER_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DEFAULT_COMMISSION = "0.05"
DEFAULT_TIMEOUT_SECONDS = 120.0
UPTIME_PERIODS = ("day", "week", "month")
# One sample a minute, as on mainnet.
_SAMPLES_PER_PERIOD = {"day": 1440, "week": 10080, "month": 43200}
# The monitor never reads APR; a plausible constant keeps rows realistic.
_PREDICTED_APR = "0.0215"

_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
_VALIDATOR_KEYS = frozenset(
    {
        "validator",
        "name",
        "stake",
        "stake_hype",
        "jailed",
        "active",
        "signer",
        "unjailable_after_ms",
        "uptime",
        "commission",
        "description",
    }
)
_STEP_KEYS = frozenset(
    {"repeat", "validators", "changes", "remove", "fault", "clock_offset_seconds"}
)
_SCENARIO_KEYS = frozenset({"name", "description", "steps"})
# Wide enough that any sane stake converts without rounding; Inexact flags the rest.
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])


class ScenarioError(ValueError):
    """A scenario cannot be found or is invalid; the message names the offending field."""


@dataclass(frozen=True)
class Uptime:
    day: str = "1.0"
    week: str = "1.0"
    month: str = "1.0"


@dataclass(frozen=True)
class ValidatorSpec:
    validator: str
    signer: str
    name: str
    description: str
    stake: int
    jailed: bool
    active: bool
    unjailable_after_ms: int | None
    commission: str
    uptime: Uptime


@dataclass(frozen=True, kw_only=True)
class FaultBase:
    applies_to: FaultTarget = "validatorSummaries"

    def affects(self, request_type: RequestType) -> bool:
        return self.applies_to in ("all", request_type)


@dataclass(frozen=True, kw_only=True)
class LatencyFault(FaultBase):
    seconds: float


@dataclass(frozen=True, kw_only=True)
class HttpStatusFault(FaultBase):
    status: int
    retry_after: int | None = None
    body: str | None = None  # already encoded, so an explicit JSON null stays distinct
    content_type: str = "text/plain"


@dataclass(frozen=True, kw_only=True)
class TimeoutFault(FaultBase):
    seconds: float = DEFAULT_TIMEOUT_SECONDS


@dataclass(frozen=True, kw_only=True)
class MalformedJsonFault(FaultBase):
    pass


@dataclass(frozen=True, kw_only=True)
class EmptySetFault(FaultBase):
    pass


@dataclass(frozen=True, kw_only=True)
class RawFault(FaultBase):
    body: JsonValue


Fault: TypeAlias = (
    LatencyFault | HttpStatusFault | TimeoutFault | MalformedJsonFault | EmptySetFault | RawFault
)


@dataclass(frozen=True)
class Step:
    repeat: int
    validators: tuple[ValidatorSpec, ...]
    fault: Fault | None = None
    clock_offset_seconds: float = 0.0

    def fault_for(self, request_type: RequestType) -> Fault | None:
        if self.fault is not None and self.fault.affects(request_type):
            return self.fault
        return None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    steps: tuple[Step, ...]


# --- loading ---------------------------------------------------------------------------------


def available_scenarios() -> list[str]:
    """Names of the scenarios bundled with quorumwatch, sorted."""
    return sorted(
        entry.name.removesuffix(".json")
        for entry in _bundled_dir().iterdir()
        if entry.name.endswith(".json")
    )


def load_scenario(name_or_path: str) -> Scenario:
    """Load a scenario from a file path, or else by bundled scenario name."""
    path = Path(name_or_path)
    if path.is_file():
        return _parse_text(path.read_text(encoding="utf-8"), origin=str(path))
    bundled_names = available_scenarios()
    if name_or_path not in bundled_names:
        raise ScenarioError(
            f"unknown scenario {name_or_path!r}: not a file, and not one of the bundled "
            f"scenarios ({', '.join(bundled_names)})"
        )
    bundled = _bundled_dir().joinpath(f"{name_or_path}.json")
    return _parse_text(bundled.read_text(encoding="utf-8"), origin=name_or_path)


def _bundled_dir() -> Traversable:
    return resources.files("quorumwatch.simulator").joinpath("scenarios")


def _parse_text(text: str, origin: str) -> Scenario:
    try:
        document = json.loads(text)
        return parse_scenario(document)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"scenario {origin}: invalid JSON: {exc}") from exc
    except ScenarioError as exc:
        raise ScenarioError(f"scenario {origin}: {exc}") from exc


def parse_scenario(document: object) -> Scenario:
    """Validate a decoded scenario document and resolve every step to a full validator set."""
    top = _mapping(document, "scenario")
    _reject_unknown_keys(top, _SCENARIO_KEYS, "scenario")
    raw_steps = _list(_required(top, "steps", "scenario"), "steps")
    if not raw_steps:
        raise ScenarioError("steps: must contain at least one step")
    return Scenario(
        name=_string(_required(top, "name", "scenario"), "name"),
        description=_string(top.get("description", ""), "description"),
        steps=_parse_steps(raw_steps),
    )


# --- steps -----------------------------------------------------------------------------------


class _RawValidator(NamedTuple):
    spec: Mapping[str, object]
    path: str  # where the spec was last written, for error messages


# Validators are patched as raw compact specs so that defaults which depend on other fields
# (unjailable_after_ms on jailed) are recomputed after every patch.
_RawSet: TypeAlias = dict[str, _RawValidator]


def _parse_steps(raw_steps: list[object]) -> tuple[Step, ...]:
    steps: list[Step] = []
    current: _RawSet = {}
    for index, raw_step in enumerate(raw_steps):
        path = f"steps[{index}]"
        step = _mapping(raw_step, path)
        _reject_unknown_keys(step, _STEP_KEYS, path)
        current = _resolve_set(step, current, path, first=index == 0)
        steps.append(
            Step(
                repeat=_positive_int(step.get("repeat", 1), f"{path}.repeat"),
                validators=tuple(_parse_validator(*raw) for raw in current.values()),
                fault=_parse_fault(step["fault"], f"{path}.fault") if "fault" in step else None,
                clock_offset_seconds=_number(
                    step.get("clock_offset_seconds", 0), f"{path}.clock_offset_seconds"
                ),
            )
        )
    return tuple(steps)


def _resolve_set(
    step: Mapping[str, object], previous: _RawSet, path: str, *, first: bool
) -> _RawSet:
    if "validators" in step:
        if "changes" in step or "remove" in step:
            raise ScenarioError(f"{path}: 'validators' cannot be combined with changes/remove")
        return _full_set(_list(step["validators"], f"{path}.validators"), f"{path}.validators")
    if first:
        raise ScenarioError(f"{path}.validators: the first step must list the validators")
    patched = _remove(previous, step.get("remove", []), f"{path}.remove")
    return _apply_changes(patched, step.get("changes", {}), f"{path}.changes")


def _full_set(raw_validators: list[object], path: str) -> _RawSet:
    result: _RawSet = {}
    for index, raw in enumerate(raw_validators):
        item_path = f"{path}[{index}]"
        spec = _mapping(raw, item_path)
        address = _address(_required(spec, "validator", item_path), f"{item_path}.validator")
        if address in result:
            raise ScenarioError(f"{item_path}.validator: duplicate address {address}")
        result[address] = _RawValidator(spec, item_path)
    return result


def _remove(previous: _RawSet, raw_remove: object, path: str) -> _RawSet:
    result = dict(previous)
    for index, raw in enumerate(_list(raw_remove, path)):
        address = _address(raw, f"{path}[{index}]")
        if result.pop(address, None) is None:
            raise ScenarioError(f"{path}[{index}]: {address} is not in the previous step's set")
    return result


def _apply_changes(previous: _RawSet, raw_changes: object, path: str) -> _RawSet:
    result = dict(previous)
    for raw_address, raw_patch in _mapping(raw_changes, path).items():
        address = _address(raw_address, path)
        patch_path = f"{path}.{raw_address}"
        base = result[address].spec if address in result else {"validator": address}
        result[address] = _RawValidator(_merge(base, _mapping(raw_patch, patch_path)), patch_path)
    return result


def _merge(base: Mapping[str, object], patch: Mapping[str, object]) -> Mapping[str, object]:
    merged = dict(base)
    if "stake" in patch or "stake_hype" in patch:
        # Either unit may replace the other; keeping both would read as a conflict.
        merged.pop("stake", None)
        merged.pop("stake_hype", None)
    merged.update(patch)
    return merged


# --- validators ------------------------------------------------------------------------------


def _parse_validator(spec: Mapping[str, object], path: str) -> ValidatorSpec:
    _reject_unknown_keys(spec, _VALIDATOR_KEYS, path)
    address = _address(_required(spec, "validator", path), f"{path}.validator")
    jailed = _bool(spec.get("jailed", False), f"{path}.jailed")
    return ValidatorSpec(
        validator=address,
        signer=_address(spec.get("signer", address), f"{path}.signer"),
        name=_string(_required(spec, "name", path), f"{path}.name"),
        description=_string(spec.get("description", ""), f"{path}.description"),
        stake=_stake(spec, path),
        jailed=jailed,
        active=_bool(spec.get("active", True), f"{path}.active"),
        unjailable_after_ms=_unjailable_after(spec, jailed, path),
        commission=_decimal_string(
            spec.get("commission", DEFAULT_COMMISSION), f"{path}.commission"
        ),
        uptime=_uptime(spec.get("uptime", {}), f"{path}.uptime"),
    )


def _stake(spec: Mapping[str, object], path: str) -> int:
    if "stake" in spec and "stake_hype" in spec:
        raise ScenarioError(f"{path}: give either stake or stake_hype, not both")
    if "stake_hype" in spec:
        return hype_to_base_units(spec["stake_hype"], f"{path}.stake_hype")
    return _non_negative_int(_required(spec, "stake", path), f"{path}.stake")


def hype_to_base_units(value: object, path: str = "stake_hype") -> int:
    """Convert a decimal HYPE string to 1e-8 units, refusing anything that would round."""
    text = _string(value, path)
    try:
        scaled = _EXACT.multiply(Decimal(text), Decimal(HYPE_BASE_UNITS))
    except InvalidOperation as exc:
        raise ScenarioError(f"{path}: {text!r} is not a decimal number") from exc
    except Inexact as exc:
        raise ScenarioError(f"{path}: {text!r} has too many digits") from exc
    if not scaled.is_finite() or scaled < 0:
        raise ScenarioError(f"{path}: {text!r} must be a finite non-negative amount")
    if scaled != scaled.to_integral_value():
        raise ScenarioError(f"{path}: {text!r} is not a multiple of 1e-8 HYPE")
    return int(scaled)


def _unjailable_after(spec: Mapping[str, object], jailed: bool, path: str) -> int | None:
    default = DEFAULT_UNJAILABLE_AFTER_MS if jailed else None
    value = spec.get("unjailable_after_ms", default)
    if value is None:
        return None
    return _non_negative_int(value, f"{path}.unjailable_after_ms")


def _uptime(value: object, path: str) -> Uptime:
    periods = _mapping(value, path)
    _reject_unknown_keys(periods, frozenset(UPTIME_PERIODS), path)
    fractions = {
        period: _decimal_string(fraction, f"{path}.{period}")
        for period, fraction in periods.items()
    }
    return Uptime(**fractions)


# --- faults ----------------------------------------------------------------------------------


def _parse_fault(value: object, path: str) -> Fault:
    spec = _mapping(value, path)
    kind = _string(_required(spec, "kind", path), f"{path}.kind")
    parser = _FAULT_PARSERS.get(kind)
    if parser is None:
        raise ScenarioError(
            f"{path}.kind: unknown fault {kind!r} (expected one of {', '.join(_FAULT_PARSERS)})"
        )
    keys, build = parser
    _reject_unknown_keys(spec, keys | {"kind", "applies_to"}, path)
    return build(spec, path, _fault_target(spec.get("applies_to", "validatorSummaries"), path))


def _fault_target(value: object, path: str) -> FaultTarget:
    for target in FAULT_TARGETS:
        if value == target:
            return target
    raise ScenarioError(f"{path}.applies_to: {value!r} is not one of {', '.join(FAULT_TARGETS)}")


def _latency(spec: Mapping[str, object], path: str, target: FaultTarget) -> Fault:
    seconds = _number(_required(spec, "seconds", path), f"{path}.seconds")
    return LatencyFault(applies_to=target, seconds=_non_negative(seconds, f"{path}.seconds"))


def _http_status(spec: Mapping[str, object], path: str, target: FaultTarget) -> Fault:
    status = _non_negative_int(_required(spec, "status", path), f"{path}.status")
    if not 100 <= status <= 599:
        raise ScenarioError(f"{path}.status: {status} is not an HTTP status code")
    retry_after = spec.get("retry_after")
    fault = HttpStatusFault(
        applies_to=target,
        status=status,
        retry_after=None
        if retry_after is None
        else _non_negative_int(retry_after, f"{path}.retry_after"),
    )
    if "body" not in spec:
        return fault
    body = _json_value(spec["body"], f"{path}.body")
    if isinstance(body, str):
        return replace(fault, body=body)
    return replace(fault, body=json.dumps(body), content_type="application/json")


def _timeout(spec: Mapping[str, object], path: str, target: FaultTarget) -> Fault:
    seconds = _number(spec.get("seconds", DEFAULT_TIMEOUT_SECONDS), f"{path}.seconds")
    return TimeoutFault(applies_to=target, seconds=_non_negative(seconds, f"{path}.seconds"))


def _malformed_json(spec: Mapping[str, object], path: str, target: FaultTarget) -> Fault:
    return MalformedJsonFault(applies_to=target)


def _empty_set(spec: Mapping[str, object], path: str, target: FaultTarget) -> Fault:
    return EmptySetFault(applies_to=target)


def _raw(spec: Mapping[str, object], path: str, target: FaultTarget) -> Fault:
    return RawFault(
        applies_to=target, body=_json_value(_required(spec, "body", path), f"{path}.body")
    )


_FaultBuilder: TypeAlias = Callable[[Mapping[str, object], str, FaultTarget], Fault]
_FAULT_PARSERS: dict[str, tuple[frozenset[str], _FaultBuilder]] = {
    "latency": (frozenset({"seconds"}), _latency),
    "http_status": (frozenset({"status", "retry_after", "body"}), _http_status),
    "timeout": (frozenset({"seconds"}), _timeout),
    "malformed_json": (frozenset(), _malformed_json),
    "empty_set": (frozenset(), _empty_set),
    "raw": (frozenset({"body"}), _raw),
}


# --- rendering -------------------------------------------------------------------------------


def render_validator_summaries(step: Step) -> list[JsonObject]:
    """The step's validator set exactly as `{"type": "validatorSummaries"}` returns it."""
    return [_render_row(spec) for spec in step.validators]


def _render_row(spec: ValidatorSpec) -> JsonObject:
    producing = spec.active and not spec.jailed
    return {
        "validator": spec.validator,
        "signer": spec.signer,
        "name": spec.name,
        "description": spec.description,
        "nRecentBlocks": 1 if producing else 0,
        "stake": spec.stake,
        "isJailed": spec.jailed,
        "unjailableAfter": spec.unjailable_after_ms,
        "isActive": spec.active,
        "commission": spec.commission,
        "stats": [
            [
                period,
                {
                    "uptimeFraction": getattr(spec.uptime, period),
                    "predictedApr": _PREDICTED_APR if producing else "0.0",
                    "nSamples": _SAMPLES_PER_PERIOD[period],
                },
            ]
            for period in UPTIME_PERIODS
        ],
    }


# --- field readers: each names the field in its error ----------------------------------------


def _required(spec: Mapping[str, object], key: str, path: str) -> object:
    if key not in spec:
        raise ScenarioError(f"{path}.{key}: required field is missing")
    return spec[key]


def _reject_unknown_keys(spec: Mapping[str, object], allowed: frozenset[str], path: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ScenarioError(f"{path}.{unknown[0]}: unknown field")


def _mapping(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ScenarioError(f"{path}: expected a JSON object")
    return value


def _list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise ScenarioError(f"{path}: expected a JSON array")
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ScenarioError(f"{path}: expected a string, got {value!r}")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(f"{path}: expected true or false, got {value!r}")
    return value


def _non_negative_int(value: object, path: str) -> int:
    # bool is an int subclass, and `true` as a stake is surely a typo.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScenarioError(f"{path}: expected a non-negative integer, got {value!r}")
    return value


def _positive_int(value: object, path: str) -> int:
    number = _non_negative_int(value, path)
    if number == 0:
        raise ScenarioError(f"{path}: must be at least 1")
    return number


def _number(value: object, path: str) -> float:
    # json.loads accepts NaN and Infinity, which no delay or offset can mean.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{path}: expected a finite number, got {value!r}")
    return float(value)


def _non_negative(seconds: float, path: str) -> float:
    if seconds < 0:
        raise ScenarioError(f"{path}: must not be negative")
    return seconds


def _decimal_string(value: object, path: str) -> str:
    text = _string(value, path)
    try:
        parsed = Decimal(text)
    except InvalidOperation as exc:
        raise ScenarioError(f"{path}: {text!r} is not a decimal string") from exc
    if not parsed.is_finite():
        raise ScenarioError(f"{path}: {text!r} is not a finite decimal")
    return text


def _address(value: object, path: str) -> str:
    address = _string(value, path).lower()
    if not _ADDRESS.fullmatch(address):
        raise ScenarioError(f"{path}: {value!r} is not a 0x-prefixed 40-hex-digit address")
    return address


def _json_value(value: object, path: str) -> JsonValue:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_json_value(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _json_value(item, f"{path}.{key}") for key, item in value.items()}
    raise ScenarioError(f"{path}: {value!r} is not a JSON value")
