"""The validators endpoint's JSON, rendered in bulk: one numpy byte matrix per block of rows.

Each validator becomes a fixed-width row of bytes, built column by column with vectorised
casts and table look-ups (decimal strings from `astype("S20")`, hex from a 256-entry table),
so a million rows take about a second instead of a million f-strings. Rows of one block share
a width: a shorter number is followed by spaces after its closing quote, which JSON allows.
The status column is written per request, since it depends on the state's epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from quorumwatch.simulator.ethereum_set import STATUSES, Registry

BLOCK_ROWS = 65_536
SPACE, QUOTE, COMMA = 0x20, 0x22, 0x2C
# Byte → its two hex digits, as one uint16 whose memory is those two ASCII bytes.
_HEX = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), dtype=np.uint16)
STATUS_WIDTH = max(len(status) for status in STATUSES) + 1  # the closing quote
_STATUS_CELLS = np.full((len(STATUSES), STATUS_WIDTH), SPACE, dtype=np.uint8)
for _code, _status in enumerate(STATUSES):
    _STATUS_CELLS[_code, : len(_status) + 1] = np.frombuffer(_status.encode() + b'"', np.uint8)
_BOOL_CELLS = np.frombuffer(b"false" + b"true ", dtype=np.uint8).reshape(2, 5)
_EPOCH_FIELDS = (
    "activation_eligibility_epoch",
    "activation_epoch",
    "exit_epoch",
    "withdrawable_epoch",
)


def envelope(*, execution_optimistic: bool, finalized: bool) -> tuple[bytes, bytes]:
    """What goes before and after the rows of a `GetStateValidatorsResponse`."""
    flags = f'{{"execution_optimistic":{_json_bool(execution_optimistic)},'
    flags += f'"finalized":{_json_bool(finalized)},"data":['
    return flags.encode(), b"]}"


def _json_bool(value: bool) -> str:
    return "true" if value else "false"


def number_cells(values: NDArray[np.uint64]) -> NDArray[np.uint8]:
    """Decimal strings, each followed by its closing quote and padded with spaces to the
    longest one in `values`."""
    count = len(values)
    width = len(str(int(values.max()))) if count else 1
    text = values.astype(f"S{width}")  # NUL-padded on the right
    cells = np.empty((count, width + 1), dtype=np.uint8)
    cells[:, :width] = text.view(np.uint8).reshape(count, width)
    cells[:, width] = SPACE
    cells[cells == 0] = SPACE
    cells[np.arange(count), np.char.str_len(text)] = QUOTE
    return cells


def hex_cells(raw: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Lower-case hex of each row of bytes (twice as wide)."""
    return _HEX[raw].view(np.uint8).reshape(len(raw), 2 * raw.shape[1])


def _literal(text: bytes, count: int) -> NDArray[np.uint8]:
    return np.broadcast_to(np.frombuffer(text, dtype=np.uint8), (count, len(text)))


@dataclass(frozen=True, slots=True)
class Rows:
    """Rendered rows of the validators at `indices`; each row starts with a comma and its
    status cell (STATUS_WIDTH bytes at `status_column`) is filled in by `with_statuses`."""

    indices: NDArray[np.int64]
    matrix: NDArray[np.uint8]
    status_column: int

    @property
    def width(self) -> int:
        return int(self.matrix.shape[1])

    def with_statuses(self, codes: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """The matrix with these rows' status codes written in (in place: render a block's
        statuses right before serialising it)."""
        column = self.status_column
        self.matrix[:, column : column + STATUS_WIDTH] = _STATUS_CELLS[codes]
        return self.matrix


def render_rows(registry: Registry, indices: NDArray[np.int64]) -> Rows:
    """The JSON rows of the validators at `indices` (in that order)."""
    count = len(indices)
    v = registry.validators[indices]
    lead = [
        _literal(b',{"index":"', count),
        number_cells(indices.astype(np.uint64)),
        _literal(b',"balance":"', count),
        number_cells(registry.balances[indices]),
        _literal(b',"status":"', count),
    ]
    status_column = sum(piece.shape[1] for piece in lead)
    pieces = [
        *lead,
        np.zeros((count, STATUS_WIDTH), dtype=np.uint8),
        _literal(b',"validator":{"pubkey":"0x', count),
        hex_cells(v["pubkey"]),
        _literal(b'","withdrawal_credentials":"0x', count),
        hex_cells(v["withdrawal_credentials"]),
        _literal(b'","effective_balance":"', count),
        number_cells(v["effective_balance"]),
        _literal(b',"slashed":', count),
        _BOOL_CELLS[(v["slashed"] != 0).astype(np.intp)],
    ]
    for name in _EPOCH_FIELDS:
        pieces += [_literal(f',"{name}":"'.encode(), count), number_cells(v[name])]
    pieces.append(_literal(b"}}", count))
    return Rows(indices, np.concatenate(pieces, axis=1), status_column)


class RenderedRegistry:
    """The rows of one registry, rendered a block of BLOCK_ROWS at a time on first use and
    kept until the registry changes (the simulator then makes a new one)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._blocks: dict[int, Rows] = {}

    def block(self, number: int) -> Rows:
        rows = self._blocks.get(number)
        if rows is None:
            start = number * BLOCK_ROWS
            stop = min(start + BLOCK_ROWS, len(self.registry))
            rows = render_rows(self.registry, np.arange(start, stop, dtype=np.int64))
            self._blocks[number] = rows
        return rows

    def blocks_for(self, selected: NDArray[np.bool_]) -> list[int]:
        """The numbers of the blocks holding at least one selected validator."""
        if len(selected) == 0:
            return []
        occupied = np.logical_or.reduceat(selected, np.arange(0, len(selected), BLOCK_ROWS))
        return np.flatnonzero(occupied).tolist()

    def size(self, selected: NDArray[np.bool_]) -> int:
        """Bytes of the selected rows (rendering their blocks if needed)."""
        total = 0
        for number in self.blocks_for(selected):
            start = number * BLOCK_ROWS
            chosen = int(selected[start : start + BLOCK_ROWS].sum())
            total += chosen * self.block(number).width
        return total

    def pieces(self, selected: NDArray[np.bool_], codes: NDArray[np.uint8]) -> Iterator[bytes]:
        """The selected rows in index order, a block at a time, with `codes` as statuses;
        the first row's leading comma is a space."""
        first = True
        for number in self.blocks_for(selected):
            start = number * BLOCK_ROWS
            rows = self.block(number)
            stop = start + len(rows.indices)
            matrix = rows.with_statuses(codes[start:stop])
            piece = matrix[selected[start:stop]].tobytes()
            if first:
                piece, first = b" " + piece[1:], False
            yield piece


def render_selection(
    registry: Registry, indices: NDArray[np.int64], codes: NDArray[np.uint8]
) -> bytes:
    """The rows of a few validators, rendered directly (no cache)."""
    if len(indices) == 0:
        return b""
    rows = render_rows(registry, indices)
    body = rows.with_statuses(codes[indices]).tobytes()
    return b" " + body[1:]
