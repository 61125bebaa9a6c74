"""Make self-chosen validator names safe for labels, logs, topics and terminal output."""

from __future__ import annotations

import functools
import unicodedata

MAX_LABEL_LENGTH = 64


# Every scrape labels thousands of series with the same few thousand names: each is worked
# out once, not a character at a time per scrape.
@functools.lru_cache(maxsize=16384)
def safe_text(value: str, max_length: int = MAX_LABEL_LENGTH) -> str:
    """One printable line: control, format (bidi overrides) and separator characters dropped,
    whitespace runs collapsed, capped at `max_length` characters with an ellipsis."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if _already_safe(value, max_length):
        return value
    kept = []
    for char in value:
        category = unicodedata.category(char)
        if char.isspace():
            kept.append(" ")
        elif category[0] != "C" and category not in ("Zl", "Zp"):
            kept.append(char)
    text = " ".join("".join(kept).split())
    if len(text) > max_length:
        text = text[: max_length - 1].rstrip() + "…"
    return text


def _already_safe(value: str, max_length: int) -> bool:
    """Printable ASCII, short enough, with no space to collapse: what safe_text keeps as is."""
    return (
        len(value) <= max_length
        and value.isascii()
        and value.isprintable()
        and "  " not in value
        and not value.startswith(" ")
        and not value.endswith(" ")
    )
