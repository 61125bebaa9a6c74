"""The process's memory after large polls, with a fake C library."""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Iterator

import pytest
import structlog

from quorumwatch import memory
from quorumwatch.memory import release_free_memory, return_large_blocks_to_the_system


class _Libc:
    def __init__(self, answer: int) -> None:
        self.answer = answer
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append(("mallopt", (option, value)))
        return self.answer

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", (pad,)))
        return self.answer


@pytest.fixture(autouse=True)
def _libc_found_anew() -> Iterator[None]:
    memory._glibc.cache_clear()
    yield
    memory._glibc.cache_clear()  # the real one again, for the tests after


def _with_libc(monkeypatch: pytest.MonkeyPatch, libc: str, fake: _Libc) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: (libc, "2.36"))
    monkeypatch.setattr(ctypes, "CDLL", lambda _: fake)


@pytest.mark.parametrize(
    ("libc", "answer", "calls", "warned"),
    [
        ("glibc", 1, [("mallopt", (-3, 1024 * 1024))], False),
        ("glibc", 0, [("mallopt", (-3, 1024 * 1024))], True),
        ("", 1, [], False),
    ],
)
def test_glibc_maps_every_block_of_a_mebibyte_or_more_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
    libc: str,
    answer: int,
    calls: list[tuple[str, tuple[int, ...]]],
    warned: bool,
) -> None:
    """On glibc, M_MMAP_THRESHOLD is set to 1 MiB (a refusal is logged as a warning); another C
    library is left alone."""
    fake = _Libc(answer)
    _with_libc(monkeypatch, libc, fake)
    with structlog.testing.capture_logs() as logs:
        return_large_blocks_to_the_system()
    assert fake.calls == calls
    assert any(entry["log_level"] == "warning" for entry in logs) is warned


@pytest.mark.parametrize(
    ("libc", "calls"), [("glibc", [("malloc_trim", (0,))] * 2), ("", [])], ids=["glibc", "other"]
)
def test_glibc_hands_back_its_free_pages_each_time(
    monkeypatch: pytest.MonkeyPatch, libc: str, calls: list[tuple[str, tuple[int, ...]]]
) -> None:
    """On glibc, each release is a malloc_trim(0), keeping no pad; another C library is left
    alone."""
    fake = _Libc(1)
    _with_libc(monkeypatch, libc, fake)
    release_free_memory()
    release_free_memory()
    assert fake.calls == calls


def test_the_c_library_is_looked_for_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """platform.libc_ver() (it reads the Python executable) runs once, not at every poll."""
    looked: list[None] = []

    def libc_ver() -> tuple[str, str]:
        looked.append(None)
        return "glibc", "2.36"

    monkeypatch.setattr(platform, "libc_ver", libc_ver)
    monkeypatch.setattr(ctypes, "CDLL", lambda _: _Libc(1))
    for _ in range(3):
        release_free_memory()
    assert len(looked) == 1
