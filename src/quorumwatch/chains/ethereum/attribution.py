"""Who controls and who runs each Ethereum validator, from its withdrawal credentials and keys.

Entity, in order of precedence: a configured entity (`[[chains.entities]]`) or a labels-file
row naming the validator's public key; then one naming its withdrawal address (the execution
address of 0x01 and 0x02 credentials), configured first, then the labels file, then the
built-in map (Lido's withdrawal vault); otherwise the withdrawal address itself where it
withdraws two validators or more, since whoever holds it controls their stake (a detected,
unnamed entity); a validator alone behind its address, or with BLS (0x00) credentials and no
label, stands alone: an entity of one would only repeat its validator's series.

Operator (`operators_file`, by public key): who runs the keys; a validator with no operator row
is run by its entity.

Everything is computed over whole columns of key bytes: withdrawal addresses are grouped by
one sort, and keys are matched against each map's keys sorted once, so a name is looked up once
per distinct address or key, never per validator. An attribution is reused while the rows it
was made of are the same (`AttributionCache`): a registry changes an epoch at a time, polls far
more often.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from quorumwatch.chains.ethereum.labels import Labels
from quorumwatch.columns import UNATTRIBUTED
from quorumwatch.models import Attribution

EXECUTION_CREDENTIALS = (0x01, 0x02)  # ETH1_ADDRESS and COMPOUNDING withdrawal prefixes
ADDRESS_SIZE = 20
PUBKEY_SIZE = 48
_ADDRESS_AT = 12  # the address is the last 20 of the credentials' 32 bytes
_PREFIX = 8  # the leading bytes of a key compared as one big-endian uint64
_MAX_INDEX = 2**64 - 1
# Names handled per C-level call: a call over a million names would hold the GIL (and so
# the event loop) for tens of milliseconds.
_NAMES_PER_CALL = 65_536


def hex_keys(rows: NDArray[np.uint8]) -> list[str]:
    """Each row of bytes as a lower-case 0x hex string, converted in one pass."""
    width = rows.shape[1] * 2
    text = rows.tobytes().hex()
    return ["0x" + text[i : i + width] for i in range(0, len(text), width)]


def _prefixes(keys: NDArray[np.uint8]) -> NDArray[np.uint64]:
    """Each key's first 8 bytes as a big-endian number: its order is the keys' byte order."""
    leading = np.ascontiguousarray(keys[:, :_PREFIX]).view(">u8").ravel()
    return leading.astype(np.uint64)


def _byte_order(keys: NDArray[np.uint8]) -> NDArray[np.intp]:
    """The order that sorts `keys` (rows of bytes) lexicographically."""
    count, size = keys.shape
    padded = np.zeros((count, -(-size // _PREFIX) * _PREFIX), dtype=np.uint8)
    padded[:, :size] = keys
    words = padded.view(">u8").astype(np.uint64)
    order: NDArray[np.intp] = np.lexsort(words.T[::-1])  # lexsort's last key is its first
    return order


class KeyedNames:
    """Names by fixed-size byte key (withdrawal addresses or public keys), sorted once so that
    a whole column of keys is matched at a time."""

    __slots__ = ("_codes", "_keys", "_prefixes", "_run", "names")

    def __init__(self, by_key: Mapping[str, str], size: int) -> None:
        """`by_key`'s keys are lower-case 0x hex of `size` bytes each (see `LabelSources.of`)."""
        # "x" is no hex digit: only the prefixes are removed.
        raw = bytes.fromhex("".join(by_key).replace("0x", ""))
        keys = np.frombuffer(raw, dtype=np.uint8).reshape(len(by_key), size)
        order = _byte_order(keys)
        self._keys = keys[order]
        self._prefixes = _prefixes(self._keys)
        named = list(by_key.values())
        self.names: tuple[str, ...] = tuple(dict.fromkeys(named))  # distinct, indexed by code
        code = {name: i for i, name in enumerate(self.names)}
        self._codes = np.fromiter(map(code.__getitem__, named), dtype=np.intp, count=len(named))[
            order
        ]
        # Keys that share a prefix sit together: a match is tried against each in turn.
        starts = np.flatnonzero(np.diff(self._prefixes) != 0) + 1
        runs = np.diff(starts, prepend=0, append=len(named))
        self._run = int(runs.max()) if named else 0

    def find(self, keys: NDArray[np.uint8]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """The rows of `keys` (one key a row, this map's size) that this map names, and the
        code of each one's name (an index into `names`)."""
        count = len(self._keys)
        if count == 0 or len(keys) == 0:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
        prefixes = _prefixes(keys)
        at = np.searchsorted(self._prefixes, prefixes)
        rows = np.flatnonzero(at < count)
        at = at[rows]
        found_rows, found_at = [], []
        for _ in range(self._run):
            candidate = self._prefixes[at] == prefixes[rows]
            rows, at = rows[candidate], at[candidate]
            same = np.all(keys[rows] == self._keys[at], axis=1)
            found_rows.append(rows[same])
            found_at.append(at[same])
            rows, at = rows[~same], at[~same] + 1
            inside = at < count
            rows, at = rows[inside], at[inside]
        return np.concatenate(found_rows), self._codes[np.concatenate(found_at)]


@dataclass(frozen=True, slots=True, eq=False)
class LabelSources:
    """Every map a validator can be named from, each by its key bytes, precedence applied."""

    by_address: KeyedNames  # configured, else the labels file, else built in
    by_pubkey: KeyedNames  # configured, else the labels file
    operators: KeyedNames | None  # operators_file

    @classmethod
    def of(
        cls,
        *,
        configured: Mapping[str, str],
        builtin: Mapping[str, str],
        labels: Labels,
        operators: Labels | None,
    ) -> LabelSources:
        """The maps keyed by lower-case 0x hex: `configured` ([[chains.entities]], whose
        members the configuration checked are keys) holds addresses and public keys, `builtin`
        addresses."""
        return cls(
            by_address=KeyedNames(
                {**builtin, **labels.by_address, **_sized(configured, ADDRESS_SIZE)},
                ADDRESS_SIZE,
            ),
            by_pubkey=KeyedNames(
                {**labels.by_pubkey, **_sized(configured, PUBKEY_SIZE)}, PUBKEY_SIZE
            ),
            operators=None if operators is None else KeyedNames(operators.by_pubkey, PUBKEY_SIZE),
        )


def _sized(by_key: Mapping[str, str], size: int) -> dict[str, str]:
    """The entries of `by_key` whose keys are 0x hex of `size` bytes."""
    return {key: name for key, name in by_key.items() if len(key) == 2 + 2 * size}


class _Names:
    """Distinct names, each given the next id the first time it is seen."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._mapped: list[NDArray[np.int64]] = []

    def ids(self, names: Sequence[str]) -> NDArray[np.int64]:
        known = self._ids
        ids = np.empty(len(names), dtype=np.int64)
        for start in range(0, len(names), _NAMES_PER_CALL):
            part = names[start : start + _NAMES_PER_CALL]
            fresh = [name for name in dict.fromkeys(part) if name not in known]
            known.update(zip(fresh, range(len(known), len(known) + len(fresh)), strict=True))
            ids[start : start + len(part)] = np.fromiter(
                map(known.__getitem__, part), dtype=np.int64, count=len(part)
            )
        return ids

    def coded(self, keyed: KeyedNames, codes: NDArray[np.intp]) -> NDArray[np.int64]:
        """The ids of the names `codes` index in `keyed`, each distinct name looked up once."""
        distinct = np.unique(codes)
        table = np.zeros(len(keyed.names), dtype=np.int64)
        table[distinct] = self.ids([keyed.names[code] for code in distinct.tolist()])
        self._mapped.append(table[distinct])
        result: NDArray[np.int64] = table[codes]
        return result

    @property
    def mapped(self) -> NDArray[np.int64]:
        """The ids of the names a map gave (configured, labels file or built-in)."""
        return np.concatenate([np.zeros(0, dtype=np.int64), *self._mapped])

    @property
    def names(self) -> list[str]:
        return list(self._ids)


def _group(keys: NDArray[np.uint8]) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """The distinct rows of `keys`: one row of each, each row's group, each group's size.

    One sort by the keys' first 8 bytes groups them, unless two different keys share those
    bytes, when a sort by all of them does.
    """
    prefixes = _prefixes(keys)
    order = np.argsort(prefixes)
    ordered = keys[order]
    changed = np.any(ordered[1:] != ordered[:-1], axis=1)
    ordered_prefixes = prefixes[order]
    if np.any(changed & (ordered_prefixes[1:] == ordered_prefixes[:-1])):
        order = _byte_order(keys)
        ordered = keys[order]
        changed = np.any(ordered[1:] != ordered[:-1], axis=1)
    starts = np.concatenate(([True], changed))
    groups = np.cumsum(starts) - 1
    inverse = np.empty(len(keys), dtype=np.intp)
    inverse[order] = groups
    first = np.flatnonzero(starts)
    sizes = np.diff(first, append=len(keys))
    return order[first], inverse, sizes


def _used(index: NDArray[np.int64], size: int) -> NDArray[np.bool_]:
    """Which of `size` ids some row of `index` has."""
    counts = np.bincount(index[index != UNATTRIBUTED], minlength=size)
    used: NDArray[np.bool_] = counts > 0
    return used


def _merge_named_ids(
    index: NDArray[np.int64], ids: NDArray[np.uint64], names: Sequence[str], used: Sequence[int]
) -> None:
    """Give an unattributed row whose id is the name of a used group that group, in place: a
    lone row is named by its id, and no two groups may share a name."""
    numbered: dict[int, int] = {}
    for group in used:
        name = names[group]
        # As a validator index is written: ASCII digits, no leading zero, below 2**64.
        if name.isdigit() and name.isascii() and (name == "0" or name[0] != "0"):
            number = int(name)
            if number <= _MAX_INDEX:
                numbered[number] = group
    if not numbered:
        return
    keys = np.array(sorted(numbered), dtype=np.uint64)
    groups = np.array([numbered[key] for key in sorted(numbered)], dtype=np.int64)
    lone = np.flatnonzero(index == UNATTRIBUTED)
    at = np.minimum(np.searchsorted(keys, ids[lone]), len(keys) - 1)
    hit = keys[at] == ids[lone]
    index[lone[hit]] = groups[at[hit]]


def attribute(
    ids: NDArray[np.uint64],
    pubkeys: NDArray[np.uint8],
    credentials: NDArray[np.uint8],
    sources: LabelSources,
) -> Attribution:
    """The entity (and operator, given an operators file) of each validator: row i is validator
    `ids[i]`, with public key `pubkeys[i]` (48 bytes) and withdrawal credentials
    `credentials[i]` (32 bytes)."""
    names = _Names()
    detected = np.zeros(0, dtype=np.int64)
    entity = np.full(len(ids), UNATTRIBUTED, dtype=np.int64)
    executable = np.flatnonzero(np.isin(credentials[:, 0], EXECUTION_CREDENTIALS))
    if executable.size:
        addresses = credentials[executable, _ADDRESS_AT:]
        first, inverse, sizes = _group(addresses)
        distinct = addresses[first]
        by_address = np.full(len(first), UNATTRIBUTED, dtype=np.int64)
        shared = np.flatnonzero(sizes > 1)
        detected = by_address[shared] = names.ids(hex_keys(distinct[shared]))
        named, codes = sources.by_address.find(distinct)
        by_address[named] = names.coded(sources.by_address, codes)
        entity[executable] = by_address[inverse]
    named, codes = sources.by_pubkey.find(pubkeys)
    entity[named] = names.coded(sources.by_pubkey, codes)

    operator = None
    if sources.operators is not None:
        operator = entity.copy()
        named, codes = sources.operators.find(pubkeys)
        operator[named] = names.coded(sources.operators, codes)
        every = names.names
        _merge_named_ids(operator, ids, every, np.flatnonzero(_used(operator, len(every))).tolist())

    # Dense entity ids: an address's own name is unused where a map names it.
    every = names.names
    used = _used(entity, len(every))
    dense = np.cumsum(used, dtype=np.int64) - 1
    attributed = entity != UNATTRIBUTED
    entity[attributed] = dense[entity[attributed]]
    entity_names = [every[i] for i in np.flatnonzero(used).tolist()]
    _merge_named_ids(entity, ids, entity_names, range(len(entity_names)))
    unnamed = np.zeros(len(every), dtype=np.bool_)
    unnamed[detected] = True
    unnamed[names.mapped] = False  # a map names it too
    return Attribution(entity, tuple(entity_names), operator, detected=unnamed[used])


class AttributionCache:
    """`attribute` with the labels of one chain, its last answer reused while the validators
    (ids, public keys and withdrawal credentials, row by row) are the same: then so is it.
    Its arrays are read-only, being shared by the polls that reuse it."""

    def __init__(self, sources: LabelSources) -> None:
        self._sources = sources
        self._last: tuple[bytes, Attribution] | None = None

    def attribute(
        self, ids: NDArray[np.uint64], pubkeys: NDArray[np.uint8], credentials: NDArray[np.uint8]
    ) -> Attribution:
        # hashlib lets go of the GIL while it hashes (SHA-256, which CPUs compute in hardware:
        # 60 ms for a million rows, 2.5 times faster than BLAKE2b here).
        digest = hashlib.sha256()
        for column in (ids, pubkeys, credentials):
            digest.update(str(column.shape).encode())
            digest.update(np.ascontiguousarray(column).data)
        key = digest.digest()
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        attribution = attribute(ids, pubkeys, credentials, self._sources)
        shared = (attribution.entity_index, attribution.operator_index, attribution.detected)
        for array in shared:
            if array is not None:
                array.flags.writeable = False
        self._last = (key, attribution)
        return attribution
