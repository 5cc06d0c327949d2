"""The network measured apart for API models: the load-time round trip and each request's time to headers.

On llama-cpp-python's real server with the bundled SmolLM2, on scripted servers, and through the CLI, from
the worker's events to the records, the summary, the report and the quick-test line.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from slm_eval.backends import openai_api
from slm_eval.backends.base import Generation, GenerationRequest, LoadOptions
from slm_eval.backends.openai_api import OpenAIAPIBackend
from slm_eval.cli_output import answer_summary
from slm_eval.evaluation.summary import HostPerformanceSource, network_metric
from slm_eval.metrics.figures import Figure
from slm_eval.models.registry import ModelCard
from slm_eval.models.sources import ApiEndpoint
from slm_eval.quicktest import QuickTestAnswer
from tests.backends.api_servers import Reply, TickingClock, chunk, fake_server, free_port, send_reply, sse
from tests.conftest import RunCli

PROMPT = "What is a visa?"
SECRET = "sk-slm-eval-leak-check-0a9b8c7d6e5f"
ANSWER = sse(chunk("A"), chunk(" visa"), chunk(" is"), chunk(None, "stop"), chunk(usage={"completion_tokens": 3}))
ENVIRON = {"XAI_API_KEY": SECRET}
MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()


def _card(base_url: str) -> ModelCard:
    return ModelCard(
        name="grok-like",
        display_name="Grok-like",
        kind="api",
        architecture="not published",
        parameters=None,
        context_length=None,
        licence="test",
        backends=("openai_api",),
        source=ApiEndpoint(base_url=base_url, model="m", key_env="XAI_API_KEY"),
    )


class _HeadDropper(BaseHTTPRequestHandler):
    """A server whose ``HEAD`` requests are cut without an answer, so every network probe fails."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.close_connection = True  # nothing written: the client sees the connection close

    def do_GET(self) -> None:
        send_reply(self, Reply(body=MODELS, content_type="application/json"))

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        send_reply(self, Reply(body=ANSWER))


@pytest.fixture
def head_dropping_server() -> Iterator[str]:
    """An OpenAI-compatible scripted server that answers everything but the probes."""
    import threading

    server = ThreadingHTTPServer(("127.0.0.1", 0), _HeadDropper)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- the real server ---------------------------------------------------------------------------------


@pytest.fixture
def _fixed_host_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HostPerformanceSource, "measure", classmethod(lambda cls: cls(20.0, 100.0)))


@pytest.mark.integration
def test_real_server_round_trip_and_time_to_headers(real: OpenAIAPIBackend) -> None:
    rtt = real.network_rtt_s
    assert rtt is not None and 0 < rtt < 1.0  # loopback: well under a second
    generations = real.generate([GenerationRequest(PROMPT, max_new_tokens=12) for _ in range(3)])
    for generation in generations:
        network = generation.network_s
        ttft = generation.time_to_first_token_s
        assert network is not None and ttft is not None
        assert 0 < network < generation.end_to_end_s
        # llama-cpp-python sends its SSE headers before the model runs: the network part comes before the first token.
        assert network <= ttft
    print(  # shown with -s: the figures behind the report
        f"\nrtt {rtt * 1000:.2f} ms; network {statistics.median(g.network_s or 0 for g in generations) * 1000:.2f} ms; "
        f"ttft {statistics.median(g.time_to_first_token_s or 0 for g in generations) * 1000:.1f} ms; "
        f"e2e {statistics.median(g.end_to_end_s for g in generations) * 1000:.1f} ms"
    )


