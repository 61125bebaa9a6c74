"""Make self-chosen validator names safe for labels, logs, topics and terminal output."""

from __future__ import annotations

import unicodedata

MAX_LABEL_LENGTH = 64


def safe_text(value: str, max_length: int = MAX_LABEL_LENGTH) -> str:
    """One printable line: control, format (bidi overrides) and separator characters dropped,
    whitespace runs collapsed, capped at `max_length` characters with an ellipsis."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
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
