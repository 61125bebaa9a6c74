"""The exposition encoders: byte for byte prometheus_client's, for any family, in both formats."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.samples import Exemplar

from quorumwatch.exporter.exposition import (
    SampleLines,
    choose_fast_encoder,
    encode_openmetrics,
    encode_text,
)
from tests.test_exporter_server import every_kind_registry

TYPES = [
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "summary",
    "info",
    "stateset",
    "unknown",
]
PLAIN_NAMES = st.sampled_from(["up", "quorumwatch_x", "a_b", "_hidden", "x1"])
ODD_NAMES = st.sampled_from(["ns:name", "1bad", "dotted.name", "__reserved", "é"])
NAMES = PLAIN_NAMES | ODD_NAMES
TEXTS = st.text(max_size=12) | st.sampled_from(['a"b', "back\\slash", "new\nline", ""])
VALUES = st.floats(allow_nan=True) | st.integers(-(2**70), 2**70) | st.sampled_from([0.1, 1e22])
UTF8_ACCEPT = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8"
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;"
    "version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


_library_openmetrics: Callable[..., bytes] = openmetrics.generate_latest  # untyped


class _Families:
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> list[Metric]:
        return self._metrics


@st.composite
def families(draw: st.DrawFn) -> Metric:
    """A family of any type, its samples named after it (suffixes included) or not, with any
    labels and values, now and then a timestamp or an exemplar."""
    name = draw(NAMES)
    metric = Metric(
        name, draw(TEXTS), draw(st.sampled_from(TYPES)), draw(st.sampled_from(["", "seconds"]))
    )
    for _ in range(draw(st.integers(0, 4))):
        suffix = draw(st.sampled_from(["", "_total", "_created", "_gsum", "_gcount", "_bucket"]))
        labels = draw(st.dictionaries(PLAIN_NAMES | ODD_NAMES, TEXTS, max_size=3))
        timestamp = draw(st.none() | st.none() | st.floats(0, 2e9))
        exemplar = draw(st.none() | st.none() | st.just(Exemplar({"trace": "1"}, 1.0)))
        metric.add_sample(name + suffix, labels, draw(VALUES), timestamp, exemplar)
    return metric


ESCAPINGS = st.sampled_from([openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8])


@settings(max_examples=120, deadline=None)
@given(st.lists(families(), max_size=4), ESCAPINGS)
def test_the_text_format_is_prometheus_clients(metrics: list[Metric], escaping: str) -> None:
    """encode_text writes what prometheus_client's generate_latest writes under the same
    escaping (underscores or allow-utf-8), or fails alike."""
    registry = _Families(metrics)
    expected = _outcome(functools.partial(generate_latest, escaping=escaping), registry)
    assert _outcome(functools.partial(encode_text, escaping=escaping), registry) == expected


@settings(max_examples=120, deadline=None)
@given(st.lists(families(), max_size=4), ESCAPINGS)
def test_openmetrics_is_prometheus_clients(metrics: list[Metric], escaping: str) -> None:
    """encode_openmetrics writes what prometheus_client's OpenMetrics generate_latest writes
    under the same escaping (underscores or allow-utf-8), or fails alike."""
    registry = _Families(metrics)
    expected = _outcome(functools.partial(_library_openmetrics, escaping=escaping), registry)
    assert _outcome(functools.partial(encode_openmetrics, escaping=escaping), registry) == expected


def _outcome(encode: object, registry: _Families) -> bytes | str:
    try:
        return encode(registry)  # type: ignore[operator, no-any-return]
    except Exception as exc:  # the library's own failures, such as a value of None in text
        return type(exc).__name__


def test_the_daemon_board_renders_as_prometheus_client_renders_it() -> None:
    """The families of the daemon's whole registry, over a board of every kind (process
    metrics included), are rendered identically in both formats."""
    collected = _Families(every_kind_registry().collect())
    assert encode_text(collected) == generate_latest(collected)
    assert encode_openmetrics(collected) == _library_openmetrics(collected)


def one_series(value: float, labels: dict[str, str] | None = None) -> _Families:
    metric = Metric("quorumwatch_x", "A gauge.", "gauge")
    metric.add_sample("quorumwatch_x", labels or {"chain": "a"}, value)
    return _Families([metric])


# Each next to one it equals or nearly: 0.0 and -0.0 are equal but written apart; NaN is
# never equal to itself; 1, 1.0 and True are written alike.
RERENDERED = [1.5, 1.5, 2.0, 0.0, -0.0, -0.0, 0.0, math.nan, math.nan, 1, 1.0, True, 2**53 + 1]


@settings(max_examples=60, deadline=None)
@given(st.lists(VALUES | st.sampled_from(RERENDERED), min_size=2, max_size=8))
def test_a_series_rendered_again_is_written_for_its_new_value(values: list[float]) -> None:
    """One series rendered again and again as its value changes (to an equal one of the other
    sign, to NaN, to an int) is written each time as prometheus_client writes it, in both
    formats: a line remembered from the last rendering serves only the value it was written for."""
    for value in [*RERENDERED, *values]:
        registry = one_series(value)
        assert encode_openmetrics(registry) == _library_openmetrics(registry)
        assert encode_text(registry) == generate_latest(registry)


def test_remembered_lines_are_bounded() -> None:
    """Past its limit of series, SampleLines starts over instead of growing, and still writes
    each line right."""
    lines = SampleLines(limit=3)
    for index in range(10):
        (metric,) = one_series(0.5, {"chain": str(index)}).collect()
        (sample,) = metric.samples
        assert lines.line(sample) == f'quorumwatch_x{{chain="{index}"}} 0.5\n'
        assert len(lines) <= 3


def test_the_fast_encoders_are_chosen_where_plain_names_stay_as_they_are() -> None:
    """Prometheus' Accept header gets the OpenMetrics encoder, none the text one, Prometheus 3's
    allow-utf-8 escaping too, each with the library's content type; the dots escaping, or a
    2.0 OpenMetrics, keeps the library's encoder."""
    for accept, chosen, escaping in (
        (PROMETHEUS_ACCEPT, encode_openmetrics, openmetrics.UNDERSCORES),
        ("", encode_text, openmetrics.UNDERSCORES),
        (UTF8_ACCEPT, encode_openmetrics, openmetrics.ALLOWUTF8),
    ):
        encoder, content_type = choose_fast_encoder(accept)
        assert isinstance(encoder, functools.partial)
        assert (encoder.func, encoder.keywords) == (chosen, {"escaping": escaping})
        assert content_type == choose_encoder(accept)[1]
    for accept in (
        "application/openmetrics-text;version=1.0.0;escaping=dots",
        "application/openmetrics-text;version=2.0.0",
    ):
        encoder, content_type = choose_fast_encoder(accept)
        assert isinstance(encoder, functools.partial)
        assert encoder.func is _library_openmetrics
        assert content_type == choose_encoder(accept)[1]
