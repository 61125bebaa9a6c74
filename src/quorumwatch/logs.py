"""structlog setup: JSON lines when stderr is not a terminal, readable lines when it is; no
URL or network address in any of them."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from typing import TYPE_CHECKING, Any

import structlog
from structlog.processors import ExceptionRenderer
from structlog.tracebacks import ExceptionDictTransformer

from quorumwatch.labels import safe_text

if TYPE_CHECKING:
    from typing import TextIO

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
MAX_VALUE_LENGTH = 1024

# Exception messages (aiohttp's among them) can embed an endpoint URL with credentials.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_URL_PLACEHOLDER = "<url>"
# ... or the host and port they failed to reach: aiohttp's "Cannot connect to host
# 127.0.0.1:9093", asyncio's "Connect call failed ('::1', 1883, 0, 0)". No log line carries
# one: an IPv4, [IPv6], dotted or `localhost` host with a port, aiohttp's `host NAME:PORT`,
# or a socket address tuple. (A bare single-label name elsewhere, `mosquitto:1883`, is not
# told apart from other text.)
_ADDRESS = re.compile(
    r"\[[0-9A-Fa-f:.]+(?:%[\w.-]+)?\]:\d{1,5}\b"
    r"|\b(?:\d{1,3}\.){3}\d{1,3}:\d{1,5}\b"
    r"|\b(?:[A-Za-z0-9-]+\.)+[A-Za-z][A-Za-z0-9-]*:\d{1,5}\b"
    r"|\blocalhost:\d{1,5}\b"
    r"|(?<=host )\S+:\d{1,5}\b"
    r"|\(\s*'[^']*'\s*,\s*\d{1,5}(?:\s*,\s*\d+){0,2}\s*\)"
)
_ADDRESS_PLACEHOLDER = "<address>"

# Tracebacks as data, without frame locals: locals hold endpoint settings and their URLs.
_dict_tracebacks = ExceptionRenderer(ExceptionDictTransformer(show_locals=False))


def redact(text: str) -> str:
    """`text` with every URL and network address replaced by a placeholder."""
    return _ADDRESS.sub(_ADDRESS_PLACEHOLDER, _URL.sub(_URL_PLACEHOLDER, text))


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return safe_text(redact(value), max_length=MAX_VALUE_LENGTH)
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, tuple):  # e.g. an explicit exc_info tuple: keep it a tuple
        return tuple(_clean(item) for item in value)
    return value


def _one_line(
    _: object, __: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Keep every string value on one line: hostile names cannot forge log entries.

    Strings nested in lists and dicts (structured tracebacks among them) are cleaned too,
    and anything shaped like a URL or a host and port is replaced, so no endpoint credentials
    or addresses reach the log.
    """
    for key, value in event_dict.items():
        event_dict[key] = _clean(value)
    return event_dict


def _redacted_traceback(sio: TextIO, exc_info: structlog.typing.ExcInfo) -> None:
    """Console tracebacks stay multi-line for humans, but without URLs, addresses or frame
    locals."""
    text = "".join(traceback.format_exception(*exc_info))
    sio.write("\n" + redact(text))


def configure_logging(level: str = "info", *, json_lines: bool | None = None) -> None:
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    renderer: list[structlog.types.Processor] = (
        [_dict_tracebacks, _one_line, structlog.processors.JSONRenderer()]
        if json_lines
        else [
            _one_line,
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=_redacted_traceback),
        ]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.ERROR)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
