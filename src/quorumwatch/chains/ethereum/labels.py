"""Off-chain Ethereum labels: `key,entity` CSV files naming who controls or runs validators.

A key is a withdrawal address (`0x` and 20 bytes in hex: the execution address in 0x01 and 0x02
withdrawal credentials) or a validator's BLS public key (`0x` and 48 bytes). Keys are matched
case-insensitively. A file is read whole and checked strictly: a bad line is an error naming
the file and the line, never a silently skipped row.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

PUBKEY_HEX = 96
MAX_ENTITY_LENGTH = 128  # as a configured entity's name
_KEY = re.compile(r"0x(?:[0-9a-f]{40}|[0-9a-f]{96})")


@dataclass(frozen=True, slots=True)
class Labels:
    """Entity names by lower-case 0x key: withdrawal addresses and public keys apart."""

    by_address: Mapping[str, str]
    by_pubkey: Mapping[str, str]


def is_key(text: str) -> bool:
    """Whether `text` is a withdrawal address or a public key, in 0x hex (any case)."""
    return _KEY.fullmatch(text.lower()) is not None


def read_labels(path: Path, *, pubkeys_only: bool = False) -> Labels:
    """The labels in `path`; ValueError naming the file and line for anything malformed.

    `pubkeys_only`: an operators file, whose keys are all public keys. A file unchanged since
    it was last read (same size and modification time) is not read again: the configuration
    check and the source both read it, and a mainnet operators file holds a million rows.
    """
    try:
        status = path.stat()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    return _read(path, status.st_mtime_ns, status.st_size, pubkeys_only=pubkeys_only)


@functools.lru_cache(maxsize=4)
def _read(path: Path, mtime_ns: int, size: int, *, pubkeys_only: bool) -> Labels:
    """`read_labels`, for one version of the file (`mtime_ns` and `size` key the cache)."""
    try:
        with path.open(encoding="utf-8", newline="") as source:
            rows = list(csv.reader(source))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    if not rows or [cell.strip() for cell in rows[0]] != ["key", "entity"]:
        raise ValueError(f"{path}: line 1: the header must be `key,entity`")
    by_address: dict[str, str] = {}
    by_pubkey: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise ValueError(f"{path}: line {number}: expected 2 fields, got {len(row)}")
        key, entity = row[0].strip().lower(), row[1].strip()
        if not is_key(key):
            raise ValueError(
                f"{path}: line {number}: the key is neither a 0x withdrawal address"
                " (20 bytes) nor a 0x public key (48 bytes)"
            )
        if pubkeys_only and len(key) != 2 + PUBKEY_HEX:
            raise ValueError(f"{path}: line {number}: an operators file keys public keys only")
        if not entity or len(entity) > MAX_ENTITY_LENGTH:
            raise ValueError(
                f"{path}: line {number}: the entity must be 1 to {MAX_ENTITY_LENGTH} characters"
            )
        table = by_pubkey if len(key) == 2 + PUBKEY_HEX else by_address
        if table.get(key, entity) != entity:
            raise ValueError(f"{path}: line {number}: {key} is already labelled {table[key]!r}")
        table[key] = entity
    return Labels(MappingProxyType(by_address), MappingProxyType(by_pubkey))
