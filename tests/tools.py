"""Test helpers for external tools (promtool, openssl), free loopback ports, and reading the
CLI's terminal tables."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest


def require_binary(name: str) -> str:
    """Path of an external tool; a missing tool fails under CI=true and skips elsewhere."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed (scripts/test installs it from Debian packages)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def promtool_findings(exposition: str) -> set[str]:
    """What `promtool check metrics` says about an exposition: its non-empty output lines, and
    its exit status unless 0; empty when it finds nothing."""
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=exposition, capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = (result.stdout + result.stderr).splitlines()
    findings = {line.strip() for line in lines if line.strip()}
    if result.returncode != 0:
        findings.add(f"promtool exited {result.returncode}")
    return findings


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def refused_url() -> str:
    """An http:// URL on a loopback port where nothing listens: a connect is refused."""
    return f"http://127.0.0.1:{free_port()}"


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port where a connect hangs: a listener with backlog 0 and one connection
    queued, never accepted, so its accept queue is full and Linux drops further SYNs."""
    with socket.socket() as listener, socket.socket() as queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued.connect(listener.getsockname())
        yield listener.getsockname()[1]


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key, and that key: PEM files in `directory`."""
    openssl = require_binary("openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# --- terminal tables, measured independently of the code under test ----------------------------


def width(text: str) -> int:
    """Terminal columns, measured independently of the code under test."""
    total = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


def split_columns(table: str, columns: Sequence[str]) -> list[list[str]]:
    """Every line of `table` cut at the terminal columns where the header's names start,
    asserting that each cut falls on a character boundary after a two-space separator."""
    header, *lines = table.split("\n")
    offsets: list[int] = []
    for name in columns:
        start = header.index(name, offsets[-1] + 1 if offsets else 0)
        offsets.append(start)  # the header is ASCII: characters are columns
    result = []
    for line in [header, *lines]:
        starts: dict[int, str] = {}
        col = 0
        for char in line:
            starts.setdefault(col, "")
            starts[col] += char
            col += width(char)
        cells = []
        for i, offset in enumerate(offsets):
            end = offsets[i + 1] if i + 1 < len(offsets) else col
            if i > 0:
                assert offset in starts, f"column {columns[i]} cut inside a character: {line!r}"
                assert starts[offset - 2] == " ", line
                assert starts[offset - 1] == " ", line
            cells.append("".join(starts[c] for c in sorted(starts) if offset <= c < end).strip())
        result.append(cells)
    return result