@pytest.mark.integration
@pytest.mark.usefixtures("_fixed_host_capacity")
def test_cli_evaluate_records_the_network_apart(
    run_cli: RunCli, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # sent to a server that ignores it; must be written nowhere
    result = run_cli(
        "evaluate", "--model", server, "--limit", "2", "--max-new-tokens", "8", "--metrics", "accuracy", "latency",
        "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    (records_file,) = tmp_path.rglob("records.jsonl")
    records = [json.loads(line) for line in records_file.read_text(encoding="utf-8").splitlines()]
    timed = [r for r in records if r["kind"] in ("eval", "timing")]
    assert timed and all(0 < r["network_ms"] < r["e2e_ms"] for r in records)

    latency = summary["metrics"]["latency"]
    network = latency["network"]
    round_trip = network["round_trip_p50"]
    assert round_trip["unit"] == "ms" and round_trip["label"] == "measured"
    assert 0 < round_trip["value"] < latency["end_to_end"]["p50"]
    per_request = network["per_request"]
    assert (per_request["unit"], per_request["label"], per_request["n"]) == ("ms", "measured", latency["requests"])
    assert 0 < per_request["p50"] < latency["end_to_end"]["p50"]
    assert "response headers" in network["method"]
    # Every latency figure says it was measured over the network; memory and energy are not applicable.
    assert "remote API" in latency["where"]
    for name in ("time_to_first_token", "end_to_end", "decode_tokens_per_s"):
        assert latency[name]["over_network"] is True
    assert not {"memory", "power"} & set(summary["metrics"])
    assert set(summary["metrics"]["not_applicable"]) == {"memory", "power"}

    (report,) = tmp_path.rglob("report.md")
    text = report.read_text(encoding="utf-8")
    assert "Network (remote API)" in text and "round trip at load" in text and "send to response headers" in text
    (page,) = tmp_path.rglob("report.html")
    assert "round trip at load" in page.read_text(encoding="utf-8")
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.integration
def test_cli_quick_test_shows_the_round_trip(run_cli: RunCli, server: str) -> None:
    result = run_cli("quick-test", "--model", server, "--input", PROMPT, "--max-new-tokens", "8", "--json")
    assert result.code == 0, result.err
    (answer,) = json.loads(result.out)["results"]
    for name in ("network_round_trip", "network"):
        assert answer[name]["unit"] == "ms" and answer[name]["label"] == "measured"
        assert 0 < answer[name]["value"] < answer["end_to_end"]["value"]
    shown = run_cli("quick-test", "--model", server, "--input", PROMPT, "--max-new-tokens", "4")
    assert shown.code == 0, shown.err
    assert "network RTT " in shown.out and "measured over the network" in shown.out


# --- scripted servers --------------------------------------------------------------------------------


def test_the_probe_times_request_to_headers_on_a_scripted_server() -> None:
    # The scripted server has no HEAD handler: http.server answers 501, which is still a round trip, and
    # the probes neither use up the script nor show among the requests seen.
    with fake_server(Reply(body=ANSWER)) as (url, seen):
        backend = openai_api.load(_card(url), None, LoadOptions(clock=TickingClock()), environ=ENVIRON)
        # With a clock that ticks on each read, headers-started to headers-read is one tick: httpx's trace is used.
        assert backend.network_rtt_s == 1.0
        (generation,) = backend.generate([GenerationRequest(PROMPT)])
        backend.close()
    assert [request.path for request in seen] == ["/v1/chat/completions"]
    assert generation.text == "A visa is" and generation.network_s == 1.0


def test_a_failing_probe_records_none_and_the_load_goes_on() -> None:
    def transport(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            raise httpx.ConnectError("unreachable", request=request)
        return httpx.Response(200, content=ANSWER)

    client = httpx.Client(transport=httpx.MockTransport(transport))
    backend = openai_api.load(_card("https://api.example.test/v1"), None, LoadOptions(), client=client, environ=ENVIRON)
    assert backend.network_rtt_s is None
    (generation,) = backend.generate([GenerationRequest(PROMPT)])
    assert generation.text == "A visa is" and generation.network_s is not None and generation.network_s >= 0
    backend.close()
    client.close()


def test_no_probe_when_asked_for_none() -> None:
    calls: list[str] = []

    def transport(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(200, content=ANSWER)

    client = httpx.Client(transport=httpx.MockTransport(transport))
    backend = openai_api.load(
        _card("https://api.example.test/v1"), None, LoadOptions(), client=client, environ=ENVIRON, network_probes=0
    )
    assert backend.network_rtt_s is None and calls == []
    assert openai_api.load(_card("https://api.example.test/v1"), None, LoadOptions(), client=client, environ=ENVIRON)
    assert calls == ["HEAD"] * openai_api.NETWORK_PROBES
    client.close()


def test_the_probe_of_a_server_that_is_gone_does_not_fail_the_load() -> None:
    backend = openai_api.load(_card(f"http://127.0.0.1:{free_port()}/v1"), None, LoadOptions(), environ=ENVIRON)
    assert backend.network_rtt_s is None
    backend.close()


def test_cli_evaluate_runs_when_every_probe_fails(run_cli: RunCli, head_dropping_server: str) -> None:
    result = run_cli(
        "evaluate", "--model", f"{head_dropping_server}#m", "--limit", "2", "--max-new-tokens", "4",
        "--metrics", "accuracy", "latency", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    network = json.loads(result.out)["metrics"]["latency"]["network"]
    assert network["round_trip_p50"]["value"] is None  # not measured, and said so
    assert network["per_request"]["n"] >= 2 and network["per_request"]["min"] > 0


def test_network_metric_without_records_or_probe() -> None:
    empty = network_metric([], None)
    assert empty["round_trip_p50"] == {"value": None, "unit": "ms", "label": "measured", "over_network": True}
    assert empty["per_request"] is None
    timed = [{"network_ms": 2.0}, {"network_ms": 4.0}, {"network_ms": None}, {}]
    some = network_metric(timed, 0.0015)
    assert some["round_trip_p50"]["value"] == pytest.approx(1.5)
    assert some["per_request"]["n"] == 2 and some["per_request"]["p50"] == pytest.approx(3.0)


def test_quick_test_line_shows_the_round_trip() -> None:
    generation = Generation("a b", 0, 2, 0.0, (0.25, 0.35), 0.4, "length", network_s=0.012)
    answer = QuickTestAnswer("p", generation, "measured", Figure(None, "MiB", "measured"), True, 0.0034)
    figures = answer.figures()
    assert figures["network_round_trip"].value == pytest.approx(3.4)
    assert figures["network"].value == pytest.approx(12.0)
    line = answer_summary(answer)
    assert "network RTT 3.4 ms (this request to headers 12.0 ms)" in line
    assert line.endswith("measured over the network")
    unmeasured = QuickTestAnswer("p", generation, "measured", Figure(None, "MiB", "measured"), True)
    assert "network RTT n/a" in answer_summary(unmeasured)
    local = QuickTestAnswer("p", generation, "measured", Figure(1.0, "MiB", "measured"))
    assert "network" not in local.figures() and "network" not in answer_summary(local)
