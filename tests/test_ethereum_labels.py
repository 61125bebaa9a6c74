"""Ethereum labels files: the strict `key,entity` CSV reader."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from quorumwatch.chains.ethereum.labels import MAX_ENTITY_LENGTH, read_labels

if TYPE_CHECKING:
    from pathlib import Path

ADDRESS = "0x" + "ab" * 20
PUBKEY = "0x" + "cd" * 48


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _error(path: Path, *, pubkeys_only: bool = False) -> str:
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: ") as caught:
        read_labels(path, pubkeys_only=pubkeys_only)
    return str(caught.value)


def test_addresses_and_pubkeys_go_to_their_own_tables_lower_cased(tmp_path: Path) -> None:
    """An address row and a pubkey row (upper-case hex, padded cells) land in by_address and
    by_pubkey, keys lower-cased and entities stripped."""
    path = _write(
        tmp_path,
        "key,entity",
        f" 0x{ADDRESS[2:].upper()} , Acme ",
        f"0x{PUBKEY[2:].upper()},Node Co",
    )
    labels = read_labels(path)
    assert dict(labels.by_address) == {ADDRESS: "Acme"}
    assert dict(labels.by_pubkey) == {PUBKEY: "Node Co"}


def test_blank_lines_are_ignored(tmp_path: Path) -> None:
    """Empty and whitespace-only lines between rows are skipped, not errors."""
    path = _write(tmp_path, "key,entity", "", f"{ADDRESS},Acme", "  ", ",", f"{PUBKEY},Node Co")
    labels = read_labels(path)
    assert dict(labels.by_address) == {ADDRESS: "Acme"}
    assert dict(labels.by_pubkey) == {PUBKEY: "Node Co"}


def test_same_row_twice_is_fine(tmp_path: Path) -> None:
    """A row repeated (the key in another case) is one label, not a conflict."""
    path = _write(tmp_path, "key,entity", f"{ADDRESS},Acme", f"0x{ADDRESS[2:].upper()},Acme")
    assert dict(read_labels(path).by_address) == {ADDRESS: "Acme"}


@pytest.mark.parametrize(
    ("lines", "line", "says"),
    [
        ((), 1, "header must be `key,entity`"),
        (("address,entity", f"{ADDRESS},Acme"), 1, "header must be `key,entity`"),
        (("", "key,entity"), 1, "header must be `key,entity`"),
        (("key,entity", f"{ADDRESS},Acme", "0x1234,Short"), 3, "neither a 0x withdrawal address"),
        (("key,entity", f"{ADDRESS[2:]},NoPrefix"), 2, "neither a 0x withdrawal address"),
        (("key,entity", "0x" + "zz" * 20 + ",NotHex"), 2, "neither a 0x withdrawal address"),
        (("key,entity", f"{ADDRESS},Acme,extra"), 2, "expected 2 fields, got 3"),
        (("key,entity", f"{ADDRESS}"), 2, "expected 2 fields, got 1"),
        (("key,entity", f"{ADDRESS}, "), 2, f"1 to {MAX_ENTITY_LENGTH} characters"),
        (
            ("key,entity", f"{ADDRESS},{'x' * (MAX_ENTITY_LENGTH + 1)}"),
            2,
            f"1 to {MAX_ENTITY_LENGTH} characters",
        ),
        (
            ("key,entity", f"{ADDRESS},Acme", "", f"0x{ADDRESS[2:].upper()},Other"),
            4,
            f"{ADDRESS} is already labelled 'Acme'",
        ),
    ],
    ids=[
        "empty-file",
        "wrong-header",
        "blank-header",
        "short-key",
        "no-0x",
        "not-hex",
        "three-fields",
        "one-field",
        "blank-entity",
        "long-entity",
        "conflicting-duplicate",
    ],
)
def test_malformed_file_names_file_and_line(
    tmp_path: Path, lines: tuple[str, ...], line: int, says: str
) -> None:
    """Each malformed file is a ValueError `<path>: line <n>: …` saying what is wrong."""
    path = _write(tmp_path, *lines)
    message = _error(path)
    assert message.startswith(f"{path}: line {line}: ")
    assert says in message


def test_entity_of_the_longest_allowed_length_is_kept(tmp_path: Path) -> None:
    """An entity of exactly MAX_ENTITY_LENGTH characters is accepted as written."""
    entity = "e" * MAX_ENTITY_LENGTH
    path = _write(tmp_path, "key,entity", f"{ADDRESS},{entity}")
    assert read_labels(path).by_address[ADDRESS] == entity


def test_operators_file_takes_pubkeys_only(tmp_path: Path) -> None:
    """With pubkeys_only, a pubkey row is read and an address row is an error at its line."""
    good = _write(tmp_path, "key,entity", f"{PUBKEY},Node Co")
    assert dict(read_labels(good, pubkeys_only=True).by_pubkey) == {PUBKEY: "Node Co"}
    bad = _write(tmp_path, "key,entity", f"{PUBKEY},Node Co", f"{ADDRESS},Acme")
    message = _error(bad, pubkeys_only=True)
    assert message.startswith(f"{bad}: line 3: ")
    assert "public keys only" in message
    assert dict(read_labels(bad).by_address) == {ADDRESS: "Acme"}  # fine as a labels file


def test_missing_or_undecodable_file_names_the_file(tmp_path: Path) -> None:
    """A missing file and a non-UTF-8 file are each a ValueError `<path>: cannot read: …`."""
    missing = tmp_path / "absent.csv"
    assert _error(missing).startswith(f"{missing}: cannot read: ")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"key,entity\n" + ADDRESS.encode() + b",Caf\xe9\n")
    assert _error(latin).startswith(f"{latin}: cannot read: ")


def test_an_unchanged_file_is_read_once_and_a_changed_one_again(tmp_path: Path) -> None:
    """Reading an unchanged file again gives the labels already read (the config check and the
    source share one read); a file rewritten since gives its new rows."""
    path = tmp_path / "labels.csv"
    path.write_text("key,entity\n0x" + "11" * 20 + ",First\n")
    first = read_labels(path)
    assert read_labels(path) is first
    path.write_text("key,entity\n0x" + "11" * 20 + ",Second name\n")
    assert dict(read_labels(path).by_address) == {"0x" + "11" * 20: "Second name"}
