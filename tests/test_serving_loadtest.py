"""The load test's pieces that need no server: URLs, Triton statistics deltas, the report. Against a real server it
runs in tests/test_serving_server.py."""

from __future__ import annotations

import pytest

from rtresnet.errors import RtresnetError
from rtresnet.serving import loadtest
from rtresnet.serving.loadtest import LoadTestResult, ServerStats, _stats_delta, parse_url
from rtresnet.serving.report import loadtest_markdown, summary_lines


@pytest.mark.parametrize("url, protocol, expected", [
    ("http://127.0.0.1:8000", None, ("http", "127.0.0.1:8000")),
    ("grpc://localhost:8001", None, ("grpc", "localhost:8001")),
    ("127.0.0.1:8001", "grpc", ("grpc", "127.0.0.1:8001")),
    ("127.0.0.1:8000", None, ("http", "127.0.0.1:8000")),
])
def test_urls(url, protocol, expected):
    assert parse_url(url, protocol) == expected


@pytest.mark.parametrize("url, protocol, match", [
    ("ftp://h:1", None, "scheme 'ftp'"),
    ("http://h", None, "needs a host and a port"),
    ("http://h:99999", None, "no valid port"),
    ("grpc://h:1", "http", "says grpc"),
])
def test_bad_urls_are_one_line_errors(url, protocol, match):
    with pytest.raises(RtresnetError, match=match):
        parse_url(url, protocol)


def test_bad_bounds_are_refused_before_connecting():
    for kwargs, match in (({"concurrency": 0}, "concurrency"), ({"requests": 0}, "requests"),
                          ({"timeout_s": 0}, "timeout")):
        with pytest.raises(RtresnetError, match=match):
            loadtest("http://127.0.0.1:1", "m", **kwargs)


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(RtresnetError, match="cannot reach model 'm'"):
        loadtest("http://127.0.0.1:1", "m", timeout_s=5)


def test_statistics_deltas_count_only_this_run():
    before = {"inferences": 10, "executions": 10, "batches": {1: 10}}
    after = {"inferences": 110, "executions": 40, "batches": {1: 20, 4: 25}}
    stats = _stats_delta(before, after)
    assert stats == ServerStats(100, 30, {1: 10, 4: 25}) and stats.mean_batch == pytest.approx(100 / 30)
    assert _stats_delta(None, after) is None


def test_report_says_what_triton_did():
    r = LoadTestResult(url="http://h:1", protocol="http", model_name="m", concurrency=8, batch_size=1,
                       requests_sent=100, requests_failed=2, duration_s=2.0, throughput_req_s=49.0,
                       throughput_img_s=49.0, latency=None, server=ServerStats(98, 30, {1: 10, 4: 22}))
    assert not r.ok
    text = "\n".join(summary_lines(r))
    assert "100 requests, 2 failed" in text and "mean batch 3.27" in text and "10x1  22x4" in text
    assert "| dyn | http | 8 | 100 | 2 |" in loadtest_markdown([r], ["dyn"])
