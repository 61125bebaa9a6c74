"""The text (0.0.4) and OpenMetrics expositions of a registry, byte for byte as
prometheus_client writes them, at a fraction of its cost.

prometheus_client escapes each OpenMetrics sample name a character at a time and checks every
label name against a regular expression for every sample: a /metrics of a few thousand series
took it 70 ms (text) and 130 ms (OpenMetrics) of CPU, all of it holding the GIL that the event
loop needs to answer the scrapers waiting for that rendering. The families whose names and
samples are plain (legacy names, no timestamp, exemplar or native histogram: every family the
daemon exports) are written here directly, the same under the escapings that leave such names
as they are (underscores, the default, and allow-utf-8, Prometheus 3's); any other family is
left to prometheus_client, and so is any other escaping: the output never differs.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client.exposition import choose_encoder
from prometheus_client.exposition import generate_latest as library_text
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.samples import Sample

Encoder = Callable[[Collector], bytes]

# A name that every escaping scheme leaves as it is: a legacy metric name without a colon,
# and so also a legacy label name (unless it begins with "__", reserved).
_PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Samples the text format moves into a gauge of their own after their family.
_TEXT_SPLIT_SUFFIXES = ("_created", "_gsum", "_gcount")
# The family's name and type in the text format, where they differ from OpenMetrics'.
_TEXT_SUFFIX = {"counter": "_total", "info": "_info"}
_TEXT_TYPE = {
    "info": "gauge",
    "stateset": "gauge",
    "gaugehistogram": "histogram",
    "unknown": "untyped",
}
_EOF = "# EOF\n"
# The escapings that leave a plain name as it is.
_PLAIN_ESCAPINGS = (openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8)
# prometheus_client leaves these two untyped.
_go_float: Callable[[float], str] = floatToGoString
_library_openmetrics: Callable[..., bytes] = openmetrics.generate_latest


@functools.lru_cache(maxsize=64)
def choose_fast_encoder(accept_header: str) -> tuple[Encoder, str]:
    """prometheus_client's choice of format for `accept_header`, and its content type, with its
    encoder replaced by this module's where the escaping leaves plain names as they are.
    Remembered per header: a Prometheus server sends the same one at every scrape, and parsing
    it was 2% of the event loop's time under 20 scrapers back to back (bench_load)."""
    encoder, content_type = choose_encoder(accept_header)
    options = encoder.keywords if isinstance(encoder, functools.partial) else {}
    function = encoder.func if isinstance(encoder, functools.partial) else encoder
    escaping = options.get("escaping", openmetrics.UNDERSCORES)
    if escaping not in _PLAIN_ESCAPINGS:
        return encoder, content_type
    if function is library_text:
        return functools.partial(encode_text, escaping=escaping), content_type
    if function is openmetrics.generate_latest and options.get("version", "1.0.0")[:2] == "1.":
        return functools.partial(encode_openmetrics, escaping=escaping), content_type
    return encoder, content_type


def encode_text(registry: Collector, escaping: str = openmetrics.UNDERSCORES) -> bytes:
    """The text format 0.0.4 of `registry`, as prometheus_client's `generate_latest`."""
    lines: list[str] = []
    for metric in registry.collect():
        if _plain(metric, _TEXT_SPLIT_SUFFIXES):
            _text_family(metric, lines)
        else:
            lines.append(library_text(_Only(metric), escaping).decode())
    return "".join(lines).encode()


def encode_openmetrics(registry: Collector, escaping: str = openmetrics.UNDERSCORES) -> bytes:
    """OpenMetrics 1.0 of `registry`, as prometheus_client's OpenMetrics `generate_latest`."""
    lines: list[str] = []
    for metric in registry.collect():
        if _plain(metric, ()):
            _openmetrics_family(metric, lines)
        else:
            alone = _library_openmetrics(_Only(metric), escaping).decode()
            lines.append(alone.removesuffix(_EOF))
    lines.append(_EOF)
    return "".join(lines).encode()


class _Only:
    """A collector of one family, for prometheus_client's encoders."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Metric]:
        return (self._metric,)


def _plain(metric: Metric, split_suffixes: tuple[str, ...]) -> bool:
    """Whether every name of `metric` is plain, and its samples hold a value and nothing else
    (and none is one the format would move out of the family)."""
    if not _PLAIN_NAME.match(metric.name):
        return False
    moved = tuple(metric.name + suffix for suffix in split_suffixes)
    for sample in metric.samples:
        if (
            sample.value is None
            or sample.timestamp is not None
            or sample.exemplar is not None
            or sample.native_histogram is not None
            or (sample.name != metric.name and not _plain_sample_name(sample.name, moved))
            or not _plain_labels(tuple(sample.labels))
        ):
            return False
    return True


def _plain_sample_name(name: str, moved: tuple[str, ...]) -> bool:
    return name not in moved and _PLAIN_NAME.match(name) is not None


# Keyed by a sample's label names in their order: a family's samples share one.
@functools.lru_cache(maxsize=1024)
def _plain_labels(names: tuple[str, ...]) -> bool:
    return all(_PLAIN_NAME.match(name) and not name.startswith("__") for name in names)


@functools.lru_cache(maxsize=1024)
def _sorted_names(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(names))


class SampleLines:
    """Each plain sample's line, remembered by its name and labels with the value it was
    written for. From one rendering to the next nearly every series keeps its labels, and
    most their values, and writing the lines was half of a rendering (bench_load): a line is
    written again only when its value changed. At most `limit` series are remembered; past
    that (labels that keep changing) it starts over rather than grow. Safe to share between
    threads: a lost update only costs a line written again."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lines: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, str]] = {}

    def __len__(self) -> int:
        return len(self._lines)

    def line(self, sample: Sample) -> str:
        if not sample.labels:
            return _sample_line(sample)
        key = (sample.name, tuple(sample.labels.items()))
        value = sample.value
        known = self._lines.get(key)
        if known is not None and _same_value(known[0], value):
            return known[1]
        line = _sample_line(sample)
        if len(self._lines) >= self._limit:
            self._lines.clear()
        self._lines[key] = (value, line)
        return line


def _same_value(known: float, value: float) -> bool:
    """Whether `value` is written as `known` is: equal (so never NaN), and of the same sign,
    which tells 0.0 from -0.0."""
    return known == value and math.copysign(1.0, known) == math.copysign(1.0, value)


# Series of all chains, thousands each; a line and its key take about 600 bytes.
_LINES = SampleLines(limit=65_536)


def _text_family(metric: Metric, lines: list[str]) -> None:
    name = metric.name + _TEXT_SUFFIX.get(metric.type, "")
    help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    lines.append(f"# HELP {name} {help_text}\n")
    lines.append(f"# TYPE {name} {_TEXT_TYPE.get(metric.type, metric.type)}\n")
    lines.extend(map(_LINES.line, metric.samples))


def _openmetrics_family(metric: Metric, lines: list[str]) -> None:
    name = metric.name
    help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    lines.append(f"# HELP {name} {help_text}\n")
    lines.append(f"# TYPE {name} {metric.type}\n")
    if metric.unit:
        lines.append(f"# UNIT {name} {metric.unit}\n")
    lines.extend(map(_LINES.line, metric.samples))


def _sample_line(sample: Sample) -> str:
    """One plain sample's line, the same in both formats."""
    value = _go_float(sample.value)
    if not sample.labels:
        return f"{sample.name} {value}\n"
    given = sample.labels
    labels = ",".join(f'{name}="{_escaped(given[name])}"' for name in _sorted_names(tuple(given)))
    return f"{sample.name}{{{labels}}} {value}\n"


def _escaped(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value
