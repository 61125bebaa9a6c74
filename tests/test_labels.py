"""Tests for `quorumwatch.labels.safe_text`: hostile validator names become one printable line."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quorumwatch.labels import MAX_LABEL_LENGTH, safe_text


def test_control_characters_are_dropped() -> None:
    """Non-whitespace C0/C1 control characters (NUL, ESC, DEL, CSI) are dropped."""
    assert safe_text("a\x00b\x1b[31mc\x7fd\x9be") == "ab[31mcde"


def test_newlines_and_tabs_become_single_spaces() -> None:
    """Newlines, carriage returns, tabs and line separators collapse to single inner spaces."""
    assert safe_text("  one\r\ntwo\t\tthree\u2028four\u2029five\x0b\x0c ") == (
        "one two three four five"
    )


def test_forged_log_line_is_flattened() -> None:
    """A name carrying a newline plus a fake log record stays on the one line it started on."""
    assert safe_text('node\n{"level": "error"}') == 'node {"level": "error"}'


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2067", "\u2068", "\u2069"])
def test_bidi_controls_are_dropped(char: str) -> None:
    """Bidi embedding, override and isolate controls (U+202A–202E, U+2066–2069) vanish."""
    assert safe_text(f"good{char}doog") == "gooddoog"


@pytest.mark.parametrize("char", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"])
def test_zero_width_characters_are_dropped(char: str) -> None:
    """Zero-width space, (non-)joiners, word joiner and BOM vanish."""
    assert safe_text(f"val{char}idator") == "validator"


def test_long_text_is_capped_with_ellipsis() -> None:
    """A 10 kB name becomes exactly 64 characters: 63 kept plus "…"."""
    text = safe_text("x" * 10_000)
    assert len(text) == MAX_LABEL_LENGTH == 64
    assert text == "x" * 63 + "…"


def test_text_at_the_limit_is_untouched() -> None:
    """A name of exactly max_length characters is returned unchanged, without an ellipsis."""
    assert safe_text("y" * 64) == "y" * 64
    assert safe_text("abcdef", max_length=6) == "abcdef"
    assert safe_text("abcdefg", max_length=6) == "abcde…"


def test_cut_does_not_leave_a_space_before_the_ellipsis() -> None:
    """A cut that lands after a space drops that space: "abcd …" would waste a character."""
    assert safe_text("abcd efgh", max_length=6) == "abcd…"


def test_ordinary_unicode_is_kept() -> None:
    """Letters, dashes, accents and emoji pass through unchanged."""
    assert safe_text("Validator – Zürich 🚀") == "Validator – Zürich 🚀"
    assert safe_text("北京节点 Ωμέγα") == "北京节点 Ωμέγα"


def test_non_positive_max_length_is_rejected() -> None:
    """max_length below 1 raises ValueError rather than returning an over-long string."""
    with pytest.raises(ValueError, match="max_length"):
        safe_text("abc", max_length=0)


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_output_is_always_one_printable_bounded_line(value: str, max_length: int) -> None:
    """For any input: no category-C character, no line break, at most max_length characters."""
    text = safe_text(value, max_length=max_length)
    assert len(text) <= max_length
    assert not any(unicodedata.category(c).startswith("C") for c in text)
    assert len(text.splitlines()) <= 1
    assert text == text.strip()
    assert "  " not in text


@given(st.text())
def test_sanitising_is_idempotent_below_the_cap(value: str) -> None:
    """Sanitising an already sanitised (uncapped) text changes nothing."""
    once = safe_text(value, max_length=10_000)
    assert safe_text(once, max_length=10_000) == once


def _character_by_character(value: str, max_length: int) -> str:
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


@given(
    st.text(st.characters(max_codepoint=127)) | st.text(), st.integers(min_value=1, max_value=80)
)
def test_the_quick_path_for_plain_ascii_sanitises_as_the_rule_does(
    value: str, max_length: int
) -> None:
    """Any text, plain ASCII or not, sanitises exactly as the character-by-character rule
    says, asked once or again."""
    expected = _character_by_character(value, max_length)
    assert safe_text(value, max_length) == expected
    assert safe_text(value, max_length) == expected
